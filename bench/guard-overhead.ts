/**
 * `npm run bench -- guard-overhead [--iterations=20000] [--rounds=5] [--budget=500] [--json]`:
 * what the guard's os interceptor costs a syscall-heavy workload in a container.
 *
 * The workload (a static C program, built here with gcc and put into a copy
 * of the busybox image) loops: 8 × open(O_CREAT|O_TRUNC) + write + close of a
 * file under /tmp (a watched path, so every one is an event), one TCP connect
 * + accept over the container's own loopback, and every 16th iteration a
 * fork + exec of /bin/true. It prints its own wall time.
 *
 * Guard off: nothing attached. Guard on: bpftrace attached with the full os
 * program, feeding a Guard with the default ruleset in this process — the whole
 * pipeline on the same two cores as the workload. Rounds alternate off / on
 * (bpftrace started and stopped between), and the medians are compared. The
 * anchor is the same workload with the guard off; Falco and Tetragon quote "a
 * few %" for theirs. `--budget` is the interceptor's per-second record budget
 * per instance and class (default the interceptor's, 500): past it records are only counted in
 * the kernel, so a large one shows the cost of shipping every event to user
 * space. Requires root, gcc, bpftrace and the built-in images.
 */
import { mkdtemp, rm, writeFile, copyFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { EventBus } from '../src/control/events.js';
import type { ActuatorTarget, AuditSink } from '../src/guard/actuator.js';
import { Guard } from '../src/guard/guard.js';
import { BpfInterceptor, bpfAvailable } from '../src/guard/interceptors/bpf.js';
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
  printf("%.6f\n", (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
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
  const off: number[] = [];
  const on: number[] = [];
  let events = 0;
  let overBudget = 0;
  try {
    await driver.create({ id: ID, tenantId: 'bench', name: ID, level: 'os', source: 'guard-bench', limits: { vcpus: 2, memoryMiB: 128, diskMiB: 128 }, config: {} });
    await driver.start(ID);
    const pid = Number((await driver.inspect(ID))?.info?.pid);
    const once = async (): Promise<number> => {
      const r = await driver.run(ID, ['/bin/workload', String(iterations)], { timeoutMs: 600_000 });
      if (r.exitCode !== 0) throw new Error(`workload failed: ${r.stdout}${r.stderr}`);
      return Number(r.stdout.trim());
    };
    await once(); // warm-up: page cache, first exec
    for (let round = 0; round < rounds; round++) {
      off.push(await once());
      const guard = new Guard({ ruleset: await loadDefaultRuleset(), target: quietTarget, audit: memoryAudit, events: new EventBus() });
      const bpf = new BpfInterceptor({ targets: async () => [{ tenantId: 'bench', instanceId: ID, pid, vcpus: 2 }], budgetPerSecond: budget });
      await guard.addInterceptor(bpf);
      await guard.start();
      await sleep(2000); // steady state: bpftrace finishes its start-up work after attaching
      try {
        on.push(await once());
      } finally {
        await guard.stop();
        events += bpf.stats().emitted;
        overBudget += bpf.stats().overBudget;
      }
    }
  } finally {
    await driver.stop(ID, { graceMs: 100 }).catch(() => undefined);
    await driver.delete(ID).catch(() => undefined);
    await driver.cleanup();
    await rm(OPTIONS.imagesDir, { recursive: true, force: true });
  }
  const offS = median(off);
  const onS = median(on);
  const overheadPct = ((onS - offS) / offS) * 100;
  const rate = (s: number): number => Math.round(iterations / s);
  return {
    metric: 'syscall-heavy workload iterations/s in a container, guard (bpftrace + pipeline) on',
    unit: 'iterations/s',
    value: rate(onS),
    anchor: 'the same workload with the guard off (Falco, Tetragon: a few % overhead)',
    anchor_value: rate(offS),
    summary: [
      `workload: ${iterations} iterations of 8 × open/write/close, 1 loopback connect+accept, 1/16 fork+exec`,
      `guard off: ${off.map((s) => s.toFixed(2)).join(' / ')} s (median ${offS.toFixed(2)} s, ${rate(offS)} it/s)`,
      `guard on:  ${on.map((s) => s.toFixed(2)).join(' / ')} s (median ${onS.toFixed(2)} s, ${rate(onS)} it/s)`,
      `overhead: ${overheadPct.toFixed(1)} % (goal ≤ 5 %); events emitted ${events}, counted over budget (${budget}/s) in the kernel ${overBudget}`,
    ],
    extra: { overhead_pct: Math.round(overheadPct * 10) / 10, iterations, rounds, budget, off_s: off, on_s: on, events, over_budget: overBudget },
  };
};

export default bench;
