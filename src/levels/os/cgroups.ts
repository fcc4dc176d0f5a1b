/**
 * Cgroups of the `os` level: the parent cgroup of each tenant, and the
 * instances' groups as runc makes them. The files of the controllers are the
 * core's (`core/cgroups.ts`); what lives where is this level's.
 *
 * Layout: `<root>/<tenant>/<instance>`. runc creates and removes the instance's
 * own cgroup from the spec's `cgroupsPath`; this module owns the tenant parents,
 * whose limits cap the sum of the tenant's real usage, whatever the instances
 * declared.
 */
import { mkdirSync, rmdirSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import {
  Cgroup, cgroupMode, hasIoWeight, hierarchies, unifiedCgroupId, unifiedHierarchy, type CgroupMode, type CgroupStats,
} from '../../core/cgroups.js';
import type { TenantLimits } from './allocations.js';

export type { CgroupStats } from '../../core/cgroups.js';

const CGROUP_FS = '/sys/fs/cgroup';
const MIB = 1024 * 1024;

/** v2 only when the unified hierarchy is mounted at the top and has controllers; hybrid machines are v1. */
export const detectCgroupMode = (root = CGROUP_FS): CgroupMode => cgroupMode(root);

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

export class Cgroups {
  constructor(readonly mode: CgroupMode, readonly root: string, private readonly fsRoot = CGROUP_FS) {}

  /** Whether the kernel weighs block I/O per cgroup (runc fails on a weight where it does not). */
  hasIoWeight(): boolean {
    return hasIoWeight(this.mode, this.fsRoot);
  }

  /**
   * The id of an instance's cgroup in the unified hierarchy, or null where
   * there is none. On hybrid machines runc places each container in its own
   * cgroup there too (`0::<cgroupsPath>` in /proc/<pid>/cgroup).
   */
  unifiedId(cgroupsPath: string): string | null {
    return unifiedCgroupId(cgroupsPath, this.mode, this.fsRoot);
  }

  /** Makes an instance's cgroup in the unified hierarchy (and its parents) ahead of runc, which adopts it. */
  makeUnified(cgroupsPath: string): void {
    const unified = unifiedHierarchy(this.mode, this.fsRoot);
    if (unified !== null) mkdirSync(join(unified, cgroupsPath), { recursive: true });
  }

  /** Removes an instance's unified cgroup if it is still there (empty: rmdir refuses otherwise). */
  removeUnified(cgroupsPath: string): void {
    const unified = unifiedHierarchy(this.mode, this.fsRoot);
    try {
      if (unified !== null) rmdirSync(join(unified, cgroupsPath));
    } catch { /* gone already (runc removed it), or still in use */ }
  }

  /**
   * Where this driver's instances live in the unified hierarchy: the id and
   * depth of its root cgroup (made here if missing, so the id holds while the
   * driver runs) and the depth of instance cgroups (root/tenant/instance).
   * Null without a unified hierarchy.
   */
  unifiedScope(): CgroupScope | null {
    const unified = unifiedHierarchy(this.mode, this.fsRoot);
    if (unified === null) return null;
    try {
      mkdirSync(join(unified, this.root), { recursive: true });
    } catch {
      return null;
    }
    const rootId = this.unifiedId(this.root);
    const rootLevel = this.root.split('/').filter(Boolean).length;
    return rootId === null ? null : { rootId, rootLevel, instanceLevel: rootLevel + 2 };
  }

  /** Creates the tenant's parent (and the root) where missing and writes its limits; no limits means unlimited. */
  async ensureTenant(tenantId: string, limits: TenantLimits | undefined): Promise<void> {
    this.#tenant(tenantId).create(
      { cpus: limits?.vcpus ?? null, memoryBytes: limits ? limits.memoryMiB * MIB : null, pids: limits?.pids ?? null },
      // runc makes the instances' groups below it: they need the controllers too.
      { delegate: true, extraControllers: ['io'] },
    );
  }

  /**
   * Sets the CFS CPU quota of one instance's own cgroup (`cgroupsPath` as runc
   * got it) to `vcpus` CPUs — the guard's throttle, and its undo with the
   * instance's declared vCPUs. Takes effect at once on a running container.
   */
  async setCpuLimit(cgroupsPath: string, vcpus: number): Promise<void> {
    await this.#group(cgroupsPath).setCpu(vcpus);
  }

  /** The instance's CPU quota in CPUs, or null when unlimited. */
  async cpuLimit(cgroupsPath: string): Promise<number | null> {
    return this.#group(cgroupsPath).cpuLimit();
  }

  /** Sets the memory limit of one instance's own cgroup to `memoryMiB`, with no swap on top (as at create); at once on a running container. */
  async setMemoryLimit(cgroupsPath: string, memoryMiB: number): Promise<void> {
    await this.#group(cgroupsPath).setMemory(memoryMiB * MIB);
  }

  /** The instance's memory limit in MiB (null when unlimited or unreadable). */
  async memoryLimit(cgroupsPath: string): Promise<number | null> {
    const bytes = await this.#group(cgroupsPath).memoryLimit();
    return bytes === null ? null : bytes / MIB;
  }

  /** Removes the tenant's parent in every hierarchy; returns false while instances still live in it. */
  async removeTenant(tenantId: string): Promise<boolean> {
    return this.#tenant(tenantId).removeEverywhere();
  }

  /** Removes every tenant parent that has no instance left, then the root if it is empty. */
  async removeAll(): Promise<boolean> {
    const tenants = new Set<string>();
    for (const hierarchy of hierarchies(this.mode, this.fsRoot)) {
      const entries = await readdir(join(hierarchy, this.root), { withFileTypes: true }).catch(() => []);
      for (const entry of entries) if (entry.isDirectory() && entry.name.startsWith('t-')) tenants.add(entry.name);
    }
    for (const tenant of tenants) await this.#group(join(this.root, tenant)).removeEverywhere();
    return this.#group(this.root).removeEverywhere();
  }

  /** Live figures of one instance's cgroup (null where a controller is missing). */
  async stats(cgroupsPath: string): Promise<CgroupStats> {
    return this.#group(cgroupsPath).stats();
  }

  #tenant(tenantId: string): Cgroup {
    return this.#group(join(this.root, tenantCgroupName(tenantId)));
  }

  #group(path: string): Cgroup {
    return new Cgroup(path, this.mode, this.fsRoot);
  }
}
