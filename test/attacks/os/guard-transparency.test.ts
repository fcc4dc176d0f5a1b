/**
 * Transparency and non-subvertability of the guard, tested from inside a
 * tenant container (tenant `evil`, root of its user namespace) while the os
 * interceptor watches: no trace of the guard in processes, mounts, /proc,
 * network or files; no way to kill it; a flood of events is counted and
 * alerted, and does not hide an attack made under its cover.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { bpfAvailable } from '../../../src/levels/os/guard/interceptor.js';
import { claimSlot } from '../../levels/os/helpers.js';
import { GuardedArena } from './guard-arena.js';

const availability = bpfAvailable();
const arena = new GuardedArena(await claimSlot());

describe('the guard seen from inside a tenant container', { skip: availability.available ? false : availability.reason }, () => {
  before(async () => arena.open(), { timeout: 180_000 });
  after(async () => arena.close(), { timeout: 120_000 });

  test('no process of the guard, or of Strata, is visible', async () => {
    const pid = arena.bpf.pid!;
    const r = await arena.sh(`ps -o pid,comm,args; cat /proc/*/cmdline | tr '\\0' ' '; echo; cat /proc/${pid}/comm 2>&1; ls /proc | wc -l`);
    assert.doesNotMatch(r.stdout, /bpftrace|strata|node|runc/i, r.stdout);
    assert.match(r.stdout, /No such file or directory/, `host pid ${pid} of bpftrace is not there`);
  });

  test('no tracefs, debugfs or bpf file system is mounted, and the kernel interfaces are empty', async () => {
    const r = await arena.sh('cat /proc/mounts; echo ---; ls -A /sys/kernel/tracing /sys/kernel/debug /sys/fs/bpf 2>&1; echo ---; cat /proc/kallsyms | wc -c');
    const [mounts, listing, kallsyms] = r.stdout.split('---\n');
    const types = mounts!.trim().split('\n').map((l) => l.split(' ')[2]);
    for (const banned of ['tracefs', 'debugfs', 'bpf']) assert.ok(!types.includes(banned), `${banned} mounted: ${mounts}`);
    assert.doesNotMatch(listing!, /events|kprobe|trace_pipe|available_/, listing);
    assert.equal(kallsyms!.trim(), '0', 'kallsyms is masked');
  });

  test('no file of the guard: no program, no rules, no checksum DB in the tenant view', async () => {
    const r = await arena.sh("find / -xdev \\( -name '*.bt' -o -name '*bpftrace*' -o -name 'default.yaml' -o -name 'strata*' -o -name 'guard*' \\) -print 2>/dev/null; echo end");
    assert.equal(r.stdout.trim(), 'end', r.stdout);
  });

  test('no network endpoint: the guard holds no inet socket and no named one, only its unnamed stdio pair to the daemon', () => {
    const pid = arena.bpf.pid!;
    const links = readdirSync(`/proc/${pid}/fd`).map((fd) => { try { return readlinkSync(`/proc/${pid}/fd/${fd}`); } catch { return ''; } });
    const inodes = links.map((l) => /^socket:\[(\d+)\]$/.exec(l)?.[1]).filter((i): i is string => i !== undefined);
    const table = (name: string): string[][] => readFileSync(`/proc/${pid}/net/${name}`, 'utf8').trim().split('\n').slice(1).map((l) => l.trim().split(/\s+/));
    for (const name of ['tcp', 'tcp6', 'udp', 'udp6', 'raw', 'raw6']) {
      const held = table(name).filter((row) => inodes.includes(row[9]!));
      assert.deepEqual(held, [], `an ${name} socket`);
    }
    // libuv hands a child its stdio as unnamed socket pairs: those, and nothing bound to a path.
    const unix = table('unix').filter((row) => inodes.includes(row[6]!));
    assert.equal(unix.length, inodes.length, 'every socket it holds is a unix one');
    assert.ok(unix.every((row) => row[7] === undefined), `a named unix socket: ${JSON.stringify(unix)}`);
  });

  test('it cannot be killed from inside: signals find no such process', async () => {
    const pid = arena.bpf.pid!;
    const r = await arena.sh(`kill -9 ${pid} 2>&1; kill -STOP ${pid} 2>&1; kill -9 -1 2>&1; echo sent`, 10_000);
    assert.match(r.stdout, /sent/);
    await sleep(500);
    assert.equal(arena.bpf.pid, pid, 'still the same bpftrace');
    assert.ok(process.kill(pid, 0));
    assert.equal(arena.bpf.stats().starts, 1);
    assert.doesNotMatch(readlinkSync(`/proc/${pid}/exe`), /deleted/);
  });

  test('a flood of events is counted and alerted, and an attack under its cover is still caught', { timeout: 120_000 }, async () => {
    const mark = arena.mark();
    const before = arena.bpf.stats();
    // ~7 s of file writes far past the per-second budget, with a mount attempt in the middle of it.
    const flood = arena.sh('end=$(($(date +%s)+7)); while [ $(date +%s) -lt $end ]; do for i in 1 2 3 4 5 6 7 8 9 10; do : > /tmp/flood; done; done', 30_000);
    await sleep(3000);
    await arena.probe('mount-cgroup');
    await flood;
    const floodAlert = await arena.waitFor('Event flood from instance', arena.evil.id, mark);
    assert.ok(Number(floodAlert.fields['guard.suppressed']) > 0);
    await arena.waitFor('Mount attempt', arena.evil.id, mark);
    const afterStats = arena.bpf.stats();
    assert.ok(afterStats.overBudget > before.overBudget, 'the excess was counted in the kernel');
    const stats = arena.guard.stats();
    assert.ok(stats.dropped === 0 || arena.alertsSince(mark).some((a) => a.rule === 'guard.pool.dropped'), 'any pool drop was itself alerted');
    // And the guard still sees at once what happens next.
    const next = arena.mark();
    await arena.probe('ptrace', '1');
    await arena.waitFor('Ptrace attempt', arena.evil.id, next);
  });
});
