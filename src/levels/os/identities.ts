/**
 * Which os instance a kernel record came from, by an identity the kernel never
 * hands out twice: the id of the container's cgroup v2 (kernfs node ids are
 * 64-bit and only grow; runc makes a fresh cgroup for every start and removes
 * it at delete). The os driver registers each container here between `runc
 * create` and `runc start`, so the workload's first syscall already resolves;
 * the guard's os interceptor reads it and retires an entry when the kernel
 * reports the container's init exiting.
 *
 * Nothing here is ever looked up from a pid or a namespace number, and a miss
 * is a miss: `resolve` answers why it could not attribute a record instead of
 * guessing, and the caller counts it.
 *
 * Times are CLOCK_MONOTONIC nanoseconds (bpftrace's `nsecs`, Node's
 * `process.hrtime.bigint()`), so a record's kernel time and a registration
 * compare directly.
 */

import type { CgroupScope } from './cgroups.js';

/** One container start of an instance. */
export interface OsIdentity {
  /** The container's cgroup v2 id (decimal), as the kernel reports it per task. */
  cgroupId: string;
  tenantId: string;
  instanceId: string;
  /** The start this is: the cgroup id, unique per start (see the module comment). Events carry it; the actuator compares it. */
  generation: string;
  /** Host pid of the container's init (the pid namespace's reaper). */
  initPid: number;
  /** Host uid of container uid 0 (the user namespace's mapping), null without one. */
  uidBase: number | null;
  /** Its CPU limit in cores. */
  vcpus: number;
  /** Monotonic ns when it was registered; records older than this are not its. */
  since: bigint;
}

export type Resolution =
  | { ok: true; identity: OsIdentity }
  | { ok: false; reason: 'unknown' | 'before-registration' };

/** How long a retired entry still resolves records that were already in flight (other CPUs' buffers). */
export const RETIRE_GRACE_MS = 30_000;

export const monotonicNs = (): bigint => process.hrtime.bigint();

export class IdentityTable {
  /** The driver's subtree of cgroups, set at provision: the interceptor watches only tasks inside it. */
  scope: CgroupScope | null = null;
  readonly #byCgroup = new Map<string, OsIdentity>();
  /** instance id → its current (latest) start. */
  readonly #byInstance = new Map<string, OsIdentity>();
  /** cgroup id → when (Date.now()) its entry stops resolving. */
  readonly #retired = new Map<string, number>();

  /** Registers a start; an earlier start of the same instance is retired (its records in flight still resolve for a while). */
  register(identity: OsIdentity): void {
    this.#purge();
    const previous = this.#byInstance.get(identity.instanceId);
    if (previous && previous.cgroupId !== identity.cgroupId) this.retire(previous.cgroupId);
    this.#byCgroup.set(identity.cgroupId, identity);
    this.#byInstance.set(identity.instanceId, identity);
    this.#retired.delete(identity.cgroupId);
  }

  /**
   * The container's init exited (the kernel's record), or the driver removed
   * it: the entry keeps resolving for RETIRE_GRACE_MS, then is forgotten. Its
   * id is never reused, so the grace cannot hand records to anyone else.
   */
  retire(cgroupId: string): void {
    const identity = this.#byCgroup.get(cgroupId);
    if (!identity || this.#retired.has(cgroupId)) return;
    this.#retired.set(cgroupId, Date.now() + RETIRE_GRACE_MS);
    if (this.#byInstance.get(identity.instanceId) === identity) this.#byInstance.delete(identity.instanceId);
  }

  /** The start a record of `cgroupId` made at kernel time `at` belongs to, or why none. */
  resolve(cgroupId: string, at: bigint): Resolution {
    const identity = this.#byCgroup.get(cgroupId);
    if (!identity || (this.#retired.get(cgroupId) ?? Infinity) < Date.now()) return { ok: false, reason: 'unknown' };
    if (at < identity.since) return { ok: false, reason: 'before-registration' };
    return { ok: true, identity };
  }

  /** The instance's current start, if it runs. */
  current(instanceId: string): OsIdentity | undefined {
    return this.#byInstance.get(instanceId);
  }

  get size(): number {
    return this.#byCgroup.size;
  }

  #purge(): void {
    const now = Date.now();
    for (const [cgroupId, until] of this.#retired) {
      if (until > now) continue;
      this.#retired.delete(cgroupId);
      this.#byCgroup.delete(cgroupId);
    }
  }
}

