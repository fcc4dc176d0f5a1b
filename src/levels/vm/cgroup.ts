/**
 * One cgroup per QEMU process, so a VM that runs away with CPU or memory stays
 * inside its share: CPU quota = vCPUs × one core, memory = guest RAM + QEMU's
 * own overhead (TCG translation cache, device state, I/O buffers), and a pids
 * cap. v1 (and hybrid machines, which mount the v1 controllers: these ones) use
 * `/sys/fs/cgroup/<controller>/strata-vm/<name>`; pure v2 uses
 * `/sys/fs/cgroup/strata-vm/<name>`. The launcher writes QEMU's pid into the
 * `cgroup.procs` files before it execs QEMU, so no QEMU instruction runs outside.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const CGROUP_FS = '/sys/fs/cgroup';
const PARENT = 'strata-vm';
const PERIOD_US = 100_000;
/** QEMU's memory beyond guest RAM: TCG translation cache (64 MiB), device models, slirp, migration buffers. */
export const QEMU_OVERHEAD_MIB = 192;
const PIDS_MAX = 256;
const V1_CONTROLLERS = ['cpu', 'memory', 'pids'] as const;

export interface CgroupLimits {
  vcpus: number;
  memoryMiB: number;
  /** Memory the machine model itself holds as RAM beyond the guest's (`MACHINE_RAM_MIB`). */
  machineMiB?: number;
}

export interface VmCgroup {
  mode: 'v1' | 'v2';
  /** Directories, one per controller on v1, one on v2. */
  dirs: string[];
  /** The `cgroup.procs` files a process joins. */
  procsFiles: string[];
}

export const cgroupMode = (root = CGROUP_FS): 'v1' | 'v2' => (existsSync(join(root, 'cgroup.controllers')) ? 'v2' : 'v1');

/** The limit values, the same on v1 and v2. */
export function cgroupLimitValues(limits: CgroupLimits): { cpuQuotaUs: number; periodUs: number; memoryBytes: number; pidsMax: number } {
  return {
    cpuQuotaUs: limits.vcpus * PERIOD_US,
    periodUs: PERIOD_US,
    memoryBytes: (limits.memoryMiB + (limits.machineMiB ?? 0) + QEMU_OVERHEAD_MIB) * 1024 * 1024,
    pidsMax: PIDS_MAX,
  };
}

/** Creates (or reuses) the cgroup `name` with `limits`. */
export async function createVmCgroup(name: string, limits: CgroupLimits, root = CGROUP_FS): Promise<VmCgroup> {
  const v = cgroupLimitValues(limits);
  if (cgroupMode(root) === 'v2') {
    await writeFile(join(root, 'cgroup.subtree_control'), '+cpu +memory +pids').catch(() => undefined);
    await mkdir(join(root, PARENT), { recursive: true });
    await writeFile(join(root, PARENT, 'cgroup.subtree_control'), '+cpu +memory +pids');
    const dir = join(root, PARENT, name);
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'cpu.max'), `${v.cpuQuotaUs} ${v.periodUs}`);
    await writeFile(join(dir, 'memory.max'), String(v.memoryBytes));
    await writeFile(join(dir, 'pids.max'), String(v.pidsMax));
    return { mode: 'v2', dirs: [dir], procsFiles: [join(dir, 'cgroup.procs')] };
  }
  const dirs: string[] = [];
  for (const controller of V1_CONTROLLERS) {
    const dir = join(root, controller, PARENT, name);
    await mkdir(dir, { recursive: true });
    dirs.push(dir);
  }
  const [cpu, memory, pids] = dirs as [string, string, string];
  await writeFile(join(cpu, 'cpu.cfs_period_us'), String(v.periodUs));
  await writeFile(join(cpu, 'cpu.cfs_quota_us'), String(v.cpuQuotaUs));
  await writeFile(join(memory, 'memory.limit_in_bytes'), String(v.memoryBytes));
  await writeFile(join(pids, 'pids.max'), String(v.pidsMax));
  return { mode: 'v1', dirs, procsFiles: dirs.map((d) => join(d, 'cgroup.procs')) };
}

/** Removes the cgroup `name`; one whose last process is still tearing down its memory gets retries for up to 5 s. Missing is fine. */
export async function removeVmCgroup(name: string, root = CGROUP_FS): Promise<void> {
  const dirs = cgroupMode(root) === 'v2'
    ? [join(root, PARENT, name)]
    : V1_CONTROLLERS.map((c) => join(root, c, PARENT, name));
  for (const dir of dirs) {
    for (let attempt = 0; ; attempt++) {
      try {
        await rmdir(dir);
        break;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') break;
        if (code !== 'EBUSY' || attempt >= 100) throw e;
        await sleep(50);
      }
    }
  }
}

/** What the guard reads of a VM's memory cgroup: use against the limit, and the kernel's own counts of limit hits and OOM kills. */
export interface VmMemoryStats {
  usageBytes: number;
  limitBytes: number;
  /** Times the cgroup hit its limit (v1 `memory.failcnt`, v2 `memory.events` max). Cumulative. */
  limitHits: number;
  /** Processes (QEMU: the whole VM) the OOM killer ended in it (v1 `memory.oom_control` oom_kill, v2 `memory.events` oom_kill). Cumulative. */
  oomKills: number;
}

/** The memory counters of the cgroup `name`; null when it does not exist (any more). */
export async function readVmMemoryStats(name: string, root = CGROUP_FS): Promise<VmMemoryStats | null> {
  const read = (dir: string, file: string): Promise<string> => readFile(join(dir, file), 'utf8');
  const field = (text: string, key: string): number => Number(new RegExp(`^${key} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
  try {
    if (cgroupMode(root) === 'v2') {
      const dir = join(root, PARENT, name);
      const [current, max, events] = await Promise.all([read(dir, 'memory.current'), read(dir, 'memory.max'), read(dir, 'memory.events')]);
      const limit = max.trim() === 'max' ? Number.MAX_SAFE_INTEGER : Number(max);
      return { usageBytes: Number(current), limitBytes: limit, limitHits: field(events, 'max'), oomKills: field(events, 'oom_kill') };
    }
    const dir = join(root, 'memory', PARENT, name);
    const [usage, limit, failcnt, oom] = await Promise.all([
      read(dir, 'memory.usage_in_bytes'), read(dir, 'memory.limit_in_bytes'), read(dir, 'memory.failcnt'), read(dir, 'memory.oom_control'),
    ]);
    return { usageBytes: Number(usage), limitBytes: Number(limit), limitHits: Number(failcnt), oomKills: field(oom, 'oom_kill') };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

/** Nanoseconds the cgroup `name` spent held back by its CPU quota (v1 `cpu.stat` throttled_time, v2 throttled_usec); null when it is gone. Cumulative. */
export async function readVmThrottledNs(name: string, root = CGROUP_FS): Promise<number | null> {
  const v2 = cgroupMode(root) === 'v2';
  const text = await readFile(v2 ? join(root, PARENT, name, 'cpu.stat') : join(root, 'cpu', PARENT, name, 'cpu.stat'), 'utf8').catch(() => null);
  if (text === null) return null;
  const m = (v2 ? /^throttled_usec (\d+)$/m : /^throttled_time (\d+)$/m).exec(text);
  return m ? Number(m[1]) * (v2 ? 1000 : 1) : 0;
}
