/**
 * Which instance a kernel record belongs to: the record's cgroup id and kernel
 * time, looked up in the os driver's identity table (src/levels/os/identities.ts)
 * — exactly, at the moment it arrives. A record whose identity is unknown, or
 * was registered after the record was made, is not attributed to anyone: it is
 * counted here, and the interceptor reports the counts once a second at host
 * level (notify only). Nothing is parked to be matched later against whoever
 * holds a number by then.
 *
 * Also here: the kernel's clock (CLOCK_MONOTONIC ns) as wall-clock time for
 * events, and a record's path put together from the directory components the
 * kernel sent after it.
 */
import { posix } from 'node:path';
import type { FieldValue } from '../../../core/guard-event.js';
import type { CgroupScope } from '../cgroups.js';
import type { OsIdentity, Resolution } from '../identities.js';
import { WALK_COMPLETE } from './program.js';

/** What the resolver needs of the identity table. */
export interface IdentitySource {
  /** The driver's cgroup subtree, if it has one: the program watches only inside it. */
  readonly scope?: CgroupScope | null;
  resolve(cgroupId: string, at: bigint): Resolution;
  retire(cgroupId: string): void;
}

/** Records not attributed since the last report, by reason. */
export interface Unattributed {
  /** The last such record's cgroup id and process name, for whoever looks into it. */
  last?: { cgroupId: string; comm: string };
  /** No instance has (or had, within the grace after it exited) this cgroup id: another runtime's container, a nested cgroup. */
  unknown: number;
  /** The identity was registered after the record was made. */
  beforeRegistration: number;
}

export class Resolver {
  readonly #source: IdentitySource;
  #counts: Unattributed = { unknown: 0, beforeRegistration: 0 };
  /** Totals since start. */
  readonly totals: Unattributed = { unknown: 0, beforeRegistration: 0 };
  /** Wall-clock ms minus monotonic ms, measured now and then. */
  #epochOffsetMs = 0;

  constructor(source: IdentitySource) {
    this.#source = source;
    this.syncClock();
  }

  /** The instance start a record belongs to, or null (counted). */
  resolve(cgroupId: string | number, at: string | number, comm = ''): OsIdentity | null {
    const r = this.#source.resolve(String(cgroupId), kernelTime(at));
    if (r.ok) return r.identity;
    const key = r.reason === 'unknown' ? 'unknown' : 'beforeRegistration';
    this.#counts[key]++;
    this.#counts.last = { cgroupId: String(cgroupId), comm };
    this.totals[key]++;
    return null;
  }

  /** The instance start a cgroup is now, for the kernel's per-second counts of it (not counted when none). */
  peek(cgroupId: string): OsIdentity | null {
    const r = this.#source.resolve(cgroupId, process.hrtime.bigint());
    return r.ok ? r.identity : null;
  }

  /** Counts `n` records of an identity that resolved to none (e.g. over-budget counts of an unknown cgroup). */
  countUnknown(n: number): void {
    this.#counts.unknown += n;
    this.totals.unknown += n;
  }

  /** The kernel saw a pid namespace's init exit: if it is a known container's init, its identity retires. */
  exited(cgroupId: string | number, at: string | number, pid: number): void {
    const r = this.#source.resolve(String(cgroupId), kernelTime(at));
    if (r.ok && r.identity.initPid === pid) this.#source.retire(r.identity.cgroupId);
  }

  /** The counts since the last call, reset. */
  take(): Unattributed {
    const c = this.#counts;
    this.#counts = { unknown: 0, beforeRegistration: 0 };
    return c;
  }

  syncClock(): void {
    this.#epochOffsetMs = Date.now() - Number(process.hrtime.bigint() / 1000n) / 1000;
  }

  /** A kernel time (monotonic ns) as ms since the epoch. */
  wallTime(at: string | number): number {
    return Math.round(Number(at) / 1e6 + this.#epochOffsetMs);
  }
}

/** Kernel nanoseconds as printed by bpftrace (a JSON number: exact below 2^53 ns, 104 days of uptime; beyond, off by a few ns). */
const kernelTime = (at: string | number): bigint => BigInt(Math.trunc(Number(at)));

/**
 * A path as the container sees it: absolute ones normalised (`/tmp/../usr/bin/x`
 * is `/usr/bin/x`); relative ones joined to the directory whose components
 * (deepest first) the kernel sent. `?/` marks a directory the kernel could not
 * follow to the task's root (deeper than the walk, or a dirfd that is no directory).
 */
export function assemblePath(path: string, components: readonly string[] | null, walkEnd: number): string {
  if (path.startsWith('/')) return posix.normalize(path);
  if (components === null || walkEnd !== WALK_COMPLETE) return `?/${posix.normalize([...(components ?? [])].reverse().concat(path).join('/'))}`;
  return posix.normalize(`/${[...components].reverse().join('/')}/${path}`);
}

/** Fields every event of an instance carries: its labels, its generation. */
export function identityFields(identity: OsIdentity, labels: Record<string, FieldValue>): Record<string, FieldValue> {
  return { ...labels, 'instance.generation': identity.generation };
}
