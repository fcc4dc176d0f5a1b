/**
 * The running VMs (vm and emu levels) as the host-side VM interceptors see
 * them: the QEMU process, the VM's cgroup, and where it sits on its tenant's
 * bridge. Asked of the store (who owns what) and the drivers (what runs), and
 * refreshed every few seconds rather than on every sample.
 */
import type { Store } from '../../../store/store.js';
import type { Level } from '../../ids.js';
import type { LevelDriver, ObservedInstance } from '../../driver.js';

export interface VmTarget {
  tenantId: string;
  instanceId: string;
  level: Level;
  /** QEMU's pid. */
  pid: number;
  /** The guest's address and its tenant's bridge; null without a NIC. */
  address: string | null;
  bridge: string | null;
  /** The guest NIC's MAC (lower case), which the bridge lets through from its tap only; null without a NIC. */
  mac: string | null;
  /** The VM's cgroup under `strata-vm/` (the driver names it `<level>-<id>`). */
  cgroup: string;
  vcpus: number;
}

/** The cgroup a QEMU driver puts a VM in (see `QemuDriver.#cgroupName`). */
export const vmCgroupName = (level: Level, instanceId: string): string => `${level}-${instanceId}`;

/** A target from what a driver's `inspect` reports of a running VM; null when it does not run. */
export function vmTargetOf(
  subject: { tenantId: string; instanceId: string; level: Level; vcpus: number },
  seen: Pick<ObservedInstance, 'state' | 'info'> | null,
): VmTarget | null {
  const pid = seen?.info?.pid;
  if (seen?.state !== 'running' || pid === undefined || !(pid > 0)) return null;
  return {
    ...subject, pid, address: seen.info?.address || null, bridge: seen.info?.bridge || null, mac: seen.info?.mac?.toLowerCase() || null,
    cgroup: vmCgroupName(subject.level, subject.instanceId),
  };
}

/** Every running instance of the store at the levels of `drivers` (the QEMU drivers), through its level's driver. */
export async function vmTargets(store: Store, drivers: readonly LevelDriver[]): Promise<VmTarget[]> {
  const out: VmTarget[] = [];
  for (const i of store.listInstances()) {
    const driver = drivers.find((d) => d.level === i.level);
    if (!driver) continue;
    const t = vmTargetOf({ tenantId: i.tenantId, instanceId: i.id, level: driver.level, vcpus: i.limits.vcpus }, await driver.inspect(i.id).catch(() => null));
    if (t) out.push(t);
  }
  return out;
}

/** `fetch`, asked at most every `ttlMs` (the last answer in between); a failed ask keeps the last answer. */
export function cachedTargets(fetch: () => Promise<VmTarget[]>, ttlMs: number): () => Promise<VmTarget[]> {
  let last: VmTarget[] = [];
  let at = -Infinity;
  return async () => {
    if (Date.now() - at >= ttlMs) {
      at = Date.now();
      last = await fetch().catch(() => last);
    }
    return last;
  };
}
