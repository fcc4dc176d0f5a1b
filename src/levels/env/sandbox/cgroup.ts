/**
 * A cgroup per isolate host: memory, CPU and pids limits, so one host cannot
 * starve the machine whatever its isolates do.
 *
 * Each host's group is `strata-env/<daemon pid>-<host>` (see `core/cgroups.ts`
 * for v1, hybrid and v2). Hosts join their cgroup before they exec node (see
 * `command.ts`), so no tenant code ever runs outside it.
 */
import { readdirSync } from 'node:fs';
import { Cgroup, LIMITED_CONTROLLERS, limitingCgroupMode, type CgroupMode } from '../../../core/cgroups.js';
import { isAlive } from '../../../core/proc.js';

export type { CgroupMode } from '../../../core/cgroups.js';

export interface CgroupLimits {
  memoryBytes: number;
  /** CPU quota in cores (1.5 = one and a half cores). */
  cpus: number;
  pids: number;
}

/** One host's cgroup. */
export interface HostCgroup {
  /** `cgroup.procs` files the host's first process writes its pid into. */
  readonly procsFiles: string[];
  /** Memory charged to the cgroup now, in bytes; null if unreadable. */
  memoryBytes(): number | null;
  /** Kills what is left inside and removes the cgroup. */
  remove(): Promise<void>;
}

const PARENT = 'strata-env';
/** A host that will not leave its group is killed again for about a second before giving up. */
const REMOVE = { kill: true, attempts: 50, intervalMs: 20 } as const;

/** Which cgroup interface can hold hosts here, or null (not root, or controllers missing). */
export function detectCgroups(): CgroupMode | null {
  if (process.getuid?.() !== 0) return null;
  return limitingCgroupMode();
}

/** Creates the cgroup `name` (unique per host) under `strata-env/` with `limits`; no swap on v2. */
export function createHostCgroup(mode: CgroupMode, name: string, limits: CgroupLimits): HostCgroup {
  const group = new Cgroup(`${PARENT}/${name}`, mode).create({ ...limits, noSwap: true });
  return {
    procsFiles: group.procsFiles,
    memoryBytes: () => group.memoryUsage(),
    remove: () => group.remove(REMOVE),
  };
}

/**
 * Removes host cgroups left by a daemon that died (their name starts with its
 * pid, and that pid is gone). Cgroups of live daemons are left alone.
 */
export async function removeStaleCgroups(mode: CgroupMode): Promise<void> {
  const stale = new Set<string>();
  for (const controller of mode === 'v2' ? ['memory' as const] : LIMITED_CONTROLLERS) {
    let names: string[];
    try {
      names = readdirSync(new Cgroup(PARENT, mode).dir(controller), { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name);
    } catch { continue; }
    for (const n of names) { const pid = Number(n.split('-')[0]); if (Number.isInteger(pid) && pid > 0 && !isAlive(pid)) stale.add(n); }
  }
  for (const name of stale) await new Cgroup(`${PARENT}/${name}`, mode).remove(REMOVE);
}
