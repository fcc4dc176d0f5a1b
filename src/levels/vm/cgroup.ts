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
import { mkdir, rmdir, writeFile } from 'node:fs/promises';
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
    memoryBytes: (limits.memoryMiB + QEMU_OVERHEAD_MIB) * 1024 * 1024,
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
