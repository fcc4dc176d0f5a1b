/**
 * `npm run bench -- os-density [--instances=100] [--rounds=3] [--json]`: host
 * memory per idle os instance with N of them running (busybox httpd, each having
 * answered 200), beside the same N processes as bare `runc run --detach`
 * containers in the same run.
 *
 * The figure per instance is what the machine pays for it: the growth of the
 * kernel memory per-instance objects live in (slab — namespaces, veths, mounts,
 * cgroups, inodes —, kernel stacks, page tables, per-CPU data) while the N run,
 * plus the PSS of their processes. Also shown: the instances' memory cgroups'
 * usage and the drop of MemAvailable — machine-wide, so on a shared machine it
 * swings with everything else and is reported, not used.
 *
 * Each round starts all N, samples, removes all, samples; a round's change is
 * taken against the mean of the samples before and after (cancelling a steady
 * drift from other work), and the median of the rounds is reported.
 *
 * The anchor (bare runc: the image's rootfs as is, runc's default spec, no user
 * namespace, overlay, network namespace or cgroup parent) shows what Strata's
 * isolation adds per instance. Everything is removed at the end, also on failure.
 * Requires root and the built-in images (the setup step).
 */
import { mkdir, readFile, rm, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { OsDriver } from '../src/levels/os/driver.js';
import { run } from '../src/levels/os/exec.js';
import { ImageStore } from '../src/levels/os/images.js';
import type { OsDriverOptions } from '../src/levels/os/options.js';
import { intOption, type Bench } from './harness.js';
import { first200 as get200, runDetached } from './os-start.js';

const BENCH_OPTIONS = {
  stateDir: '/var/lib/strata-bench/os-density',
  runRoot: '/run/strata-bench/os-density',
  cgroupRoot: 'strata-bench-density',
  // Unlike every other driver on the machine (daemon, tests, other benchmarks): no shared address, id range or name.
  subnet: '10.197.0.0/16',
  idBase: 3_600_000_000,
  tag: 'bd',
  hostPorts: [],
} satisfies OsDriverOptions;
const ANCHOR_ROOT = '/run/strata-bench/density-bare';
const ANCHOR_BUNDLES = '/var/lib/strata-bench/density-bare';
const ANCHOR_FIRST_PORT = 18_800;
const MIB = 1024 * 1024;
/** Time for lazily freed memory (RCU, deferred frees) to show before MemAvailable is read. */
const SETTLE_MS = 3_000;

interface HostSample {
  memAvailable: number;
  /** Kernel memory that per-instance objects take: slab, kernel stacks, page tables, per-CPU. */
  kernel: number;
}

async function hostSample(): Promise<HostSample> {
  const text = await readFile('/proc/meminfo', 'utf8');
  const kb = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(text)?.[1] ?? 0) * 1024;
  return { memAvailable: kb('MemAvailable'), kernel: kb('Slab') + kb('KernelStack') + kb('PageTables') + kb('Percpu') };
}

/** A sample after settling: per field, the median of three reads. */
async function settledSample(): Promise<HostSample> {
  await sleep(SETTLE_MS);
  const reads: HostSample[] = [];
  for (let i = 0; i < 3; i++) {
    reads.push(await hostSample());
    await sleep(200);
  }
  const median = (k: keyof HostSample): number => reads.map((r) => r[k]).sort((x, y) => x - y)[1]!;
  return { memAvailable: median('memAvailable'), kernel: median('kernel') };
}

/** Proportional set size of a process (its share of the pages it maps), from smaps_rollup. */
async function pssOf(pid: number): Promise<number> {
  const text = await readFile(`/proc/${pid}/smaps_rollup`, 'utf8');
  return Number(/^Pss:\s+(\d+) kB$/m.exec(text)?.[1] ?? 0) * 1024;
}

/** Memory usage of the memory cgroup `pid` is in (v1 or v2). */
async function cgroupMemoryOf(pid: number): Promise<number> {
  const lines = (await readFile(`/proc/${pid}/cgroup`, 'utf8')).split('\n');
  const v1 = lines.find((l) => /^\d+:([^:]*,)?memory(,[^:]*)?:/.test(l));
  if (v1) return Number((await readFile(join('/sys/fs/cgroup/memory', v1.split(':')[2]!, 'memory.usage_in_bytes'), 'utf8')).trim());
  const v2 = lines.find((l) => l.startsWith('0::'));
  return Number((await readFile(join('/sys/fs/cgroup', v2!.slice(3), 'memory.current'), 'utf8')).trim());
}

interface Side {
  /** Median over the rounds, per instance: kernel memory taken while the N run + their processes' PSS. */
  hostBytesPerInstance: number;
  /** Every round's figure, for the spread. */
  rounds: number[];
  /** Median over the rounds of the MemAvailable drop per instance (machine-wide: noisy on a shared machine). */
  memAvailableBytesPerInstance: number;
  cgroupBytesPerInstance: number;
  pssBytesPerInstance: number;
}

/** N instances of one kind: started together, then removed together. */
interface Fleet {
  startAll(): Promise<void>;
  /** The pid of each instance's process, while they run. */
  pids(): Promise<number[]>;
  removeAll(): Promise<void>;
}

const median = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/**
 * Rounds of: sample, start all, sample (+ PSS and cgroups), remove all, sample.
 * Each round's kernel and MemAvailable changes are taken against the mean of the
 * samples around it, which cancels a steady drift from other work on the
 * machine; the median of the rounds resists a burst.
 */
async function measure(fleet: Fleet, n: number, rounds: number): Promise<Side> {
  const host: number[] = [];
  const available: number[] = [];
  let cgroup = 0;
  let pss = 0;
  let before = await settledSample();
  for (let r = 0; r < rounds; r++) {
    await fleet.startAll();
    const running = await settledSample();
    const pids = await fleet.pids();
    pss = 0;
    cgroup = 0;
    for (const pid of pids) {
      pss += await pssOf(pid);
      cgroup += await cgroupMemoryOf(pid);
    }
    await fleet.removeAll();
    const after = await settledSample();
    const kernel = running.kernel - (before.kernel + after.kernel) / 2;
    host.push((kernel + pss) / n);
    available.push(((before.memAvailable + after.memAvailable) / 2 - running.memAvailable) / n);
    before = after;
  }
  return {
    hostBytesPerInstance: median(host), rounds: host, memAvailableBytesPerInstance: median(available),
    cgroupBytesPerInstance: cgroup / n, pssBytesPerInstance: pss / n,
  };
}

async function strataSide(n: number, rounds: number): Promise<Side & { reason: string }> {
  const driver = new OsDriver(BENCH_OPTIONS);
  const availability = await driver.provision();
  if (!availability.available) throw new Error(`the os level is not available: ${availability.reason}`);
  const ids = Array.from({ length: n }, (_, i) => `density-${process.pid}-${i}`);
  // A kept stopped instance holds the tenant's bridge, parent cgroup and shifted image copy: paid once, not per instance.
  const keeper = `density-${process.pid}-keeper`;
  const spec = (id: string) => ({ id, tenantId: 'density', name: id.split('-').at(-1)!, level: 'os' as const, source: 'busybox', limits: { vcpus: 1, memoryMiB: 64, diskMiB: 64 }, config: {} });
  const fleet: Fleet = {
    async startAll() {
      for (const id of ids) {
        await driver.create(spec(id));
        await driver.start(id);
        const { address, port } = await driver.address(id);
        await get200(address, port ?? 8080);
      }
    },
    async pids() {
      const pids: number[] = [];
      for (const id of ids) pids.push(Number((await driver.inspect(id))?.info?.pid));
      return pids;
    },
    async removeAll() {
      for (const id of ids) {
        await driver.stop(id, { graceMs: 0 }).catch(() => undefined);
        await driver.delete(id).catch(() => undefined);
      }
    },
  };
  try {
    await driver.create(spec(keeper));
    await driver.start(keeper);
    await driver.stop(keeper, { graceMs: 0 });
    return { ...(await measure(fleet, n, rounds)), reason: availability.reason };
  } finally {
    await fleet.removeAll();
    await driver.delete(keeper).catch(() => undefined);
    await driver.cleanup();
    await rm(BENCH_OPTIONS.stateDir, { recursive: true, force: true });
    // The run root holds mount points: rmdir only, so a mount that survived is left alone rather than emptied.
    for (const dir of ['rootfs', 'volumes', 'runc']) await rmdir(join(BENCH_OPTIONS.runRoot, dir)).catch(() => undefined);
    await rm(join(BENCH_OPTIONS.runRoot, 'owner.json'), { force: true });
    await rmdir(BENCH_OPTIONS.runRoot).catch(() => undefined);
  }
}

async function bareSide(n: number, rounds: number, rootfs: string): Promise<Side> {
  await rm(ANCHOR_BUNDLES, { recursive: true, force: true });
  const ids = Array.from({ length: n }, (_, i) => `bare-density-${process.pid}-${i}`);
  const started: string[] = [];
  const fleet: Fleet = {
    async startAll() {
      for (let i = 0; i < n; i++) {
        await runDetached(['--root', ANCHOR_ROOT, 'run', '--detach', '--bundle', join(ANCHOR_BUNDLES, String(i)), ids[i]!]);
        started.push(ids[i]!);
        await get200('127.0.0.1', ANCHOR_FIRST_PORT + i);
      }
    },
    async pids() {
      const pids: number[] = [];
      for (const id of ids) pids.push((JSON.parse((await run('runc', ['--root', ANCHOR_ROOT, 'state', id])).stdout) as { pid: number }).pid);
      return pids;
    },
    async removeAll() {
      for (const id of started.splice(0)) await run('runc', ['--root', ANCHOR_ROOT, 'delete', '--force', id]).catch(() => undefined);
    },
  };
  try {
    for (let i = 0; i < n; i++) {
      const bundle = join(ANCHOR_BUNDLES, String(i));
      await mkdir(bundle, { recursive: true });
      await run('runc', ['spec', '--bundle', bundle]);
      const spec = JSON.parse(await readFile(join(bundle, 'config.json'), 'utf8')) as {
        root: { path: string; readonly: boolean };
        process: { terminal: boolean; args: string[] };
        linux: { namespaces: Array<{ type: string }> };
      };
      spec.root = { path: rootfs, readonly: true };
      spec.process.terminal = false;
      spec.process.args = ['/bin/httpd', '-f', '-p', `127.0.0.1:${ANCHOR_FIRST_PORT + i}`, '-h', '/www'];
      spec.linux.namespaces = spec.linux.namespaces.filter((ns) => ns.type !== 'network');
      await writeFile(join(bundle, 'config.json'), JSON.stringify(spec));
    }
    return await measure(fleet, n, rounds);
  } finally {
    await fleet.removeAll();
    await rm(ANCHOR_BUNDLES, { recursive: true, force: true });
    await rm(ANCHOR_ROOT, { recursive: true, force: true });
  }
}

const bench: Bench = async (opts) => {
  const n = intOption(opts, 'instances', 100);
  const rounds = intOption(opts, 'rounds', 3);
  const image = await new ImageStore('/var/lib/strata/images').resolve('busybox');
  const strata = await strataSide(n, rounds);
  const bare = await bareSide(n, rounds, image.rootfs);
  const mib = (b: number): number => Math.round((b / MIB) * 1000) / 1000;
  const line = (label: string, side: Side): string =>
    `  ${label}  host ${mib(side.hostBytesPerInstance).toFixed(3)} MiB/instance (rounds ${side.rounds.map((r) => mib(r).toFixed(3)).join(', ')}; `
    + `PSS ${mib(side.pssBytesPerInstance).toFixed(3)}, cgroup ${mib(side.cgroupBytesPerInstance).toFixed(3)}, MemAvailable drop ${mib(side.memAvailableBytesPerInstance).toFixed(2)})`;
  return {
    metric: `host memory per idle os instance with ${n} running (kernel slab/stacks/page tables/per-CPU growth + process PSS), busybox httpd`,
    unit: 'MiB',
    value: mib(strata.hostBytesPerInstance),
    anchor: `bare runc run --detach of the same image, ${n} at once (no userns, overlay, netns), same measure`,
    anchor_value: mib(bare.hostBytesPerInstance),
    summary: [
      `os-density: ${n} busybox httpd instances running at once, ${rounds} rounds; ${strata.reason}`,
      line('Strata   ', strata),
      line('bare runc', bare),
      '  (MemAvailable is machine-wide and moves with everything else on the machine; the kernel + PSS figure is the one reported)',
    ],
    extra: {
      instances: n, rounds, round_mib: strata.rounds.map(mib), anchor_round_mib: bare.rounds.map(mib),
      pss_mib: mib(strata.pssBytesPerInstance), anchor_pss_mib: mib(bare.pssBytesPerInstance),
      cgroup_mib: mib(strata.cgroupBytesPerInstance), anchor_cgroup_mib: mib(bare.cgroupBytesPerInstance),
      memavailable_drop_mib: mib(strata.memAvailableBytesPerInstance), anchor_memavailable_drop_mib: mib(bare.memAvailableBytesPerInstance),
    },
  };
};

export default bench;
