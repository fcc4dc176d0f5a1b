/**
 * Refused syscall in a container → its alert: a running os instance (busybox)
 * makes a call its seccomp profile refuses (unshare, chroot, mount in turn),
 * and the guard (live bpftrace, the default rules) raises the alert naming the
 * instance. Latency is from the call itself — the kernel's timestamp of the
 * record, which the event carries — to the alert reaching the actuator's
 * target (already audited and published). Reports p50 and p99; also, as
 * `exec_p50_ms`, from asking runc to exec the command to the alert.
 *
 * No anchor runs beside it: the goal is the (p50 ≤ 100 ms); before
 * identities were registered at start, a fresh instance's records could wait
 * up to 10 s parked.
 *
 * Options: --calls=N (default 45).
 */
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { EventBus } from '../src/core/events.js';
import type { ActuatorTarget, Alert } from '../src/guard/actuator.js';
import { Guard } from '../src/guard/guard.js';
import { BpfInterceptor, bpfAvailable } from '../src/levels/os/guard/interceptor.js';
import { loadDefaultRuleset } from '../src/guard/rules.js';
import { OsDriver } from '../src/levels/os/driver.js';
import type { OsDriverOptions } from '../src/levels/os/options.js';
import { intOption, percentile, type Bench } from './harness.js';

const OPTIONS = {
  stateDir: '/var/lib/strata-bench/guard-syscall',
  runRoot: '/run/strata-bench/guard-syscall',
  cgroupRoot: 'strata-bench-guard-syscall',
  subnet: '10.197.0.0/16',
  idBase: 3_300_000_000,
  tag: 'bs',
  hostPorts: [],
} satisfies OsDriverOptions;
const ID = 'guard-detect-syscall-1';
/** Refused calls, in turn, and the rule each raises. */
const CALLS: { command: string; rule: string; syscall: string }[] = [
  { command: 'unshare -U true', rule: 'Denied breakout syscall', syscall: 'unshare' },
  { command: 'chroot / true', rule: 'Mount attempt', syscall: 'chroot' },
  { command: 'mount -t tmpfs none /mnt', rule: 'Mount attempt', syscall: 'mount' },
];

const now = (): number => performance.timeOrigin + performance.now();

const bench: Bench = async (opts) => {
  const ready = bpfAvailable();
  if (!ready.available) throw new Error(`guard-detect-syscall needs bpftrace: ${ready.reason}`);
  const calls = intOption(opts, 'calls', 45);
  const driver = new OsDriver(OPTIONS);
  const availability = await driver.provision();
  if (!availability.available) throw new Error(availability.reason);
  let waiting: { syscall: string; resolve: (a: { alert: Alert; at: number }) => void } | undefined;
  const target: ActuatorTarget = {
    alert(a) { if (a.instanceId === ID && a.fields['syscall.name'] === waiting?.syscall) waiting.resolve({ alert: a, at: now() }); },
    async freeze() {}, async resume() {}, async stop() {}, async snapshot() {},
  };
  const audit = { n: 0, append() { return { index: this.n++ }; } };
  const guard = new Guard({ ruleset: await loadDefaultRuleset(), target, audit, events: new EventBus(), escalateAfter: Number.MAX_SAFE_INTEGER });
  const fromCall: number[] = [];
  const fromExec: number[] = [];
  try {
    // A run killed half-way leaves its instance: this run starts clean.
    if (await driver.inspect(ID)) {
      await driver.stop(ID, { graceMs: 0 }).catch(() => undefined);
      await driver.delete(ID);
    }
    await driver.create({ id: ID, tenantId: 'bench', name: ID, level: 'os', source: 'busybox', limits: { vcpus: 1, memoryMiB: 64, diskMiB: 64 }, config: { args: ['sleep', '3600'] } });
    await driver.start(ID);
    await guard.addInterceptor(new BpfInterceptor({ identities: driver.identities }));
    await guard.start();
    await sleep(1000); // bpftrace's start-up work after attaching
    for (let i = 0; i < calls; i++) {
      const call = CALLS[i % CALLS.length]!;
      const alerted = new Promise<{ alert: Alert; at: number }>((resolve) => { waiting = { syscall: call.syscall, resolve }; });
      const start = now();
      void driver.run(ID, ['sh', '-c', `${call.command} 2>/dev/null; true`]).catch(() => undefined);
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`no alert for ${call.syscall} (call ${i}) within 10 s`)), 10_000); });
      const { alert, at } = await Promise.race([alerted, timeout]).finally(() => clearTimeout(timer));
      if (alert.rule !== call.rule) throw new Error(`${call.syscall} raised '${alert.rule}', not '${call.rule}'`);
      fromCall.push(at - alert.eventTime);
      fromExec.push(at - start);
      await sleep(250);
    }
  } finally {
    await guard.stop();
    await driver.stop(ID, { graceMs: 100 }).catch(() => undefined);
    await driver.delete(ID).catch(() => undefined);
    await driver.cleanup();
  }
  fromCall.sort((a, b) => a - b);
  fromExec.sort((a, b) => a - b);
  const p50 = percentile(fromCall, 50), p99 = percentile(fromCall, 99);
  const round = (x: number): number => Math.round(x * 100) / 100;
  return {
    metric: `refused syscall in a container → its alert (kernel timestamp → alert), p50 over ${calls} calls`,
    unit: 'ms',
    value: round(p50),
    anchor: 'the goal of issue 13 (p50 ≤ 100 ms); before, up to 10 s parked',
    anchor_value: 100,
    summary: [
      `syscall → alert: p50 ${p50.toFixed(2)} ms, p99 ${p99.toFixed(2)} ms, max ${fromCall[fromCall.length - 1]!.toFixed(2)} ms over ${calls} calls (${CALLS.map((c) => c.syscall).join(', ')})`,
      `runc exec asked → alert: p50 ${percentile(fromExec, 50).toFixed(1)} ms (includes starting the process in the container)`,
    ],
    extra: { p50_ms: round(p50), p99_ms: round(p99), exec_p50_ms: round(percentile(fromExec, 50)), calls },
  };
};

export default bench;
