/**
 * What a VM uses, seen from the host: CPU time, memory and tasks of QEMU's
 * cgroup (guest RAM it touched plus QEMU's own overhead, against the group's
 * limit), bytes through its tap, and the allocated size of its qcow2 overlay
 * (what the guest wrote; the shared base is not counted).
 */
import { DiskUsageCache } from '../../core/disk-usage.js';
import { instanceSideCounters } from '../../core/net-counters.js';
import type { InstanceUsage } from '../driver.js';
import { vmCgroup } from './cgroup.js';
import type { VmFiles } from './instance-files.js';

const disk = new DiskUsageCache(5_000);

/** The VM's usage (`cgroupName` as the driver names its group); null when the driver holds no record of it. */
export async function vmUsage(files: VmFiles, cgroupName: string, id: string): Promise<InstanceUsage | null> {
  const rec = await files.load(id).catch(() => null);
  if (!rec) return null;
  const group = vmCgroup(cgroupName);
  const [cg, limit, net, diskBytes] = await Promise.all([
    group.stats(),
    group.memoryLimit(),
    instanceSideCounters(rec.network.tap),
    rec.spec.limits.diskMiB > 0 ? disk.bytes(files.diskPath(id)) : Promise.resolve(0),
  ]);
  return {
    cpuSeconds: cg.cpuUsageNs === null ? null : cg.cpuUsageNs / 1e9,
    memoryBytes: cg.memoryBytes,
    memoryLimitBytes: limit,
    netRxBytes: net?.rxBytes ?? null,
    netTxBytes: net?.txBytes ?? null,
    diskBytes,
    pids: cg.pids,
  };
}
