/**
 * `npm run bench -- guard-overhead [--iterations=20000] [--rounds=5] [--budget=500] [--json]`:
 * what the guard's os interceptor costs a syscall-heavy workload in a container.
 *
 * The workload (a static C program, built here with gcc and put into a copy
 * of the busybox image) loops: 8 × open(O_CREAT|O_TRUNC) + write + close of a
 * file under /tmp (a watched path, so every one is an event), one TCP connect
 * + accept over the container's own loopback, and every 16th iteration a
 * fork + exec of /bin/true. It prints its own wall time and its CPU time
 * (user + system, children included: the probes' work in the kernel is
 * charged to the task that made the call).
 *
 * Guard off: nothing attached. Guard on: bpftrace attached with the full os
 * program, feeding a Guard with the default ruleset in this process — the whole
 * pipeline on the same two cores as the workload. Rounds alternate off / on
 * (bpftrace started and stopped between; which side goes first alternates
 * too), and the medians are compared, as is each round's pair. The
 * anchor is the same workload with the guard off; Falco and Tetragon quote "a
 * few %" for theirs. `--budget` is the interceptor's per-second record budget
 * per instance and class (default the interceptor's, 500): past it records are only counted in
 * the kernel, so a large one shows the cost of shipping every event to user
 * space. The kernel times every probe run while the workload runs
 * (BPF_ENABLE_STATS): the total per iteration, and the costliest probes with
 * their runs and time per run (named through bpftool). That time leaves out
 * what any syscall tracepoint costs every syscall on the host (the kernel's
 * syscall-tracing path): the workload's CPU time carries that. Requires root,
 * gcc, bpftrace and the built-in images.
 */
import { execFileSync, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile, copyFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { EventBus } from '../src/core/events.js';
import type { ActuatorTarget, AuditSink } from '../src/guard/actuator.js';
import { Guard } from '../src/guard/guard.js';
import { BpfInterceptor, bpfAvailable } from '../src/levels/os/guard/interceptor.js';
import { loadDefaultRuleset } from '../src/guard/rules.js';
import { ensureBuiltinImages } from '../src/levels/os/builtin-images.js';
import { OsDriver } from '../src/levels/os/driver.js';
import { run } from '../src/levels/os/exec.js';
import { ImageStore } from '../src/levels/os/images.js';
import type { OsDriverOptions } from '../src/levels/os/options.js';
import { intOption, type Bench } from './harness.js';

const OPTIONS = {
  stateDir: '/var/lib/strata-bench/guard',
  runRoot: '/run/strata-bench/guard',
  cgroupRoot: 'strata-bench-guard',
  subnet: '10.198.0.0/16',
  idBase: 3_200_000_000,
  tag: 'bg',
  hostPorts: [],
  imagesDir: '/var/lib/strata-bench/guard-images',
} satisfies OsDriverOptions;
const ID = 'guard-overhead-1';

const WORKLOAD_C = String.raw`
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 10000;
  int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
  setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(l, (void *)&a, sizeof a) || listen(l, 64)) { perror("listen"); return 1; }
  socklen_t len = sizeof a; getsockname(l, (void *)&a, &len);
  char buf[64] = "strata guard overhead benchmark payload..........................";
  struct timespec t0, t1; clock_gettime(CLOCK_MONOTONIC, &t0);
  for (long i = 0; i < n; i++) {
    for (int k = 0; k < 8; k++) { int fd = open("/tmp/w", O_WRONLY | O_CREAT | O_TRUNC, 0600); write(fd, buf, sizeof buf); close(fd); }
    int c = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(c, (void *)&a, sizeof a) == 0) { int s = accept(l, 0, 0); close(s); }
    close(c);
    if (i % 16 == 0) { pid_t p = fork(); if (p == 0) { execl("/bin/true", "true", (char *)0); _exit(127); } waitpid(p, 0, 0); }
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  struct rusage self, kids; getrusage(RUSAGE_SELF, &self); getrusage(RUSAGE_CHILDREN, &kids);
  double cpu = self.ru_utime.tv_sec + self.ru_stime.tv_sec + kids.ru_utime.tv_sec + kids.ru_stime.tv_sec
    + (self.ru_utime.tv_usec + self.ru_stime.tv_usec + kids.ru_utime.tv_usec + kids.ru_stime.tv_usec) / 1e6;
  printf("%.6f %.6f\n", (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9, cpu);
  return 0;
}
`;

/** The busybox image plus the workload binary, in the bench's own image store. */
async function buildImage(): Promise<void> {
  await ensureBuiltinImages(new ImageStore('/var/lib/strata/images'));
  const busybox = await new ImageStore('/var/lib/strata/images').resolve('busybox');
  const store = new ImageStore(OPTIONS.imagesDir);
  const staging = await store.stage();
  await rm(join(staging, 'rootfs'), { recursive: true });
  await run('cp', ['-a', busybox.rootfs, join(staging, 'rootfs')]);
  const dir = await mkdtemp(join(tmpdir(), 'strata-guard-bench-'));
  try {
    await writeFile(join(dir, 'w.c'), WORKLOAD_C);
    await run('gcc', ['-static', '-O2', '-o', join(dir, 'workload'), join(dir, 'w.c')]);
    await copyFile(join(dir, 'workload'), join(staging, 'rootfs', 'bin', 'workload'));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  await store.commit(staging, 'guard-bench', 'bench:guard-overhead', busybox.manifest.config);
}

const quietTarget: ActuatorTarget = {
  alert() {}, async freeze() {}, async resume() {}, async stop() {}, async snapshot() {},
} as unknown as ActuatorTarget;
const memoryAudit: AuditSink = { append: () => ({ index: 0 }) };

/** Wall and CPU (user + system, with its children) seconds of one workload run, as it measured them; with the guard on, its probes' run time. */
interface Run {
  wall: number;
  cpu: number;
  probeS?: number;
  /** Per probe (program name → kernel ns and runs) during the run. */
  probes?: Map<string, ProgramTime>;
}

interface ProgramTime {
  ns: number;
  runs: number;
}

/** run_time_ns and run_cnt of each BPF program a process holds, by program id (its /proc fdinfo; counted only while stats are on). */
function programTimes(pid: number): Map<string, ProgramTime> | undefined {
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fdinfo`);
  } catch {
    return undefined; // bpftrace is gone (it is restarted under a new pid)
  }
  const out = new Map<string, ProgramTime>();
  for (const fd of fds) {
    try {
      const info = readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8');
      const id = /^prog_id:\s+(\d+)/m.exec(info)?.[1];
      if (id === undefined || out.has(id)) continue;
      out.set(id, { ns: Number(/^run_time_ns:\s+(\d+)/m.exec(info)?.[1] ?? 0), runs: Number(/^run_cnt:\s+(\d+)/m.exec(info)?.[1] ?? 0) });
    } catch { /* closed meanwhile */ }
  }
  return out;
}

/** A program's name (bpftrace names them after the probe, cut to 15 characters) through bpftool, or its id where bpftool is missing. */
function programName(id: string): string {
  try {
    return (JSON.parse(execFileSync('bpftool', ['prog', 'show', 'id', id, '--json'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })) as { name?: string }).name ?? id;
  } catch {
    return `prog ${id}`;
  }
}

/**
 * Runs `fn` with the kernel timing every BPF program run (BPF_ENABLE_STATS,
 * held by a perl child: the kernel turns it off when that fd closes, so a
 * crashed bench leaves nothing on) and returns the seconds `pid`'s programs
 * ran meanwhile: what the probes cost the traced tasks, load or not.
 */
async function withProbeTime<T>(pid: number, fn: () => Promise<T>): Promise<{ value: T; probeS: number | undefined; probes?: Map<string, ProgramTime> }> {
  const holder = spawn('perl', ['-e', '$a = pack("L", 0) . ("\\0" x 124); $fd = syscall(321, 32, $a, 128); die "bpf: $!\\n" if $fd < 0; $| = 1; print "on\\n"; <STDIN>;'],
    { stdio: ['pipe', 'pipe', 'ignore'] });
  const on = await new Promise<boolean>((resolve) => {
    holder.stdout.once('data', () => resolve(true));
    holder.once('exit', () => resolve(false));
    holder.once('error', () => resolve(false));
  });
  try {
    const before = on ? programTimes(pid) : undefined;
    const value = await fn();
    const after = on ? programTimes(pid) : undefined;
    if (!before || !after) return { value, probeS: undefined };
    const probes = new Map<string, ProgramTime>();
    let ns = 0;
    for (const [id, t] of after) {
      const b = before.get(id) ?? { ns: 0, runs: 0 };
      if (t.runs === b.runs) continue;
      const name = programName(id);
      const sum = probes.get(name) ?? { ns: 0, runs: 0 };
      probes.set(name, { ns: sum.ns + t.ns - b.ns, runs: sum.runs + t.runs - b.runs });
      ns += t.ns - b.ns;
    }
    return { value, probeS: ns / 1e9, probes };
  } finally {
    holder.stdin.end();
  }
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const bench: Bench = async (opts) => {
  const ready = bpfAvailable();
  if (!ready.available) throw new Error(`guard-overhead needs bpftrace: ${ready.reason}`);
  const iterations = intOption(opts, 'iterations', 20_000);
  const rounds = intOption(opts, 'rounds', 5);
  const budget = intOption(opts, 'budget', 500);
  await buildImage();
  const driver = new OsDriver(OPTIONS);
  const availability = await driver.provision();
  if (!availability.available) throw new Error(availability.reason);
  /** Per round, wall and CPU seconds of the workload with the guard off and on. */
  const off: Run[] = [];
  const on: Run[] = [];
  let events = 0;
  let overBudget = 0;
  try {
    await driver.create({ id: ID, tenantId: 'bench', name: ID, level: 'os', source: 'guard-bench', limits: { vcpus: 2, memoryMiB: 128, diskMiB: 128 }, config: {} });
    await driver.start(ID);
    const once = async (): Promise<Run> => {
      const r = await driver.run(ID, ['/bin/workload', String(iterations)], { timeoutMs: 600_000 });
      if (r.exitCode !== 0) throw new Error(`workload failed: ${r.stdout}${r.stderr}`);
      const [wall, cpu] = r.stdout.trim().split(/\s+/).map(Number) as [number, number];
      return { wall, cpu };
    };
    const guarded = async (): Promise<Run> => {
      const guard = new Guard({ ruleset: await loadDefaultRuleset(), target: quietTarget, audit: memoryAudit, events: new EventBus() });
      const bpf = new BpfInterceptor({ identities: driver.identities, budgetPerSecond: budget });
      await guard.addInterceptor(bpf);
      await guard.start();
      await sleep(2000); // steady state: bpftrace finishes its start-up work after attaching
      try {
        const { value, probeS, probes } = bpf.pid ? await withProbeTime(bpf.pid, once) : { value: await once(), probeS: undefined };
        return { ...value, probeS, ...(probes ? { probes } : {}) };
      } finally {
        await guard.stop();
        events += bpf.stats().emitted;
        overBudget += bpf.stats().overBudget;
      }
    };
    await once(); // warm-up: page cache, first exec
    // Rounds alternate which side goes first, so a load that rises or falls over a round favours neither.
    for (let round = 0; round < rounds; round++) {
      if (round % 2 === 0) {
        off.push(await once());
        on.push(await guarded());
      } else {
        on.push(await guarded());
        off.push(await once());
      }
    }
  } finally {
    await driver.stop(ID, { graceMs: 100 }).catch(() => undefined);
    await driver.delete(ID).catch(() => undefined);
    await driver.cleanup();
    await rm(OPTIONS.imagesDir, { recursive: true, force: true });
  }
  const offS = median(off.map((r) => r.wall));
  const onS = median(on.map((r) => r.wall));
  const overheadPct = ((onS - offS) / offS) * 100;
  // Each round's on/off pair was measured under the same load: their ratio varies less than either side.
  const paired = off.map((o, i) => (on[i]!.wall / o.wall - 1) * 100);
  const pairedCpu = off.map((o, i) => (on[i]!.cpu / o.cpu - 1) * 100);
  const pct = (x: number): number => Math.round(x * 10) / 10;
  const spread = (xs: number[]): string => `median ${median(xs).toFixed(1)} %, ${Math.min(...xs).toFixed(1)} … ${Math.max(...xs).toFixed(1)} %`;
  const rate = (s: number): number => Math.round(iterations / s);
  // The probes' own run time against the workload's CPU time with the guard off: the kernel side, free of the load's noise.
  const probePct = on.flatMap((r, i) => (r.probeS === undefined ? [] : [(r.probeS / off[i]!.cpu) * 100]));
  const probeNs = on.flatMap((r) => (r.probeS === undefined ? [] : [(r.probeS * 1e9) / iterations]));
  // Where the probes' time goes, over all rounds: the costliest programs, with their runs and time per run.
  const byProbe = new Map<string, ProgramTime>();
  for (const r of on) {
    for (const [name, t] of r.probes ?? []) {
      const sum = byProbe.get(name) ?? { ns: 0, runs: 0 };
      byProbe.set(name, { ns: sum.ns + t.ns, runs: sum.runs + t.runs });
    }
  }
  const costliest = [...byProbe].sort((a, b) => b[1].ns - a[1].ns).slice(0, 6)
    .map(([name, t]) => ({ probe: name, ns_per_iteration: Math.round(t.ns / (iterations * on.length)), runs: t.runs, ns_per_run: Math.round(t.ns / t.runs) }));
  return {
    metric: 'syscall-heavy workload iterations/s in a container, guard (bpftrace + pipeline) on',
    unit: 'iterations/s',
    value: rate(onS),
    anchor: 'the same workload with the guard off (Falco, Tetragon: a few % overhead)',
    anchor_value: rate(offS),
    summary: [
      `workload: ${iterations} iterations of 8 × open/write/close, 1 loopback connect+accept, 1/16 fork+exec`,
      `guard off: ${off.map((r) => r.wall.toFixed(2)).join(' / ')} s (median ${offS.toFixed(2)} s, ${rate(offS)} it/s); CPU ${off.map((r) => r.cpu.toFixed(2)).join(' / ')} s`,
      `guard on:  ${on.map((r) => r.wall.toFixed(2)).join(' / ')} s (median ${onS.toFixed(2)} s, ${rate(onS)} it/s); CPU ${on.map((r) => r.cpu.toFixed(2)).join(' / ')} s`,
      `overhead: ${overheadPct.toFixed(1)} % (goal ≤ 5 %); per round: wall ${spread(paired)}; the workload's own CPU time ${spread(pairedCpu)}`,
      probePct.length > 0
        ? `probes' run time in the kernel: ${Math.round(median(probeNs))} ns per iteration, ${spread(probePct)} of the workload's CPU time off`
        : 'probes\' run time: not measured (BPF_ENABLE_STATS refused, or perl missing)',
      ...(costliest.length > 0 ? [`costliest probes (ns per iteration, runs × ns per run): ${costliest.map((c) => `${c.probe} ${c.ns_per_iteration} (${c.runs} × ${c.ns_per_run})`).join('; ')}`] : []),
      `events emitted ${events}, counted over budget (${budget}/s) in the kernel ${overBudget}`,
    ],
    extra: {
      overhead_pct: pct(overheadPct), overhead_pct_paired: pct(median(paired)), cpu_overhead_pct_paired: pct(median(pairedCpu)),
      iterations, rounds, budget, off_s: off.map((r) => r.wall), on_s: on.map((r) => r.wall), off_cpu_s: off.map((r) => r.cpu), on_cpu_s: on.map((r) => r.cpu),
      probe_ns_per_iteration: probeNs.length > 0 ? Math.round(median(probeNs)) : null, probe_pct: probePct.length > 0 ? pct(median(probePct)) : null,
      events, over_budget: overBudget, costliest_probes: costliest,
    },
  };
};

export default bench;
