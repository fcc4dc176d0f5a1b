/**
 * The os interceptor: syscall events of tenant containers from eBPF
 * tracepoints, through bpftrace (Debian's).
 *
 * - bpf-program.ts: the program. Each record carries, from the kernel at
 *   event time, the task's cgroup id (its identity, never reused), the kernel
 *   time, the process's name and its parent, and a relative path's directory.
 * - bpf-process.ts: bpftrace as a supervised child (restarts with back-off;
 *   every death is itself an event, `guard.interceptor`, critical).
 * - bpf-resolution.ts: record → instance start, through the os driver's
 *   identity table, at once; what does not resolve is counted, never guessed.
 * - here: records → the one event schema. Every event names its instance and
 *   that instance's generation (`instance.generation`), which the actuator
 *   checks before it acts. Unattributed records, records the kernel lost and
 *   records a cgroup sent past its per-second budget are reported as
 *   `guard.unattributed` (host, notify), `guard.lost` and `guard.flood`:
 *   nothing is lost silently.
 *
 * Event kinds and fields: see docs/guard.md ("The os interceptor").
 */
import { cpus } from 'node:os';
import { posix } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { OsIdentity } from '../identities.js';
import { DENIED_SYSCALLS } from '../seccomp.js';
import type { Store } from '../../../store/store.js';
import type { FieldValue, GuardEvent, Priority } from '../../../core/guard-event.js';
import type { Emit, Interceptor } from '../../../core/interceptor.js';
import { BpftraceProcess, ensureTracefs, hasTracepoint, type Row } from './process.js';
import { DEFAULT_BUDGET, HEAD, osProgram, type BpfProgramOptions } from './program.js';
import { assemblePath, identityFields, Resolver, type IdentitySource } from './resolution.js';
import { syscallName } from './syscalls-x86_64.js';

export { bpfAvailable, ensureTracefs } from './process.js';

/**
 * The origin fields of an event whose task carries the audit session `auditSessionId`
 * in instance `instanceId`: `proc.origin` (`api`, `workload`) and the session's fields
 * (the guard's operator sessions, `guard/sessions.ts`).
 */
export type SessionOrigin = (auditSessionId: number, instanceId: string) => Record<string, FieldValue>;

export interface BpfInterceptorOptions extends BpfProgramOptions {
  /** cgroup id → instance start: the os driver's identity table. */
  identities: IdentitySource;
  /** Fields added to each event of an instance, e.g. `{ 'instance.role': 'web' }`. */
  labels?: (identity: OsIdentity) => Record<string, FieldValue>;
  /** Default `bpftrace` on PATH. */
  bpftrace?: string;
  /**
   * The operator sessions: each record's audit session id (read in the kernel at
   * event time) maps to `proc.origin` and the session's fields
   * (`OperatorSessions.origin`). Without it every event is `workload`.
   */
  sessions?: { origin: SessionOrigin };
  /** Path prefixes whose writes are reported (as the container sees them). */
  watchedPaths?: readonly string[];
  /** Back-off of restarts: first delay and ceiling (ms). Default 500 / 30,000. */
  restartMs?: { initial: number; max: number };
  /** How long a start may take to attach its probes. Default 60 s. */
  attachTimeoutMs?: number;
  /** Notified of lifecycle facts (start, death, restart) for the daemon's log. */
  log?: (message: string, details?: Record<string, unknown>) => void;
}

/**
 * Watched by default: binaries, libraries and config, app code, the drop zones a
 * dropper uses, and the kernel's interfaces (/proc/sys, /proc/<pid>/exe, /sys).
 */
export const DEFAULT_WATCHED_PATHS = ['/bin/', '/sbin/', '/usr/', '/lib/', '/lib64/', '/etc/', '/var/www/', '/app/', '/srv/', '/opt/', '/tmp/', '/dev/shm/', '/proc/', '/sys/'] as const;

const O_CREAT = 0x40;
const O_TRUNC = 0x200;
const SECCOMP_DENIED = new Set<string>(DENIED_SYSCALLS);
const MOUNT_SYSCALLS = new Set(['mount', 'fsopen', 'fsmount', 'move_mount', 'open_tree', 'fspick', 'fsconfig', 'mount_setattr', 'umount2', 'pivot_root', 'chroot']);
/** Tags of records whose path may be followed by its directory's components. */
const PATH_TAGS = new Set(['exec', 'open', 'rename', 'unlink']);

export interface BpfStats {
  /** bpftrace processes started (1 + restarts). */
  starts: number;
  /** Records parsed. */
  records: number;
  /** Events emitted. */
  emitted: number;
  /** Records attributed to no instance: unknown identity, or registered after the record. */
  unattributed: number;
  /** Records the kernel lost (perf buffer full). */
  lost: number;
  /** Records over a cgroup's per-second budget: counted, not sent. */
  overBudget: number;
}

/** A record waiting for what follows it in the stream: its directory's components, an exec's argv. */
interface Pending {
  row: Row;
  identity: OsIdentity | null;
  components: string[] | null;
  walkEnd: number;
  /** An exec's arguments so far (`a` records), until the last. */
  argv: string[];
  cmdline: string | undefined;
}

export class BpfInterceptor implements Interceptor {
  readonly id = 'bpf:os';
  readonly #opts: BpfInterceptorOptions;
  readonly #watched: readonly string[];
  readonly #resolver: Resolver;
  readonly #process: BpftraceProcess;
  #emit: Emit | undefined;
  /** Called at the next tick (the end of a second's report). */
  #onTick: (() => void)[] = [];
  #pending: Pending | undefined;
  /** cgroup id → records over its budget in the second being reported. */
  readonly #suppressed = new Map<string, number>();
  /** This second's CPU samples (`id,pid,comm` → n) and voluntary switches (`id,pid` → n), and the last second's switches. */
  #cpu: Record<string, number> = {};
  #nvcsw: Record<string, number> = {};
  #lastNvcsw = new Map<string, number>();
  readonly #stats = { records: 0, emitted: 0, lost: 0, overBudget: 0 };

  constructor(opts: BpfInterceptorOptions) {
    this.#opts = opts;
    this.#watched = opts.watchedPaths ?? DEFAULT_WATCHED_PATHS;
    this.#resolver = new Resolver(opts.identities);
    this.#process = new BpftraceProcess({
      program: () => osProgram({ ...opts, scope: opts.scope ?? opts.identities.scope ?? null, has: opts.has ?? hasTracepoint }),
      output: {
        value: (row) => this.#record(row),
        map: (data) => this.#map(data),
        lost: (n) => {
          this.#stats.lost += n;
          this.#emitHost('guard.lost', 'critical', { 'guard.interceptor': this.id, 'guard.lost': n });
        },
      },
      ...(opts.bpftrace ? { bpftrace: opts.bpftrace } : {}),
      ...(opts.restartMs ? { restartMs: opts.restartMs } : {}),
      ...(opts.attachTimeoutMs ? { attachTimeoutMs: opts.attachTimeoutMs } : {}),
      ...(opts.log ? { log: opts.log } : {}),
      died: ({ exit, delayMs }) => {
        this.#flushPending();
        this.#emitHost('guard.interceptor', 'critical', { 'guard.interceptor': this.id, 'guard.state': 'died', 'guard.exit': exit, 'guard.restart_ms': delayMs });
      },
      restarted: () => this.#emitHost('guard.interceptor', 'notice', { 'guard.interceptor': this.id, 'guard.state': 'restarted' }),
    });
  }

  stats(): BpfStats {
    const u = this.#resolver.totals;
    return { starts: this.#process.starts, unattributed: u.unknown + u.beforeRegistration, ...this.#stats };
  }

  /** Host pid of the running bpftrace (tests: it must be invisible from inside a container). */
  get pid(): number | undefined {
    return this.#process.pid;
  }

  async start(emit: Emit): Promise<void> {
    this.#emit = emit;
    ensureTracefs();
    await this.#process.start();
  }

  async stop(): Promise<void> {
    // The counts of the second under way are reported at its tick; bpftrace's own print of them as it
    // exits comes too late (detaching its probes outlasts the grace before SIGKILL on a busy machine).
    if (this.#process.alive) await Promise.race([new Promise<void>((resolve) => this.#onTick.push(resolve)), sleep(1500, undefined, { ref: false })]);
    this.#onTick = [];
    await this.#process.stop();
    this.#endOfSecond();
    this.#emit = undefined;
  }

  #record(row: Row): void {
    this.#stats.records++;
    const tag = row[0];
    const pending = this.#pending;
    if (tag === 'd') {
      pending?.components?.push(String(row[1]));
      return;
    }
    if (tag === 'e') {
      if (!pending) return;
      pending.walkEnd = Number(row[1]);
      if (pending.row[0] !== 'exec') this.#flushPending(); // an exec waits for its argv
      return;
    }
    if (tag === 'a') {
      if (pending?.row[0] !== 'exec') return;
      pending.argv.push(String(row[1]));
      if (Number(row[2]) === 1) {
        pending.cmdline = pending.argv.join(' ');
        this.#flushPending();
      }
      return;
    }
    this.#flushPending(); // a record ends whatever came before it, complete or not (a lost record)
    if (tag === 'tick') {
      this.#endOfSecond();
      for (const resolve of this.#onTick.splice(0)) resolve();
      return;
    }
    if (tag === 'exit') {
      this.#resolver.exited(row[1]!, row[2]!, Number(row[3]));
      return;
    }
    const identity = this.#resolver.resolve(row[HEAD.id]!, row[HEAD.time]!, String(row[HEAD.comm]));
    const rel = PATH_TAGS.has(String(tag)) && Number(row[HEAD.rest]) === 1;
    this.#pending = { row, identity, components: rel ? [] : null, walkEnd: 0, argv: [], cmdline: undefined };
    if (tag !== 'exec' && !rel) this.#flushPending();
  }

  #flushPending(): void {
    const p = this.#pending;
    this.#pending = undefined;
    if (p?.identity) this.#toEvent(p, p.identity);
  }

  /** One record → one event. Rows: [tag, id, time, pid, uid, comm, ppid, pcomm, …rest]. */
  #toEvent(p: Pending, r: OsIdentity): void {
    const row = p.row;
    const tag = row[0];
    const pid = Number(row[HEAD.pid]);
    const uid = Number(row[HEAD.uid]);
    const fields: Record<string, FieldValue> = {
      ...identityFields(r, this.#opts.labels?.(r) ?? {}), 'proc.name': String(row[HEAD.comm]), 'proc.pid': pid,
      'proc.ppid': Number(row[HEAD.ppid]), 'proc.pname': String(row[HEAD.pcomm]),
      ...(this.#opts.sessions?.origin(Number(row[HEAD.session]), r.instanceId) ?? { 'proc.origin': 'workload' }),
    };
    if (r.uidBase !== null && uid >= r.uidBase && uid - r.uidBase < 2 ** 32) fields['user.uid'] = uid - r.uidBase;
    const at = this.#resolver.wallTime(row[HEAD.time]!);
    const ev = (kind: string, priority: Priority = 'notice'): GuardEvent => ({ time: at, tenantId: r.tenantId, instanceId: r.instanceId, level: 'os', kind, priority, fields });
    const rest = row.slice(HEAD.rest);
    switch (tag) {
      case 'exec': {
        const exe = assemblePath(String(rest[2]), p.components, p.walkEnd);
        const cmdline = p.cmdline ?? p.argv.join(' '); // its last argument lost: what came
        fields['proc.exe'] = exe;
        // busybox re-executes itself through /proc/self/exe: the applet's name is argv[0].
        fields['proc.name'] = posix.basename(exe === '/proc/self/exe' && cmdline ? cmdline.split(' ')[0]! : exe);
        fields['proc.cmdline'] = cmdline;
        fields['proc.entrypoint'] = pid === r.initPid;
        this.#send(ev('process.exec'));
        return;
      }
      case 'open': case 'rename': case 'unlink': {
        const full = assemblePath(String(rest[2]), p.components, p.walkEnd);
        if (!full.startsWith('?/') && !this.#watched.some((w) => full.startsWith(w))) return;
        const flags = Number(rest[1]);
        fields['file.path'] = full;
        fields['file.op'] = tag === 'open' ? (flags & O_CREAT ? 'create' : flags & O_TRUNC ? 'truncate' : 'write') : tag;
        this.#send(ev('file.write'));
        return;
      }
      case 'mount':
        fields['mount.target'] = String(rest[0]);
        fields['mount.fstype'] = String(rest[1]);
        this.#send(ev('fs.mount', 'error'));
        return;
      case 'ptrace':
        fields['ptrace.request'] = Number(rest[0]);
        fields['ptrace.pid'] = Number(rest[1]);
        this.#send(ev('process.ptrace', 'error'));
        return;
      case 'module':
        fields['module.syscall'] = String(rest[0]);
        this.#send(ev('kernel.module', 'critical'));
        return;
      case 'connect': {
        fields['net.direction'] = 'out';
        fields['net.family'] = Number(rest[0]) === 10 ? 'inet6' : 'inet';
        fields['net.dport'] = Number(rest[1]);
        fields['net.dip'] = String(rest[2]);
        this.#send(ev('net.connect'));
        return;
      }
      case 'socket':
        fields['net.family'] = Number(rest[0]) === 17 ? 'packet' : Number(rest[0]) === 10 ? 'inet6' : 'inet';
        fields['net.type'] = (Number(rest[1]) & 0xf) === 3 ? 'raw' : String(Number(rest[1]) & 0xf);
        this.#send(ev('net.socket', 'warning'));
        return;
      case 'priv': {
        fields['priv.syscall'] = String(rest[0]);
        const target = Number(rest[1]);
        if (target >= 0 && target < 2 ** 32 - 1) fields['priv.uid'] = target;
        this.#send(ev('process.privilege'));
        return;
      }
      case 'denied': {
        const name = syscallName(Number(rest[0]));
        // So a burst of one denial aggregates in the pool.
        delete fields['proc.pid'];
        delete fields['proc.ppid'];
        const errno = -Number(rest[1]);
        fields['syscall.name'] = name;
        fields['syscall.errno'] = errno;
        fields['syscall.seccomp'] = errno === 1 && SECCOMP_DENIED.has(name);
        fields['syscall.class'] = MOUNT_SYSCALLS.has(name) ? 'mount' : name === 'ptrace' || name.startsWith('process_vm_') ? 'ptrace'
          : name.endsWith('_module') ? 'module' : 'other';
        this.#send(ev('syscall.denied', 'warning'));
        return;
      }
      default:
    }
  }

  /** The once-a-second aggregates, all keyed by cgroup id: forks, CPU samples, records over budget. */
  #map(data: Record<string, Record<string, number>>): void {
    for (const [name, entries] of Object.entries(data)) {
      if (name === '@forks') {
        for (const [id, n] of Object.entries(entries)) this.#aggregate(id, 'process.spawn', { 'proc.forks': n });
      } else if (name === '@budget' || name === '@fbudget' || name === '@nbudget') {
        // The second's count of budgeted hits per cgroup: what exceeds the budget was only counted.
        const budget = this.#opts.budgetPerSecond ?? DEFAULT_BUDGET;
        for (const [id, n] of Object.entries(entries)) {
          if (n <= budget) continue;
          this.#stats.overBudget += n - budget;
          this.#suppressed.set(id, (this.#suppressed.get(id) ?? 0) + n - budget);
        }
      } else if (name === '@cpu') this.#cpu = entries;
      else if (name === '@nvcsw') this.#nvcsw = entries;
    }
  }

  /** At each tick (and at stop): the second's CPU and flood reports, and what could not be attributed. */
  #endOfSecond(): void {
    this.#flushPending();
    this.#reportCpu();
    for (const [id, n] of this.#suppressed) {
      if (!this.#aggregate(id, 'guard.flood', { 'guard.suppressed': n }, 'warning')) this.#resolver.countUnknown(n);
    }
    this.#suppressed.clear();
    const { unknown, beforeRegistration, last } = this.#resolver.take();
    if (unknown + beforeRegistration > 0) {
      this.#emitHost('guard.unattributed', 'notice', {
        'guard.interceptor': this.id, 'guard.unattributed': unknown + beforeRegistration, 'guard.unknown': unknown, 'guard.before_registration': beforeRegistration,
        ...(last ? { 'guard.cgroup': last.cgroupId, 'proc.name': last.comm } : {}),
      });
    }
    this.#resolver.syncClock();
  }

  /**
   * Per cgroup: the cores it used, and its busiest process (name as sampled in
   * the kernel) — and whether that one slept since the last second's sample: a
   * CPU-bound loop (a miner) never sleeps, however little CPU a crowded machine gives it.
   */
  #reportCpu(): void {
    const sampleHz = this.#opts.sampleHz ?? 99;
    const perId = new Map<string, { total: number; procs: { pid: string; comm: string; n: number }[] }>();
    for (const [key, n] of Object.entries(this.#cpu)) {
      const [id, pid, ...comm] = key.split(',');
      const s = perId.get(id!) ?? { total: 0, procs: [] };
      s.total += n;
      s.procs.push({ pid: pid!, comm: comm.join(','), n });
      perId.set(id!, s);
    }
    for (const [id, s] of perId) {
      const cores = Math.round((s.total / sampleHz) * 100) / 100;
      // The three busiest are compared with the last second, so the report survives two hogs taking turns at the top.
      const top = s.procs.sort((a, b) => b.n - a.n).slice(0, 3).find((p) => this.#lastNvcsw.has(`${id},${p.pid}`) && `${id},${p.pid}` in this.#nvcsw);
      if (!top || cores < 0.05) continue;
      const key = `${id},${top.pid}`;
      const identity = this.#resolver.peek(id);
      this.#aggregate(id, 'resource.cpu', {
        'cpu.cores': cores, 'cpu.share': Math.round((cores / (identity?.vcpus ?? cpus().length)) * 100) / 100,
        'cpu.sleeps': this.#nvcsw[key]! - this.#lastNvcsw.get(key)!, 'proc.name': top.comm, 'proc.pid': Number(top.pid),
      });
    }
    this.#lastNvcsw = new Map(Object.entries(this.#nvcsw));
    this.#cpu = {};
    this.#nvcsw = {};
  }

  /** An aggregate event of the instance the cgroup is now (its kernel counts are of this second); false when none. */
  #aggregate(id: string, kind: string, extra: Record<string, FieldValue>, priority: Priority = 'notice'): boolean {
    const r = this.#resolver.peek(id);
    if (!r) return false;
    this.#send({ time: Date.now(), tenantId: r.tenantId, instanceId: r.instanceId, level: 'os', kind, priority, fields: { ...identityFields(r, this.#opts.labels?.(r) ?? {}), ...extra } });
    return true;
  }

  #emitHost(kind: string, priority: Priority, fields: Record<string, FieldValue>): void {
    this.#send({ time: Date.now(), tenantId: null, instanceId: null, level: 'host', kind, priority, fields });
  }

  #send(event: GuardEvent): void {
    if (!this.#emit) return;
    this.#stats.emitted++;
    this.#emit(event);
  }
}

/**
 * `instance.role` of an os instance: `web` when a site routes to it, else
 * `worker`; the store's sites read at most once a second.
 */
export function osLabels(store: Store): (identity: OsIdentity) => Record<string, FieldValue> {
  let roles = new Map<string, Record<string, FieldValue>>();
  let served = new Set<string>();
  let readAt = 0;
  return (identity) => {
    if (Date.now() - readAt > 1000) {
      served = new Set();
      // By the instance a site follows (its id), never by a name a later instance may reuse.
      for (const site of store.listSites()) if (site.instanceId !== null) served.add(`${site.tenantId}/${site.instanceId}`);
      roles = new Map();
      readAt = Date.now();
    }
    let role = roles.get(identity.instanceId);
    if (!role) {
      const web = served.has(`${identity.tenantId}/${identity.instanceId}`);
      roles.set(identity.instanceId, (role = { 'instance.role': web ? 'web' : 'worker' }));
    }
    return role;
  };
}
