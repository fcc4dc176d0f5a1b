/**
 * Churn: a tenant cannot get a neighbour punished for its own calls, nor hide
 * them. Round after round, tenant `ta` starts a short-lived attacker whose
 * entrypoint makes refused syscalls and exits at once, and in the same second
 * tenant `tb` launches a fresh instance or restarts one of its own — which is
 * when the kernel hands the attacker's freed pid-namespace number to `tb`'s
 * new container. The guard (default rules, live bpftrace) must name the
 * attacker in every alert of those calls, and raise nothing — nor act — on
 * any of `tb`'s instances.
 *
 * Keyed by the pid namespace inode (the old interceptor), the attacker's
 * records waited unresolved and were then given to `tb`'s instance holding the
 * number, which was frozen and stopped while the attacker went unnamed.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { bpfAvailable } from '../../../src/levels/os/guard/interceptor.js';
import { claimSlot } from '../../levels/os/helpers.js';
import { PROBE } from './arena.js';
import { GuardedArena } from './guard-arena.js';

const availability = bpfAvailable();
const ROUNDS = Number(process.env.STRATA_CHURN_ROUNDS ?? 50);
/** Refused at once by the seccomp profile; the shell exits right after. */
const ATTACK = `${PROBE} unshare-user; ${PROBE} bpf; ${PROBE} keyctl; ${PROBE} mount-tmpfs; exit 0`;
const ATTACK_RULES = new Set(['Denied breakout syscall', 'Mount attempt']);
const arena = new GuardedArena(await claimSlot());

describe('churn: a short-lived attacker beside a neighbour launching and restarting', { skip: availability.available ? false : availability.reason }, () => {
  before(async () => arena.open(), { timeout: 180_000 });
  after(async () => arena.close(), { timeout: 120_000 });

  test(`${ROUNDS} rounds: every attacker alert names the attacker, none and no action touches the neighbour`, { timeout: 300_000 }, async () => {
    const mark = arena.mark();
    const attackers = new Set<string>();
    const neighbours = new Set<string>();
    const live: string[] = [];
    /** Attackers are removed in the background, beside the next rounds: removal is not what is tested. */
    const removals: Promise<void>[] = [];
    const benign = { config: { args: ['sh', '-c', 'exec sleep 3600'] }, limits: { vcpus: 0.25, memoryMiB: 32, diskMiB: 32 } };
    for (let round = 0; round < ROUNDS; round++) {
      const attacker = await arena.launchAs('worker', 'ta', { config: { args: ['sh', '-c', ATTACK] }, limits: { vcpus: 0.25, memoryMiB: 32, diskMiB: 32 } });
      attackers.add(attacker.id);
      for (let i = 0; i < 100 && (await arena.driver.inspect(attacker.id))?.state === 'running'; i++) await sleep(10);
      // The same second: the neighbour starts afresh (every other round a new instance, else a restart of one it has).
      if (round % 2 === 0 || live.length === 0) {
        const fresh = await arena.launchAs('web', 'tb', benign);
        neighbours.add(fresh.id);
        live.push(fresh.id);
        if (live.length > 3) await arena.remove(live.shift()!);
      } else {
        const id = live[round % live.length]!;
        await arena.driver.stop(id, { graceMs: 0 });
        await arena.driver.start(id);
      }
      removals.push(arena.remove(attacker.id));
    }
    await Promise.all(removals);
    await sleep(2500); // the last records and per-second reports
    await arena.guard.drained();
    const raised = arena.alertsSince(mark);
    const onNeighbour = raised.filter((a) => a.instanceId !== null && neighbours.has(a.instanceId));
    assert.deepEqual(onNeighbour.map((a) => `${a.rule} @${a.instanceId}: ${a.output}`), [], 'alerts on the neighbour');
    const acted = arena.target.calls.filter((c) => neighbours.has(c.split(' ')[1]!));
    assert.deepEqual(acted, [], 'actions on the neighbour');
    const attackAlerts = raised.filter((a) => ATTACK_RULES.has(a.rule));
    assert.deepEqual(attackAlerts.filter((a) => a.instanceId === null || !attackers.has(a.instanceId)).map((a) => `${a.rule} @${a.instanceId}`), [],
      'attack alerts naming anyone but an attacker');
    const named = new Set(attackAlerts.map((a) => a.instanceId));
    const unnamed = [...attackers].filter((id) => !named.has(id));
    assert.deepEqual(unnamed, [], `attackers never named (of ${attackers.size}); the guard's unattributed count: ${arena.bpf.stats().unattributed}`);
  });
});
