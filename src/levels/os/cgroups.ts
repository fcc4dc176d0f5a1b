/**
 * Cgroups of the `os` level: the mode of the machine (v1, hybrid counted as v1 —
 * these machines mount the v1 controllers and an empty v2 — or pure v2), the
 * parent cgroup of each tenant, and the live figures of one instance.
 *
 * Layout: `<root>/<tenant>/<instance>`. runc creates and removes the instance's
 * own cgroup from the spec's `cgroupsPath`; this module owns the tenant parents,
 * whose limits cap the sum of the tenant's real usage, whatever the instances
 * declared.
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, rmdirSync, statSync } from 'node:fs';
import { mkdir, readFile, readdir, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TenantLimits } from './allocations.js';
import { CPU_PERIOD_US, type CgroupMode } from './spec.js';

const CGROUP_FS = '/sys/fs/cgroup';
const MIB = 1024 * 1024;

/** v2 only when the unified hierarchy is mounted at the top and has controllers; hybrid machines are v1. */
export function detectCgroupMode(root = CGROUP_FS): CgroupMode {
  return existsSync(join(root, 'cgroup.controllers')) ? 'v2' : 'v1';
}

/** A tenant's cgroup name: the tenant id, made safe for a path. */
export const tenantCgroupName = (tenantId: string): string => `t-${tenantId.replace(/[^A-Za-z0-9_.-]/g, '_')}`;

/** The `cgroupsPath` runc gets for an instance. */
export const instanceCgroupPath = (root: string, tenantId: string, instanceId: string): string => `/${root}/${tenantCgroupName(tenantId)}/${instanceId}`;

/** A driver's subtree of the unified hierarchy (see `Cgroups.unifiedScope`). */
export interface CgroupScope {
  rootId: string;
  /** Depth of the root below the hierarchy's top (1 for `/strata`). */
  rootLevel: number;
  /** Depth of an instance's cgroup. */
  instanceLevel: number;
}

export interface CgroupStats {
  cpuUsageNs: number | null;
  memoryBytes: number | null;
  pids: number | null;
  oomKills: number | null;
}

function readFileSyncSafe(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/** v1 controllers whose tenant parents carry limits. */
const V1_LIMITED = ['memory', 'cpu', 'pids'] as const;

export class Cgroups {
  constructor(readonly mode: CgroupMode, readonly root: string, private readonly fsRoot = CGROUP_FS) {}

  /**
   * Whether the kernel weighs block I/O per cgroup: v1 shows `blkio.weight` (CFQ)
   * or `blkio.bfq.*` (BFQ) in the blkio hierarchy; v2 has the io controller.
   * Kernels with only mq-deadline/kyber/none have neither, and runc fails on a weight.
   */
  hasIoWeight(): boolean {
    if (this.mode === 'v2') return readFileSyncSafe(join(this.fsRoot, 'cgroup.controllers')).split(/\s+/).includes('io');
    try {
      return readdirSync(join(this.fsRoot, 'blkio')).some((f) => f === 'blkio.weight' || f.startsWith('blkio.bfq.'));
    } catch {
      return false;
    }
  }

  /**
   * The id of a cgroup in the unified (v2) hierarchy — what the kernel reports
   * per task (bpf_get_current_cgroup_id) — or null where there is none. On
   * hybrid machines runc places each container in its own cgroup there too
   * (`0::<cgroupsPath>` in /proc/<pid>/cgroup). The id is the directory's inode
   * number: kernfs gives every node a 64-bit id that is never handed out again.
   */
  unifiedId(cgroupsPath: string): string | null {
    try {
      return statSync(join(this.#unified, cgroupsPath), { bigint: true }).ino.toString();
    } catch {
      return null;
    }
  }

  /** Makes an instance's cgroup in the unified hierarchy (and its parents) ahead of runc, which adopts it. */
  makeUnified(cgroupsPath: string): void {
    if (existsSync(join(this.#unified, 'cgroup.procs'))) mkdirSync(join(this.#unified, cgroupsPath), { recursive: true });
  }

  /** Removes an instance's unified cgroup if it is still there (empty: rmdir refuses otherwise). */
  removeUnified(cgroupsPath: string): void {
    try {
      rmdirSync(join(this.#unified, cgroupsPath));
    } catch { /* gone already (runc removed it), or still in use */ }
  }

  /**
   * Where this driver's instances live in the unified hierarchy: the id and
   * depth of its root cgroup (made here if missing, so the id holds while the
   * driver runs) and the depth of instance cgroups (root/tenant/instance).
   * Null without a unified hierarchy.
   */
  unifiedScope(): CgroupScope | null {
    if (!existsSync(join(this.#unified, 'cgroup.procs'))) return null;
    try {
      mkdirSync(join(this.#unified, this.root), { recursive: true });
    } catch {
      return null;
    }
    const rootId = this.unifiedId(this.root);
    const rootLevel = this.root.split('/').filter(Boolean).length;
    return rootId === null ? null : { rootId, rootLevel, instanceLevel: rootLevel + 2 };
  }

  get #unified(): string {
    return this.mode === 'v2' ? this.fsRoot : join(this.fsRoot, 'unified');
  }

  /** Creates the tenant's parent (and the root) where missing and writes its limits; no limits means unlimited. */
  async ensureTenant(tenantId: string, limits: TenantLimits | undefined): Promise<void> {
    const tenant = tenantCgroupName(tenantId);
    if (this.mode === 'v1') {
      for (const controller of V1_LIMITED) {
        const dir = join(this.fsRoot, controller, this.root, tenant);
        await mkdir(dir, { recursive: true });
      }
      const memory = join(this.fsRoot, 'memory', this.root, tenant);
      const cpu = join(this.fsRoot, 'cpu', this.root, tenant);
      const pids = join(this.fsRoot, 'pids', this.root, tenant);
      await writeFile(join(memory, 'memory.limit_in_bytes'), limits ? String(limits.memoryMiB * MIB) : '-1');
      await writeFile(join(cpu, 'cpu.cfs_period_us'), String(CPU_PERIOD_US));
      await writeFile(join(cpu, 'cpu.cfs_quota_us'), limits ? String(Math.round(limits.vcpus * CPU_PERIOD_US)) : '-1');
      await writeFile(join(pids, 'pids.max'), limits ? String(limits.pids) : 'max');
      return;
    }
    const rootDir = join(this.fsRoot, this.root);
    const dir = join(rootDir, tenant);
    await mkdir(dir, { recursive: true });
    for (const parent of [this.fsRoot, rootDir, dir]) await this.#enableControllers(parent);
    await writeFile(join(dir, 'memory.max'), limits ? String(limits.memoryMiB * MIB) : 'max');
    await writeFile(join(dir, 'cpu.max'), limits ? `${Math.round(limits.vcpus * CPU_PERIOD_US)} ${CPU_PERIOD_US}` : `max ${CPU_PERIOD_US}`);
    await writeFile(join(dir, 'pids.max'), limits ? String(limits.pids) : 'max');
  }

  /**
   * Sets the CFS CPU quota of one instance's own cgroup (`cgroupsPath` as runc
   * got it) to `vcpus` CPUs — the guard's throttle, and its undo with the
   * instance's declared vCPUs. Takes effect at once on a running container.
   */
  async setCpuLimit(cgroupsPath: string, vcpus: number): Promise<void> {
    const quota = Math.max(1000, Math.round(vcpus * CPU_PERIOD_US));
    if (this.mode === 'v1') await writeFile(join(this.fsRoot, 'cpu', cgroupsPath, 'cpu.cfs_quota_us'), String(quota));
    else await writeFile(join(this.fsRoot, cgroupsPath, 'cpu.max'), `${quota} ${CPU_PERIOD_US}`);
  }

  /** The instance's CPU quota in CPUs, or null when unlimited. */
  async cpuLimit(cgroupsPath: string): Promise<number | null> {
    if (this.mode === 'v1') {
      const quota = Number((await readFile(join(this.fsRoot, 'cpu', cgroupsPath, 'cpu.cfs_quota_us'), 'utf8')).trim());
      const period = Number((await readFile(join(this.fsRoot, 'cpu', cgroupsPath, 'cpu.cfs_period_us'), 'utf8')).trim());
      return quota < 0 ? null : quota / period;
    }
    const [quota, period] = (await readFile(join(this.fsRoot, cgroupsPath, 'cpu.max'), 'utf8')).trim().split(/\s+/);
    return quota === 'max' ? null : Number(quota) / Number(period);
  }

  /**
   * Sets the memory limit of one instance's own cgroup to `memoryMiB`, with no
   * swap on top (as at create: v1 memsw = limit, v2 swap off). On v1 the memsw
   * limit may never be below the memory limit, so a raise writes memsw first
   * and a cut writes it last. Takes effect at once on a running container.
   */
  async setMemoryLimit(cgroupsPath: string, memoryMiB: number): Promise<void> {
    const bytes = String(memoryMiB * MIB);
    if (this.mode === 'v2') {
      await writeFile(join(this.fsRoot, cgroupsPath, 'memory.max'), bytes);
      return;
    }
    const dir = join(this.fsRoot, 'memory', cgroupsPath);
    const memsw = join(dir, 'memory.memsw.limit_in_bytes');
    const hasMemsw = existsSync(memsw); // absent where the kernel does no swap accounting
    const current = Number((await readFile(join(dir, 'memory.limit_in_bytes'), 'utf8')).trim());
    const raise = memoryMiB * MIB > current;
    if (raise && hasMemsw) await writeFile(memsw, bytes);
    await writeFile(join(dir, 'memory.limit_in_bytes'), bytes);
    if (!raise && hasMemsw) await writeFile(memsw, bytes);
  }

  /** The instance's memory limit in MiB (null when unlimited or unreadable). */
  async memoryLimit(cgroupsPath: string): Promise<number | null> {
    const text = await readText(this.mode === 'v1' ? join(this.fsRoot, 'memory', cgroupsPath, 'memory.limit_in_bytes') : join(this.fsRoot, cgroupsPath, 'memory.max'));
    const n = toNumber(text);
    // v1 reports "unlimited" as a page-rounded LONG_MAX; v2 as "max" (not a number).
    return n === null || n >= 2 ** 62 ? null : n / MIB;
  }

  /** Removes the tenant's parent in every hierarchy; returns false while instances still live in it. */
  async removeTenant(tenantId: string): Promise<boolean> {
    return this.#removeEverywhere(join(this.root, tenantCgroupName(tenantId)));
  }

  /** Removes every tenant parent that has no instance left, then the root if it is empty. */
  async removeAll(): Promise<boolean> {
    const hierarchies = await this.#hierarchies();
    const tenants = new Set<string>();
    for (const hierarchy of hierarchies) {
      const entries = await readdir(join(hierarchy, this.root), { withFileTypes: true }).catch(() => []);
      for (const entry of entries) if (entry.isDirectory() && entry.name.startsWith('t-')) tenants.add(entry.name);
    }
    for (const tenant of tenants) await this.#removeEverywhere(join(this.root, tenant));
    return this.#removeEverywhere(this.root);
  }

  /** Live figures of one instance's cgroup (null where a controller is missing). */
  async stats(cgroupsPath: string): Promise<CgroupStats> {
    if (this.mode === 'v1') {
      const at = (controller: string, file: string): string => join(this.fsRoot, controller, cgroupsPath, file);
      const oom = await readText(at('memory', 'memory.oom_control'));
      return {
        cpuUsageNs: toNumber(await readText(at('cpuacct', 'cpuacct.usage'))),
        memoryBytes: toNumber(await readText(at('memory', 'memory.usage_in_bytes'))),
        pids: toNumber(await readText(at('pids', 'pids.current'))),
        oomKills: oom === null ? null : keyed(oom, 'oom_kill'),
      };
    }
    const at = (file: string): string => join(this.fsRoot, cgroupsPath, file);
    const cpu = await readText(at('cpu.stat'));
    const events = await readText(at('memory.events'));
    const usageUs = cpu === null ? null : keyed(cpu, 'usage_usec');
    return {
      cpuUsageNs: usageUs === null ? null : usageUs * 1000,
      memoryBytes: toNumber(await readText(at('memory.current'))),
      pids: toNumber(await readText(at('pids.current'))),
      oomKills: events === null ? null : keyed(events, 'oom_kill'),
    };
  }

  /** Every directory `relative` names, in every hierarchy, deepest first; leaves what is still in use. */
  async #removeEverywhere(relative: string): Promise<boolean> {
    const hierarchies = await this.#hierarchies();
    let removedAll = true;
    for (const hierarchy of hierarchies) {
      const dir = join(hierarchy, relative);
      if (!existsSync(dir)) continue;
      try {
        // Children first: runc leaves none on success, but a crash between its mkdir and its cleanup may.
        for (const entry of await readdir(dir, { withFileTypes: true })) {
          if (entry.isDirectory()) await rmdir(join(dir, entry.name)).catch(() => undefined);
        }
        await rmdir(dir);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code !== 'ENOENT') removedAll = false;
      }
    }
    return removedAll;
  }

  /** The mounted hierarchies: the unified one on v2; on v1 one per controller (plus name=systemd and the empty v2 of hybrid machines). */
  async #hierarchies(): Promise<string[]> {
    return this.mode === 'v2' ? [this.fsRoot] : (await readdir(this.fsRoot)).map((h) => join(this.fsRoot, h));
  }

  async #enableControllers(dir: string): Promise<void> {
    const available = (await readText(join(dir, 'cgroup.controllers'))) ?? '';
    const wanted = ['cpu', 'memory', 'pids', 'io'].filter((c) => available.split(/\s+/).includes(c));
    if (wanted.length > 0) await writeFile(join(dir, 'cgroup.subtree_control'), wanted.map((c) => `+${c}`).join(' '));
  }
}

async function readText(path: string): Promise<string | null> {
  try {
    return await readFile(path, 'utf8');
  } catch {
    return null;
  }
}

const toNumber = (text: string | null): number | null => {
  if (text === null) return null;
  const n = Number(text.trim());
  return Number.isFinite(n) ? n : null;
};

/** The value of `key` in a "key value" per line file (cpu.stat, memory.events, memory.oom_control). */
const keyed = (text: string, key: string): number | null => {
  const line = text.split('\n').find((l) => l.startsWith(`${key} `));
  return line === undefined ? null : Number(line.slice(key.length + 1));
};
