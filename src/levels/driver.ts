/**
 * `LevelDriver` is the one interface every isolation level implements (env, os, vm,
 * emu). The control plane never branches on the level: it asks the driver.
 *
 * A driver is a module with a lifecycle, as Caddy modules are:
 * `provision` (probe the machine, prepare state) → `start`-able use → `cleanup`
 * (which copes with half-finished provisioning). Lifecycle calls are made only in
 * states the shared state machine (`lifecycle.ts`) allows; a driver may still
 * refuse with `STRATA_ERR_UNSUPPORTED` for operations its level lacks.
 */
import type { Duplex, Readable, Writable } from 'node:stream';
import type { InstanceSpec, Quota } from '../store/types.js';
import type { Level } from './ids.js';
import type { InstanceInfo } from '../core/instance-facts.js';

export type { InstanceLimits, InstanceSpec } from '../store/types.js';

/** What a driver reports about an instance it runs (or finds running). */
export interface ObservedInstance {
  id: string;
  state: 'running' | 'stopped' | 'paused' | 'failed';
  /** Its typed facts (address, process, console …) and details for people (accelerator, stats). */
  info?: InstanceInfo;
}

export interface SnapshotResult {
  /** Bytes stored for this snapshot, for the tenant's disk accounting. */
  sizeBytes: number;
  /** Content address (sha256) of the snapshot's manifest in the snapshot store. */
  digest: string;
}

/**
 * The operations a level may lack. A driver lists those it has in `supports`;
 * for the optional methods (clone, move, logs, exec, console) it has the method
 * exactly when it lists the operation (the conformance suite checks both ways).
 */
export type DriverOperation = 'pause' | 'resume' | 'snapshot' | 'restore' | 'clone' | 'move' | 'logs' | 'exec' | 'console';

/** A process started inside an instance by `exec`. */
export interface ExecSession {
  /** Closed by the caller to send EOF. */
  stdin: Writable;
  /** With a TTY, stdout carries the terminal and stderr is null. */
  stdout: Readable;
  stderr: Readable | null;
  /** Resize the TTY; a no-op without one. */
  resize(cols: number, rows: number): void;
  /** Ends the process (SIGKILL) if it is still running. */
  kill(): void;
  /** Resolves with the exit code (128 + signal when killed). */
  exit: Promise<number>;
}

export interface ExecOptions {
  tty: boolean;
  /** Run as this user ("uid", "uid:gid", a name from the image); default: the instance's own process user, as `docker exec`. */
  user?: string;
  env?: readonly string[];
  cwd?: string;
  cols?: number;
  rows?: number;
  /**
   * Called with the session's mark in the kernel once its runner holds it and
   * before the runner may go on to start anything in the instance; a throw
   * ends the session there. Drivers whose sessions run processes on this
   * host's kernel (os) call it; see `guard/sessions.ts`.
   */
  mark?: (mark: ExecMark) => void | Promise<void>;
}

/** An exec session's lineage in the kernel, as its runner reported it before it was released. */
export interface ExecMark {
  /** The runner's audit session id, inherited by every process the session starts. */
  execId: number;
  /** The runner's host pid. */
  runnerPid: number;
}

export interface LogOptions {
  /** Keep the stream open and send new output as it is written. */
  follow: boolean;
  /** Only the last N lines of what is already stored. */
  tail?: number;
}

/** An image a driver can create instances from (os: a root filesystem; vm: a kernel …). */
export interface ImageInfo {
  name: string;
  level: Level;
  /** Where it came from: `builtin:…`, `oci:sha256:…`. */
  source: string;
  builtin: boolean;
  /** sha256 (hex) naming its exact content. */
  digest: string;
  sizeBytes: number;
  createdAt: string;
}

/** How a copy into or out of an instance runs (`strata cp`). */
export interface CopyOptions {
  /** Bytes of file content the archive holds, for the disk check before anything is written (copies in). */
  bytes: number;
  /** As `ExecOptions.mark`, for drivers that copy by running a process inside the instance. */
  mark?: ExecOptions['mark'];
}

/** How a changed field of an instance took effect: on the running instance at once, or from its next start. */
export type Applied = 'live' | 'next-restart';

/**
 * What an instance uses, as far as its level can tell; null where it cannot
 * (or the instance does not run). Counters (CPU time, network bytes) count
 * from the instance's current start.
 */
export interface InstanceUsage {
  /** CPU time its processes consumed, in seconds (cumulative). */
  cpuSeconds: number | null;
  memoryBytes: number | null;
  /** The memory it may use before the level refuses more (cgroup limit, heap limit). */
  memoryLimitBytes: number | null;
  /** Bytes the instance received and sent on its network interface. */
  netRxBytes: number | null;
  netTxBytes: number | null;
  /** Bytes its own storage takes on the host (what it wrote, its disk image), beyond the shared image. */
  diskBytes: number | null;
  /** Processes (tasks) in it. */
  pids: number | null;
}

export interface DriverAvailability {
  available: boolean;
  /** Why it is or is not available, e.g. "KVM probe failed: using TCG". */
  reason: string;
}

export interface LevelDriver {
  /** Registry id, unique: e.g. "os.runc", "vm.qemu". */
  readonly id: string;
  readonly level: Level;
  readonly supports: ReadonlySet<DriverOperation>;

  /** Probe the machine and prepare; never throws for "not available here". */
  provision(): Promise<DriverAvailability>;
  create(spec: InstanceSpec): Promise<void>;
  start(id: string): Promise<void>;
  stop(id: string, opts: { graceMs: number }): Promise<void>;
  pause(id: string): Promise<void>;
  resume(id: string): Promise<void>;
  snapshot(id: string, snapshotId: string): Promise<SnapshotResult>;
  restore(id: string, snapshotId: string): Promise<void>;
  /** Remove everything the instance holds. Idempotent: deleting what is gone succeeds. */
  delete(id: string): Promise<void>;
  /** null when the driver holds nothing for this id. */
  inspect(id: string): Promise<ObservedInstance | null>;
  /** Everything this driver holds on the machine, including orphans from a crash. */
  list(): Promise<ObservedInstance[]>;
  /** Release what provision took. Safe after a failed or partial provision. */
  cleanup(): Promise<void>;
  /**
   * Optional: enforce a tenant's quota on what its instances really use (e.g. a
   * parent cgroup over all of them), not only on what they declare.
   */
  setTenantQuota?(tenantId: string, quota: Quota): Promise<void>;
  /**
   * Optional: replace the instance's code without dropping requests in flight
   * (the env level swaps isolates). `source` as at create, or inline `code`.
   */
  redeploy?(id: string, next: { source?: string; code?: string }): Promise<void>;
  /**
   * Optional: drop what the driver holds for a deleted tenant beyond its
   * instances (the env level's KV file, the os level's snapshot store and
   * parent cgroup), or move it into `quarantine.dir` (under names starting with
   * `quarantine.prefix`). Called once the tenant has no instance left.
   */
  purgeTenant?(tenantId: string, quarantine: { dir: string; prefix: string } | null): Promise<void>;
  /** Optional: drop what a snapshot holds, for drivers whose snapshots outlive calls to `delete`. */
  deleteSnapshot?(tenantId: string, snapshotId: string): Promise<unknown>;
  /**
   * Optional (advertised by 'clone' in `supports`): create a new, stopped instance
   * `spec` whose state is snapshot `from.snapshotId` of instance `from.instanceId`
   * (same tenant), with a fresh identity (address, MAC, hostname, machine id …).
   */
  clone?(spec: InstanceSpec, from: { instanceId: string; snapshotId: string }): Promise<void>;
  /**
   * Optional (advertised by 'move' in `supports`): the receiving side of a live
   * move from another daemon's driver of the same level on this machine. Creates
   * `spec` here, waits for the state on a Unix socket and calls `send(socket)`,
   * which must make the sender `moveOut` into it and resolve once it has; the
   * instance then runs here. On any failure it removes what it made and throws.
   */
  moveIn?(spec: InstanceSpec, send: (socket: string) => Promise<void>): Promise<void>;
  /**
   * Optional (with `moveIn`): the sending side. Streams the running `id` into a
   * receiver's `socket`; once the state is across, `confirm()` must resolve when
   * the receiver runs it. Then `id` is deleted here. A failure before that —
   * `confirm` rejecting included — leaves `id` running here, and throws.
   */
  moveOut?(id: string, socket: string, confirm?: () => Promise<void>): Promise<void>;
  /**
   * Optional: a new spec for an instance the driver holds — other limits
   * and/or level config; `changed` names the fields that differ, as
   * `limits.<key>` and `config.<key>`. The driver applies to the running
   * instance what its level can change live, keeps the whole spec for the
   * next start, and answers how each changed field took effect (every field of
   * a stopped instance: `next-restart`). Throws STRATA_ERR_VALIDATION naming a
   * field it cannot change at all; then nothing changed.
   */
  reconfigure?(spec: InstanceSpec, changed: readonly string[]): Promise<Record<string, Applied>>;
  /** Optional: what the instance uses now (CPU, memory, network, disk); null when the driver holds nothing for `id`. */
  stats?(id: string): Promise<InstanceUsage | null>;
  /** Optional (advertised by 'logs'): the instance's captured output (stdout/stderr, or the serial log). Ends unless following. */
  logs?(id: string, opts: LogOptions): Promise<Readable>;
  /** Optional (advertised by 'exec'): run a command inside a running instance. */
  exec?(id: string, argv: readonly string[], opts: ExecOptions): Promise<ExecSession>;
  /** Optional (advertised by 'console'): the instance's console (serial port) as a byte stream, read and write. */
  console?(id: string): Promise<Duplex>;
  /**
   * Optional (`strata cp`): unpack `archive` (an uncompressed tar, already
   * checked: relative names, no escaping links, no special files, no setuid)
   * into directory `dir` (absolute, clean) of the instance, creating `dir`,
   * so that no path in the instance — a symlink its tenant planted included
   * — can make the write land outside it. Refused with
   * STRATA_ERR_QUOTA_EXCEEDED before anything is written when it would not fit.
   */
  copyIn?(id: string, dir: string, archive: Buffer, opts: CopyOptions): Promise<void>;
  /** Optional (with `copyIn`): `path` of the instance as a tar archive whose top member is its last component; untrusted output. */
  copyOut?(id: string, path: string, opts: CopyOptions & { maxBytes: number }): Promise<Buffer>;
  /** Optional: the images this driver creates instances from. */
  listImages?(): Promise<ImageInfo[]>;
  /** Optional: import an image from a file or directory on this machine (os: an OCI layout or tarball) as `name`. */
  importImage?(path: string, name: string, progress?: (fraction: number) => void): Promise<ImageInfo>;
}
