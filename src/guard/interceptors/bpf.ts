/**
 * The os interceptor: syscall events of tenant containers from eBPF
 * tracepoints, through bpftrace (Debian's) run as a supervised child process.
 *
 * - The program (bpf-program.ts) scopes in the kernel: only tasks in a pid
 *   namespace below the host's, under a seccomp filter (the tenant's workload,
 *   not the runtime's own set-up, which runs before its filter is on), emit
 *   anything; each record names the container's pid namespace by inode.
 * - Here each record is parsed (JSON lines off bpftrace's stdout, on the event
 *   loop, never on the traced task's path — the kernel has already let the
 *   call through) into the one event schema, and its namespace mapped to an
 *   instance through `targets()` (the os driver's running containers and
 *   their init pids). Records of namespaces that map to no instance (another
 *   runtime's containers, Strata's own sandboxes) are dropped and counted.
 * - Supervision: if bpftrace dies it is restarted with back-off (0.5 s
 *   doubling to 30 s), and every death is itself an event (`guard.interceptor`,
 *   critical). Records the kernel could not hand over (full perf buffer) and
 *   records a namespace sent past its per-second budget are reported as
 *   `guard.lost` / `guard.flood` events: nothing is lost silently.
 *
 * Event kinds and fields: see docs/guard.md ("The os interceptor").
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { posix } from 'node:path';
import { cpus } from 'node:os';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { StrataError } from '../../core/errors.js';
import type { LevelDriver } from '../../levels/driver.js';
import { DENIED_SYSCALLS } from '../../levels/os/seccomp.js';
import type { Store } from '../../store/store.js';
import type { FieldValue, GuardEvent, Priority } from '../../core/guard-event.js';
import type { Emit, Interceptor } from '../../core/interceptor.js';
import { DEFAULT_BUDGET, osProgram, type BpfProgramOptions } from './bpf-program.js';
import { syscallName } from './syscalls-x86_64.js';

/** One running tenant container, as the os driver knows it. */
export interface BpfTarget {
  tenantId: string;
  instanceId: string;
  /** Host pid of the container's init: its pid namespace identifies the container. */
  pid: number;
  /** Fields added to each of its events, e.g. `{ 'instance.role': 'web' }`. */
  labels?: Record<string, FieldValue>;
  /** Its CPU limit in cores: `resource.cpu` events carry `cpu.share` = cores used / this. Default: the machine's cores. */
  vcpus?: number;
}

export interface BpfInterceptorOptions extends BpfProgramOptions {
  /** The running tenant containers; asked again when a record names an unknown namespace. */
  targets(): Promise<BpfTarget[]>;
  /** Default `bpftrace` on PATH. */
  bpftrace?: string;
  /** Path prefixes whose writes are reported (as the container sees them). */
  watchedPaths?: readonly string[];
  /** Back-off of restarts: first delay and ceiling (ms). Default 500 / 30,000. */
  restartMs?: { initial: number; max: number };
  /** How long a start may take to attach its probes. Default 60 s (compiling the program is slow on a busy machine). */
  attachTimeoutMs?: number;
  /** Notified of lifecycle facts (start, death, restart) for the daemon's log. */
  log?: (message: string, details?: Record<string, unknown>) => void;
}

/**
 * Watched by default: binaries, libraries and config, app code, the drop zones a
 * dropper uses, and the kernel's interfaces (/proc/sys, /proc/<pid>/exe, /sys).
 */
export const DEFAULT_WATCHED_PATHS = ['/bin/', '/sbin/', '/usr/', '/lib/', '/lib64/', '/etc/', '/var/www/', '/app/', '/srv/', '/opt/', '/tmp/', '/dev/shm/', '/proc/', '/sys/'] as const;

/** Longest string bpftrace copies per field (its stack limits the total); longer paths are cut, their prefix kept. */
const STRLEN = 80;
const AT_FDCWD = -100;
const O_CREAT = 0x40;
const O_TRUNC = 0x200;
const SECCOMP_DENIED = new Set<string>(DENIED_SYSCALLS);
const MOUNT_SYSCALLS = new Set(['mount', 'fsopen', 'fsmount', 'move_mount', 'open_tree', 'fspick', 'fsconfig', 'mount_setattr', 'umount2', 'pivot_root', 'chroot']);

interface Resolved {
  tenantId: string;
  instanceId: string;
  initPid: number;
  labels: Record<string, FieldValue>;
  vcpus: number;
  /** Host uid of container uid 0 (its user namespace's map), if it has one. */
  uidBase: number | null;
}

export interface BpfStats {
  /** bpftrace processes started (1 + restarts). */
  starts: number;
  /** Records parsed. */
  records: number;
  /** Events emitted. */
  emitted: number;
  /** Records of namespaces that are no tenant instance. */
  foreign: number;
  /** Records the kernel lost (perf buffer full). */
  lost: number;
  /** Records over a namespace's per-second budget: counted, not sent. */
  overBudget: number;
}

type Row = (string | number)[];

export class BpfInterceptor implements Interceptor {
  readonly id = 'bpf:os';
  readonly #opts: BpfInterceptorOptions;
  readonly #watched: readonly string[];
  #emit: Emit | undefined;
  #child: ChildProcess | undefined;
  /** Called at the next tick (the end of a second's report). */
  #onTick: (() => void)[] = [];
  #running = false;
  #restartTimer: NodeJS.Timeout | undefined;
  #backoff: number;
  #startedAt = 0;
  /** pid-namespace inode → the instance it is. */
  readonly #byNs = new Map<number, Resolved>();
  /** pid-namespace inode → until when its records are dropped without asking (no instance of ours). */
  readonly #foreignUntil = new Map<number, number>();
  #refreshing: Promise<void> | undefined;
  #refreshTimer: NodeJS.Timeout | undefined;
  #lastRefresh = 0;
  /** Records waiting for a refresh of the targets (bounded), and the last exec among them (its argv follows). */
  #parked: { row: Row; at: number }[] = [];
  #lastParkedExec: Row | undefined;
  /** The exec record whose argv (`join`) comes next. */
  #pendingExec: GuardEvent | undefined;
  /** pid-namespace inode → records over its budget in the second being reported. */
  readonly #suppressed = new Map<number, number>();
  /** Host pid → its voluntary context switches at the last CPU report. */
  #voluntary = new Map<number, number>();
  readonly #stats: BpfStats = { starts: 0, records: 0, emitted: 0, foreign: 0, lost: 0, overBudget: 0 };

  constructor(opts: BpfInterceptorOptions) {
    this.#opts = opts;
    this.#watched = opts.watchedPaths ?? DEFAULT_WATCHED_PATHS;
    this.#backoff = opts.restartMs?.initial ?? 500;
  }

  stats(): BpfStats {
    return { ...this.#stats };
  }

  /** Host pid of the running bpftrace (tests: it must be invisible from inside a container). */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  async start(emit: Emit): Promise<void> {
    this.#emit = emit;
    this.#running = true;
    ensureTracefs();
    await this.#spawn();
  }

  async stop(): Promise<void> {
    this.#running = false;
    clearTimeout(this.#restartTimer);
    clearTimeout(this.#refreshTimer);
    this.#refreshTimer = undefined;
    await this.#refreshing;
    const child = this.#child;
    this.#child = undefined;
    const alive = (): boolean => child !== undefined && child.exitCode === null && child.signalCode === null;
    // The counts of the second under way are reported at its tick; bpftrace's own print of them as it
    // exits comes too late (detaching its probes outlasts the grace before SIGKILL on a busy machine).
    if (alive()) await Promise.race([new Promise<void>((resolve) => this.#onTick.push(resolve)), sleep(1500, undefined, { ref: false })]);
    this.#onTick = [];
    if (child && alive()) {
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGINT');
      const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(timer);
    }
    this.#flushExec();
    this.#flushSuppressed();
    this.#emit = undefined;
  }

  /** Starts bpftrace and resolves once its probes are attached. */
  #spawn(): Promise<void> {
    const program = osProgram({ ...this.#opts, has: hasTracepoint });
    const child = spawn(this.#opts.bpftrace ?? 'bpftrace', ['-f', 'json', '-e', program], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, BPFTRACE_STRLEN: String(STRLEN), BPFTRACE_PERF_RB_PAGES: '256' },
    });
    this.#child = child;
    this.#stats.starts++;
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-4000); });
    return new Promise<void>((resolve, reject) => {
      let attached = false;
      const timer = setTimeout(() => fail(new Error(`bpftrace did not attach within ${this.#opts.attachTimeoutMs ?? 60_000} ms`)), this.#opts.attachTimeoutMs ?? 60_000);
      const fail = (err: Error): void => {
        clearTimeout(timer);
        if (attached) return;
        attached = true;
        child.kill('SIGKILL');
        reject(new StrataError('STRATA_ERR_GUARD_UNAVAILABLE', `the os interceptor could not start bpftrace: ${err.message}; ${lastLines(stderr)}`, undefined, { cause: err }));
      };
      child.once('error', fail);
      const lines = createInterface({ input: child.stdout! });
      lines.on('line', (line) => {
        if (!attached && line.includes('"attached_probes"')) {
          attached = true;
          clearTimeout(timer);
          this.#startedAt = Date.now();
          this.#opts.log?.('os interceptor attached', { pid: child.pid });
          resolve();
          return;
        }
        this.#line(line);
      });
      child.once('exit', (code, signal) => {
        if (!attached) fail(new Error(`bpftrace exited (${signal ?? code})`));
        else if (this.#child === child) this.#died(code, signal, stderr);
      });
    });
  }

  /** bpftrace died while it should run: report it, restart it with back-off. */
  #died(code: number | null, signal: NodeJS.Signals | null, stderr: string): void {
    this.#child = undefined;
    this.#flushExec();
    if (!this.#running) return;
    if (Date.now() - this.#startedAt > 60_000) this.#backoff = this.#opts.restartMs?.initial ?? 500;
    const delay = this.#backoff;
    this.#backoff = Math.min(this.#backoff * 2, this.#opts.restartMs?.max ?? 30_000);
    this.#opts.log?.('os interceptor died; restarting', { code, signal, delayMs: delay, stderr: lastLines(stderr) });
    this.#emitHost('guard.interceptor', 'critical', {
      'guard.interceptor': this.id, 'guard.state': 'died', 'guard.exit': String(signal ?? code), 'guard.restart_ms': delay,
    });
    this.#restartTimer = setTimeout(() => {
      if (!this.#running) return;
      this.#spawn().then(
        () => this.#emitHost('guard.interceptor', 'notice', { 'guard.interceptor': this.id, 'guard.state': 'restarted' }),
        () => this.#died(null, null, ''),
      );
    }, delay);
    this.#restartTimer.unref?.();
  }

  #line(line: string): void {
    let msg: { type?: string; data?: unknown };
    try {
      msg = JSON.parse(line) as { type?: string; data?: unknown };
    } catch {
      return;
    }
    switch (msg.type) {
      case 'value':
        if (Array.isArray(msg.data)) this.#record(msg.data as Row);
        return;
      case 'join':
        if (!this.#pendingExec && this.#lastParkedExec) {
          this.#lastParkedExec.push(String(msg.data));
          this.#lastParkedExec = undefined;
        } else if (this.#pendingExec) {
          const cmdline = String(msg.data);
          this.#pendingExec.fields['proc.cmdline'] = cmdline;
          // busybox re-executes itself through /proc/self/exe: the applet's name is argv[0].
          if (this.#pendingExec.fields['proc.exe'] === '/proc/self/exe') this.#pendingExec.fields['proc.name'] = posix.basename(cmdline.split(' ')[0] ?? 'exe');
          this.#flushExec();
        }
        return;
      case 'map':
        this.#map(msg.data as Record<string, Record<string, number>>);
        return;
      case 'lost_events': {
        const n = Number((msg.data as { events?: number })?.events ?? 0);
        this.#stats.lost += n;
        this.#emitHost('guard.lost', 'critical', { 'guard.interceptor': this.id, 'guard.lost': n });
        return;
      }
      default:
    }
  }

  #record(row: Row): void {
    this.#stats.records++;
    if (row[0] === 'tick') {
      this.#flushSuppressed();
      this.#forgetGone();
      for (const resolve of this.#onTick.splice(0)) resolve();
      return;
    }
    this.#flushExec();
    this.#lastParkedExec = undefined; // an exec's argv comes right after it, or not at all
    const ns = Number(row[1]);
    const known = this.#byNs.get(ns);
    if (known) {
      this.#toEvent(row, known);
      return;
    }
    if ((this.#foreignUntil.get(ns) ?? 0) > Date.now()) {
      this.#stats.foreign++;
      return;
    }
    // A namespace not known yet: most often an instance that started a moment ago, before its driver reported it.
    if (this.#parked.length < 10_000) {
      this.#parked.push({ row, at: Date.now() });
      if (row[0] === 'exec') this.#lastParkedExec = row;
    } else this.#stats.foreign++;
    this.#refresh();
  }

  /**
   * Once a second: drops the instances whose init no longer lives in the
   * namespace they were known by. The kernel reuses a freed namespace's inode
   * number, so a stale entry would hand the next container's events to a
   * deleted instance.
   */
  #forgetGone(): void {
    for (const [ns, r] of this.#byNs) if (pidNamespace(r.initPid) !== ns) this.#byNs.delete(ns);
  }

  /**
   * Asks for the containers again (one refresh at a time, at most every 250 ms),
   * then replays the parked records whose namespace is now known. A namespace
   * still unknown after 10 s is not a tenant instance: its records are dropped
   * (counted as foreign) and so are its next ones for 5 s, without asking.
   */
  #refresh(): void {
    if (this.#refreshing || this.#refreshTimer) return;
    const wait = Math.max(0, this.#lastRefresh + 250 - Date.now());
    this.#refreshTimer = setTimeout(() => {
      this.#refreshTimer = undefined;
      this.#refreshing = this.#doRefresh().finally(() => {
        this.#refreshing = undefined;
        if (this.#parked.length > 0 && this.#running) this.#refresh();
      });
    }, wait);
  }

  async #doRefresh(): Promise<void> {
    this.#lastRefresh = Date.now();
    try {
      const targets = await this.#opts.targets();
      const seen = new Set<number>();
      for (const t of targets) {
        const ns = pidNamespace(t.pid);
        if (ns === null) continue;
        seen.add(ns);
        this.#byNs.set(ns, { tenantId: t.tenantId, instanceId: t.instanceId, initPid: t.pid, labels: t.labels ?? {}, vcpus: t.vcpus ?? cpus().length, uidBase: uidBase(t.pid) });
        this.#foreignUntil.delete(ns);
      }
      for (const ns of this.#byNs.keys()) if (!seen.has(ns)) this.#byNs.delete(ns);
    } catch (err) {
      this.#opts.log?.('os interceptor: listing the containers failed', { error: (err as Error).message });
    }
    const now = Date.now();
    for (const [ns, until] of this.#foreignUntil) if (until <= now) this.#foreignUntil.delete(ns);
    const parked = this.#parked;
    this.#parked = [];
    for (const p of parked) {
      const ns = Number(p.row[1]);
      const r = this.#byNs.get(ns);
      if (p.row === this.#lastParkedExec) this.#parked.push(p); // its argv has not come yet
      else if (r) this.#toEvent(p.row, r);
      else if (now - p.at > 10_000) {
        this.#foreignUntil.set(ns, now + 5000);
        this.#stats.foreign++;
      } else this.#parked.push(p);
      this.#flushExec();
    }
  }

  /** One record → one event. Rows: [tag, ns, pid, uid, comm, …]. */
  #toEvent(row: Row, r: Resolved): void {
    const [tag, , pidRaw, uidRaw, commRaw] = row;
    const pid = Number(pidRaw);
    const uid = Number(uidRaw);
    const fields: Record<string, FieldValue> = { ...r.labels, 'proc.name': String(commRaw), 'proc.pid': pid };
    if (r.uidBase !== null && uid >= r.uidBase && uid - r.uidBase < 2 ** 32) fields['user.uid'] = uid - r.uidBase;
    const ev = (kind: string, priority: Priority = 'notice'): GuardEvent => ({ time: Date.now(), tenantId: r.tenantId, instanceId: r.instanceId, level: 'os', kind, priority, fields });
    switch (tag) {
      case 'exec': {
        const [, , , , , ppid, pcomm, filename] = row;
        const exe = resolvePath(pid, AT_FDCWD, String(filename));
        fields['proc.exe'] = exe;
        fields['proc.name'] = posix.basename(exe);
        fields['proc.pname'] = String(pcomm);
        fields['proc.ppid'] = Number(ppid);
        fields['proc.entrypoint'] = pid === r.initPid;
        if (row[8] === undefined) {
          this.#pendingExec = ev('process.exec');
          return;
        }
        fields['proc.cmdline'] = String(row[8]); // parked: its argv came meanwhile
        if (exe === '/proc/self/exe') fields['proc.name'] = posix.basename(String(row[8]).split(' ')[0] ?? 'exe');
        this.#send(ev('process.exec'));
        return;
      }
      case 'open': case 'rename': case 'unlink': {
        const [, , , , , dfd, flags, path, ppid] = row;
        // The parent's cwd is a fallback only inside the container (the parent of `runc exec`'s process is on the host).
        const parent = pidNamespace(Number(ppid)) === Number(row[1]) ? Number(ppid) : undefined;
        const full = resolvePath(pid, Number(dfd) | 0 /* an int printed unsigned */, String(path), parent);
        if (!full.startsWith('?/') && !this.#watched.some((p) => full.startsWith(p))) return;
        fields['file.path'] = full;
        fields['file.op'] = tag === 'open' ? (Number(flags) & O_CREAT ? 'create' : Number(flags) & O_TRUNC ? 'truncate' : 'write') : tag;
        this.#send(ev('file.write'));
        return;
      }
      case 'mount':
        fields['mount.target'] = String(row[5]);
        fields['mount.fstype'] = String(row[6]);
        this.#send(ev('fs.mount', 'error'));
        return;
      case 'ptrace':
        fields['ptrace.request'] = Number(row[5]);
        fields['ptrace.pid'] = Number(row[6]);
        this.#send(ev('process.ptrace', 'error'));
        return;
      case 'module':
        fields['module.syscall'] = String(row[5]);
        this.#send(ev('kernel.module', 'critical'));
        return;
      case 'connect': {
        const family = Number(row[5]);
        fields['net.direction'] = 'out';
        fields['net.family'] = family === 10 ? 'inet6' : 'inet';
        fields['net.dport'] = Number(row[6]);
        fields['net.dip'] = String(row[7]);
        this.#send(ev('net.connect'));
        return;
      }
      case 'socket':
        fields['net.family'] = Number(row[5]) === 17 ? 'packet' : Number(row[5]) === 10 ? 'inet6' : 'inet';
        fields['net.type'] = (Number(row[6]) & 0xf) === 3 ? 'raw' : String(Number(row[6]) & 0xf);
        this.#send(ev('net.socket', 'warning'));
        return;
      case 'priv': {
        fields['priv.syscall'] = String(row[5]);
        const target = Number(row[6]);
        if (target >= 0 && target < 2 ** 32 - 1) fields['priv.uid'] = target;
        this.#send(ev('process.privilege'));
        return;
      }
      case 'denied': {
        const name = syscallName(Number(row[5]));
        delete fields['proc.pid']; // so a burst of one denial aggregates in the pool
        const errno = -Number(row[6]);
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

  /** The once-a-second aggregates: forks per namespace, CPU samples per (namespace, comm), records over budget. */
  #map(data: Record<string, Record<string, number>>): void {
    const sampleHz = this.#opts.sampleHz ?? 99;
    for (const [name, entries] of Object.entries(data)) {
      if (name === '@forks') {
        for (const [ns, n] of Object.entries(entries)) this.#aggregate(Number(ns), 'process.spawn', { 'proc.forks': n });
      } else if (name === '@budget' || name === '@fbudget' || name === '@nbudget') {
        // The second's count of budgeted hits per namespace: what exceeds the budget was only counted.
        // Both classes' excess makes one report per namespace, at the tick that follows them.
        const budget = this.#opts.budgetPerSecond ?? DEFAULT_BUDGET;
        for (const [ns, n] of Object.entries(entries)) {
          if (n <= budget) continue;
          this.#stats.overBudget += n - budget;
          this.#suppressed.set(Number(ns), (this.#suppressed.get(Number(ns)) ?? 0) + n - budget);
        }
      } else if (name === '@cpu') {
        // Per namespace: the cores it used, and its busiest process — and whether that one ever slept.
        const perNs = new Map<number, { total: number; pids: [number, number][] }>();
        for (const [key, n] of Object.entries(entries)) {
          const [ns, pid] = key.split(',').map(Number) as [number, number];
          const s = perNs.get(ns) ?? { total: 0, pids: [] };
          s.total += n;
          s.pids.push([pid, n]);
          perNs.set(ns, s);
        }
        const switches = new Map<number, number>();
        for (const [ns, s] of perNs) {
          const cores = Math.round((s.total / sampleHz) * 100) / 100;
          const vcpus = this.#byNs.get(ns)?.vcpus ?? cpus().length;
          // The three busiest keep a baseline, so the report survives two hogs taking turns at the top.
          const busiest = s.pids.sort((a, b) => b[1] - a[1]).slice(0, 3).map(([pid]) => ({ pid, now: voluntarySwitches(pid) }));
          for (const b of busiest) if (b.now) switches.set(b.pid, b.now.voluntary);
          const top = busiest.find((b) => b.now !== null && this.#voluntary.has(b.pid));
          // Sleeps of the busiest process in the last second: a CPU-bound loop (a miner) never sleeps, however little CPU a crowded machine gives it.
          if (!top || cores < 0.05) continue;
          this.#aggregate(ns, 'resource.cpu', {
            'cpu.cores': cores, 'cpu.share': Math.round((cores / vcpus) * 100) / 100, 'cpu.sleeps': top.now!.voluntary - this.#voluntary.get(top.pid)!,
            'proc.name': top.now!.comm, 'proc.pid': top.pid,
          });
        }
        this.#voluntary = switches;
      }
    }
  }

  #aggregate(ns: number, kind: string, extra: Record<string, FieldValue>, priority: Priority = 'notice'): void {
    const r = this.#byNs.get(ns);
    if (!r) {
      if ((this.#foreignUntil.get(ns) ?? 0) <= Date.now()) this.#refresh();
      return;
    }
    this.#send({ time: Date.now(), tenantId: r.tenantId, instanceId: r.instanceId, level: 'os', kind, priority, fields: { ...r.labels, ...extra } });
  }

  /** Reports what went over budget in the second just printed (bpftrace also prints the maps once more as it exits). */
  #flushSuppressed(): void {
    for (const [ns, n] of this.#suppressed) this.#aggregate(ns, 'guard.flood', { 'guard.suppressed': n }, 'warning');
    this.#suppressed.clear();
  }

  #flushExec(): void {
    const e = this.#pendingExec;
    this.#pendingExec = undefined;
    if (e) this.#send(e);
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
 * The os driver's running containers as the interceptor's targets: each
 * running os instance of the store, its init pid from the driver, its CPU
 * limit, and `instance.role: web` when a site routes to it.
 */
export async function osTargets(store: Store, driver: LevelDriver): Promise<BpfTarget[]> {
  const served = new Set<string>();
  for (const site of store.listSites()) if (site.target.kind === 'instance') served.add(`${site.tenantId}/${site.target.instance}`);
  const out: BpfTarget[] = [];
  for (const i of store.listInstances()) {
    if (i.level !== 'os') continue;
    const seen = await driver.inspect(i.id).catch(() => null);
    const pid = Number(seen?.info?.pid);
    if (seen?.state !== 'running' || !(pid > 0)) continue;
    const role = served.has(`${i.tenantId}/${i.name}`) || served.has(`${i.tenantId}/${i.id}`) ? 'web' : 'worker';
    out.push({ tenantId: i.tenantId, instanceId: i.id, pid, vcpus: i.limits.vcpus, labels: { 'instance.role': role } });
  }
  return out;
}

/** bpftrace attaches tracepoints through tracefs: mount it where it is missing (these machines do not mount it). */
export function ensureTracefs(): void {
  const dir = '/sys/kernel/tracing';
  if (existsSync(`${dir}/events`)) return;
  try {
    execFileSync('mount', ['-t', 'tracefs', 'nodev', dir], { stdio: 'pipe' });
  } catch (err) {
    throw new StrataError('STRATA_ERR_GUARD_UNAVAILABLE', `the os interceptor needs tracefs at ${dir} and could not mount it: ${(err as Error).message}`);
  }
}

/** Whether the kernel has `group:name` (a tracepoint). */
function hasTracepoint(tracepoint: string): boolean {
  const [group, name] = tracepoint.split(':');
  return existsSync(`/sys/kernel/tracing/events/${group}/${name}`);
}

/** Whether bpftrace and the kernel's BTF are there: the os interceptor can run on this machine. */
export function bpfAvailable(bpftrace = 'bpftrace'): { available: boolean; reason?: string } {
  if (!existsSync('/sys/kernel/btf/vmlinux')) return { available: false, reason: 'the kernel has no BTF (/sys/kernel/btf/vmlinux)' };
  try {
    execFileSync(bpftrace, ['--version'], { stdio: 'pipe' });
  } catch {
    return { available: false, reason: `${bpftrace} is not installed (scripts/setup.d/50-guard.sh installs it)` };
  }
  return { available: true };
}

/** A process's voluntary context switches (how often it slept) and its name, from /proc; null once it is gone. */
function voluntarySwitches(pid: number): { voluntary: number; comm: string } | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const voluntary = /^voluntary_ctxt_switches:\s+(\d+)/m.exec(status);
    const comm = /^Name:\s+(.*)$/m.exec(status);
    return voluntary && comm ? { voluntary: Number(voluntary[1]), comm: comm[1]! } : null;
  } catch {
    return null;
  }
}

function pidNamespace(pid: number): number | null {
  try {
    return statSync(`/proc/${pid}/ns/pid`).ino;
  } catch {
    return null;
  }
}

/** Host uid of the container's uid 0, from its init's uid_map; null without a user namespace. */
function uidBase(pid: number): number | null {
  try {
    const first = readFileSync(`/proc/${pid}/uid_map`, 'utf8').trim().split('\n')[0]!.trim().split(/\s+/).map(Number);
    const [inside, outside] = first as [number, number];
    return outside - inside;
  } catch {
    return null;
  }
}

/**
 * A path as the container sees it: absolute ones normalised (`/tmp/../usr/bin/x`
 * is `/usr/bin/x`); relative ones joined to the task's cwd or dirfd as the host
 * reads them from /proc — or, for a task already gone, to its parent's cwd,
 * which it inherited unless it changed directory (`cd /etc && mv x passwd`).
 * `?/name` when neither can be read.
 */
export function resolvePath(pid: number, dfd: number, path: string, ppid?: number): string {
  if (path.startsWith('/')) return posix.normalize(path);
  // From the host, a task's cwd reads as the container sees it (its root is not reachable from ours).
  const sources = dfd === AT_FDCWD ? [pid, ppid].filter((p) => p !== undefined && p > 0).map((p) => `/proc/${p}/cwd`) : [`/proc/${pid}/fd/${dfd}`];
  for (const source of sources) {
    try {
      return posix.normalize(posix.join(readlinkSync(source), path));
    } catch { /* exited: try the next */ }
  }
  return `?/${posix.normalize(path)}`;
}

/** The last lines of bpftrace's stderr, without its harmless RLIMIT_MEMLOCK complaint. */
function lastLines(stderr: string): string {
  return stderr.split('\n').filter((l) => l.trim() && !l.includes('RLIMIT_MEMLOCK') && !l.includes('Addrspace mismatch')).slice(-3).join(' | ');
}
