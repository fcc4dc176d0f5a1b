/**
 * What an os instance uses: CPU time, memory and tasks from its cgroup (the
 * one runc made from `cgroupsPath`), network bytes from the host end of its
 * veth (what the host sends is what the instance receives), and disk from what
 * it wrote: the overlay's upper dir and the data volume's allocated blocks.
 * Read outside the instance's lock: the figures need no consistency with a
 * start or stop in flight, and a stats call must not wait behind one.
 */
import { join } from 'node:path';
import { DiskUsageCache } from '../../core/disk-usage.js';
import type { InstanceUsage } from '../driver.js';
import type { Cgroups } from './cgroups.js';
import type { InstanceFiles } from './instance-files.js';
import type { Network } from './network.js';

const MIB = 1024 * 1024;

export interface UsageSources {
  cgroups: Cgroups;
  network: Network;
  files: InstanceFiles;
}

/** Walked at most every 15 s per instance (directory paths are unique per instance). */
const disk = new DiskUsageCache();

/** The instance's usage; null when the driver holds no record of it. A stopped one has only its disk. */
export async function instanceUsage(d: UsageSources, id: string): Promise<InstanceUsage | null> {
  const record = await d.files.find(id);
  if (!record) return null;
  const dir = d.files.dir(id);
  const [upper, volume] = await Promise.all([disk.bytes(join(dir, 'upper')), disk.bytes(join(dir, 'volume.ext4'))]);
  const [cg, limitMiB, net] = await Promise.all([
    d.cgroups.stats(record.cgroupsPath),
    d.cgroups.memoryLimit(record.cgroupsPath).catch(() => null),
    d.network.counters(record.hostVeth),
  ]);
  return {
    cpuSeconds: cg.cpuUsageNs === null ? null : cg.cpuUsageNs / 1e9,
    memoryBytes: cg.memoryBytes,
    memoryLimitBytes: limitMiB === null ? null : Math.round(limitMiB * MIB),
    netRxBytes: net?.rxBytes ?? null,
    netTxBytes: net?.txBytes ?? null,
    diskBytes: upper + volume,
    pids: cg.pids,
  };
}
