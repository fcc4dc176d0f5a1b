/**
 * Operator sessions: every exec and console session started through the API,
 * registered with the guard before anything of it runs, so the guard can tell
 * an operator's `strata exec web -- sh` from a shell the workload spawned.
 *
 * Kernel lineage, not names: an exec session's runner (a host process the
 * daemon spawns and holds before it execs the runtime) opens a new *audit
 * session* by writing its own `/proc/self/loginuid`. The kernel then gives it
 * a session id from a global counter and copies that id to every descendant
 * at fork — across exec, setns and into the container — and no process can
 * choose it or change it afterwards without CAP_AUDIT_CONTROL in the host's
 * user namespace (which no container has). That id is the session's *exec
 * id*: the runner reports it, the daemon binds it here (`bind`), and only then
 * releases the runner. The os interceptor reads the task's audit session id in
 * the kernel with every event (`curtask->sessionid`), so each event carries
 * the lineage it was born in, captured at event time; `origin()` maps it to
 * `proc.origin = api` (+ `session.*`) or `workload`. A process name (`prctl`
 * can rename anything) plays no part.
 *
 * Why the audit session rather than a bpf map filled by a marker syscall
 * (Tetragon's exec-id lineage): the kernel already keeps it, per task,
 * inherited at fork, so there is no probe on every fork and exit of the
 * machine, and a restart of bpftrace loses nothing (a map would be empty after
 * one, and every live operator session would look like workload). A tenant
 * process can open an audit session of its own (its loginuid is unset, so the
 * write needs no privilege), but it gets a fresh id that nobody bound; to
 * reach a bound id it would have to wrap the kernel's 32-bit counter, one
 * loginuid write per new process, four billion of them — each such write is
 * itself seen (`file.write` of `/proc/<pid>/loginuid`) and frozen by the rule
 * *Audit session opened in instance*, and `bind` refuses an id bound before.
 *
 * Console sessions (vm, emu: the daemon's end of the serial port) are
 * registered the same way but have no exec id: the guest is another kernel,
 * and nothing of its processes reaches the guard. They are recorded
 * (`session.open`), and that is all that applies.
 */
import { randomUUID } from 'node:crypto';
import type { ExecMark } from '../levels/driver.js';
import type { EventLevel, FieldValue, GuardEvent } from '../core/guard-event.js';
import type { Emit } from '../core/interceptor.js';

export type SessionKind = 'exec' | 'console';

/** Where a process comes from: a session started through the API, or the instance's own workload. */
export type Origin = 'api' | 'workload';

/** An exec session's mark in the kernel, reported by its runner before it is released. */
export type SessionMark = ExecMark;

export interface SessionRequest {
  kind: SessionKind;
  tenantId: string;
  instanceId: string;
  level: EventLevel;
  /** The API principal that opened it. */
  user: string;
  /** What it runs (exec). */
  argv?: readonly string[];
}

export interface SessionRecord extends SessionRequest {
  /** `ses_…`, unique. */
  id: string;
  openedAt: number;
  closedAt: number | null;
  execId: number | null;
  runnerPid: number | null;
}

/** The handle the API keeps for one session. */
export interface OperatorSession {
  readonly id: string;
  /** Binds the kernel mark; throws when the exec id is already bound (the runner must then not be released). */
  bind(mark: SessionMark): void;
  /** It runs (the driver's exec or console answered): recorded as a `session.open` event. */
  started(): void;
  /** The session ended (the client left, the process exited); its exec id stays bound for what it left running. */
  close(): void;
}

/** Audit session id of a task that never opened one (`AUDIT_SID_UNSET`). */
export const UNSET_SESSION = 0xffff_ffff;

export interface OperatorSessionsOptions {
  /** Ended sessions kept for their lineage (oldest forgotten first). Default 10,000. */
  keepEnded?: number;
}

export class OperatorSessions {
  readonly #emit: Emit;
  readonly #keepEnded: number;
  readonly #byId = new Map<string, SessionRecord>();
  readonly #byExecId = new Map<number, SessionRecord>();
  /** Ended sessions, oldest first. */
  readonly #ended: string[] = [];
  /** The highest exec id bound so far: the kernel's counter only grows, unless it wrapped. */
  #highest = 0;

  constructor(emit: Emit, opts: OperatorSessionsOptions = {}) {
    this.#emit = emit;
    this.#keepEnded = opts.keepEnded ?? 10_000;
  }

  /** Registers a session before anything of it runs. */
  open(req: SessionRequest): OperatorSession {
    const record: SessionRecord = { ...req, id: `ses_${randomUUID()}`, openedAt: Date.now(), closedAt: null, execId: null, runnerPid: null };
    this.#byId.set(record.id, record);
    return {
      id: record.id,
      bind: (mark) => this.#bind(record, mark),
      started: () => this.#record(record, 'session.open'),
      close: () => this.#close(record),
    };
  }

  /** The session an exec id was bound to, if any. */
  byExecId(execId: number): SessionRecord | undefined {
    return this.#byExecId.get(execId);
  }

  /** Open sessions (and, with `ended`, the ended ones still kept). */
  list(opts: { ended?: boolean } = {}): SessionRecord[] {
    return [...this.#byId.values()].filter((r) => opts.ended || r.closedAt === null).map((r) => ({ ...r }));
  }

  /**
   * The origin fields of an event of `instanceId` whose task carries the audit
   * session `execId`: `api` with the session's id, kind and user when that id
   * was bound to a session of this very instance; `workload` otherwise.
   */
  origin(execId: number, instanceId: string | null): Record<string, FieldValue> {
    const s = execId === UNSET_SESSION ? undefined : this.#byExecId.get(execId);
    if (!s || s.instanceId !== instanceId) return { 'proc.origin': 'workload' };
    return { 'proc.origin': 'api', 'session.id': s.id, 'session.kind': s.kind, 'session.user': s.user, 'session.exec_id': execId };
  }

  #bind(record: SessionRecord, mark: SessionMark): void {
    if (!Number.isSafeInteger(mark.execId) || mark.execId <= 0 || mark.execId === UNSET_SESSION) throw new RangeError(`not an audit session id: ${mark.execId}`);
    const holder = this.#byExecId.get(mark.execId);
    if (holder && holder !== record) throw new RangeError(`audit session ${mark.execId} is already bound to ${holder.id}`);
    record.execId = mark.execId;
    record.runnerPid = mark.runnerPid;
    this.#byExecId.set(mark.execId, record);
    // Ids come from one global counter that only grows: one lower than an earlier one means it wrapped, so ids
    // handed out long ago (to a tenant's processes too) come round again. Said loudly; the bindings stand.
    if (mark.execId <= this.#highest) {
      this.#emit({
        time: Date.now(), tenantId: null, instanceId: null, level: 'host', kind: 'guard.sessions', priority: 'critical',
        fields: { 'guard.state': 'wrapped', 'session.exec_id': mark.execId, 'session.highest_exec_id': this.#highest },
      });
    }
    this.#highest = Math.max(this.#highest, mark.execId);
  }

  #close(record: SessionRecord): void {
    if (record.closedAt !== null) return;
    record.closedAt = Date.now();
    this.#ended.push(record.id);
    while (this.#ended.length > this.#keepEnded) {
      const old = this.#byId.get(this.#ended.shift()!);
      if (!old) continue;
      this.#byId.delete(old.id);
      if (old.execId !== null && this.#byExecId.get(old.execId) === old) this.#byExecId.delete(old.execId);
    }
  }

  #record(r: SessionRecord, kind: string): void {
    const fields: Record<string, FieldValue> = {
      'proc.origin': 'api', 'session.id': r.id, 'session.kind': r.kind, 'session.user': r.user,
      ...(r.argv ? { 'proc.cmdline': r.argv.join(' ') } : {}),
      ...(r.execId !== null ? { 'session.exec_id': r.execId, 'session.runner_pid': r.runnerPid! } : {}),
    };
    const event: GuardEvent = { time: Date.now(), tenantId: r.tenantId, instanceId: r.instanceId, level: r.level, kind, priority: 'info', fields };
    this.#emit(event);
  }
}
