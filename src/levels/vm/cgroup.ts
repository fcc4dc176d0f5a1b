/**
 * One cgroup per QEMU process, so a VM that runs away with CPU or memory stays
 * inside its share: CPU quota = vCPUs × one core, memory = guest RAM + QEMU's
 * own overhead (TCG translation cache, device state, I/O buffers), and a pids
 * cap. The group is `strata-vm/<name>` in each hierarchy (see
 * `core/cgroups.ts` for v1, hybrid and v2). The launcher writes QEMU's pid into
 * the `cgroup.procs` files before it execs QEMU, so no QEMU instruction runs
 * outside.
 */
import { CGROUP_FS, CPU_PERIOD_US, Cgroup, cgroupMode, cpuQuotaUs, type CgroupMemory, type CgroupMode } from '../../core/cgroups.js';

const PARENT = 'strata-vm';
/** QEMU's memory beyond guest RAM: TCG translation cache (64 MiB), device models, slirp, migration buffers. */
export const QEMU_OVERHEAD_MIB = 192;
const PIDS_MAX = 256;

export interface CgroupLimits {
  vcpus: number;
  memoryMiB: number;
  /** Memory the machine model itself holds as RAM beyond the guest's (`MACHINE_RAM_MIB`). */
  machineMiB?: number;
}

export interface VmCgroup {
  mode: CgroupMode;
  /** Directories, one per controller on v1, one on v2. */
  dirs: string[];
  /** The `cgroup.procs` files a process joins. */
  procsFiles: string[];
}

/** What the guard reads of a VM's memory cgroup. */
export type VmMemoryStats = CgroupMemory;

/** The limit values, the same on v1 and v2. */
export function cgroupLimitValues(limits: CgroupLimits): { cpuQuotaUs: number; periodUs: number; memoryBytes: number; pidsMax: number } {
  return {
    cpuQuotaUs: cpuQuotaUs(limits.vcpus),
    periodUs: CPU_PERIOD_US,
    memoryBytes: (limits.memoryMiB + (limits.machineMiB ?? 0) + QEMU_OVERHEAD_MIB) * 1024 * 1024,
    pidsMax: PIDS_MAX,
  };
}

/** The VM's group `strata-vm/<name>` (the driver names it `<level>-<id>`). */
export const vmCgroup = (name: string, root = CGROUP_FS): Cgroup => new Cgroup(`${PARENT}/${name}`, cgroupMode(root), root);

/** Creates (or reuses) the cgroup `name` with `limits`. */
export async function createVmCgroup(name: string, limits: CgroupLimits, root = CGROUP_FS): Promise<VmCgroup> {
  const v = cgroupLimitValues(limits);
  const group = vmCgroup(name, root).create({ cpus: limits.vcpus, memoryBytes: v.memoryBytes, pids: v.pidsMax });
  return { mode: group.mode, dirs: group.dirs, procsFiles: group.procsFiles };
}

/** Removes the cgroup `name`; one whose last process is still tearing down its memory gets retries for up to 5 s. Missing is fine. */
export async function removeVmCgroup(name: string, root = CGROUP_FS): Promise<void> {
  await vmCgroup(name, root).remove();
}

/** The memory counters of the cgroup `name`; null when it does not exist (any more). */
export async function readVmMemoryStats(name: string, root = CGROUP_FS): Promise<VmMemoryStats | null> {
  return vmCgroup(name, root).memory();
}

/** Nanoseconds the cgroup `name` spent held back by its CPU quota; null when it is gone. Cumulative. */
export async function readVmThrottledNs(name: string, root = CGROUP_FS): Promise<number | null> {
  return vmCgroup(name, root).throttledNs();
}
