/**
 * bpftrace as a supervised child process: started with a generated program,
 * ready once its probes are attached, its JSON lines handed on as they come
 * (on the event loop, never on the traced task's path: the kernel has already
 * let the call through). If it dies while it should run it is restarted with
 * back-off (0.5 s doubling to 30 s, reset after a minute of life), and the
 * owner hears of every death and every restart, so it can report them.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { StrataError } from '../../../core/errors.js';

export type Row = (string | number)[];

/** What one line of `bpftrace -f json` can be. */
export interface BpftraceOutput {
  /** A `print((…))` tuple. */
  value(row: Row): void;
  /** A printed map (`@name` → key → value). */
  map(data: Record<string, Record<string, number>>): void;
  /** Records the kernel could not hand over (perf buffer full). */
  lost(n: number): void;
}

export interface BpftraceOptions {
  /** The program, generated anew at each start. */
  program(): string;
  output: BpftraceOutput;
  /** Default `bpftrace` on PATH. */
  bpftrace?: string;
  /** Back-off of restarts: first delay and ceiling (ms). Default 500 / 30,000. */
  restartMs?: { initial: number; max: number };
  /** How long a start may take to attach its probes. Default 60 s (compiling is slow on a busy machine). */
  attachTimeoutMs?: number;
  /** Longest string copied per field (bpftrace's stack limits the total). Default 80. */
  strlen?: number;
  /** It died while it should run; it restarts after `delayMs`. */
  died(info: { exit: string; delayMs: number; stderr: string }): void;
  /** It is back after a death. */
  restarted(): void;
  log?: (message: string, details?: Record<string, unknown>) => void;
}

export class BpftraceProcess {
  readonly #opts: BpftraceOptions;
  #child: ChildProcess | undefined;
  #running = false;
  #restartTimer: NodeJS.Timeout | undefined;
  #backoff: number;
  #startedAt = 0;
  /** bpftrace processes started (1 + restarts). */
  starts = 0;

  constructor(opts: BpftraceOptions) {
    this.#opts = opts;
    this.#backoff = opts.restartMs?.initial ?? 500;
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  get alive(): boolean {
    const child = this.#child;
    return child !== undefined && child.exitCode === null && child.signalCode === null;
  }

  async start(): Promise<void> {
    this.#running = true;
    await this.#spawn();
  }

  /** Stops it (SIGINT, SIGKILL after 3 s); no restart follows. */
  async stop(): Promise<void> {
    this.#running = false;
    clearTimeout(this.#restartTimer);
    const child = this.#child;
    this.#child = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGINT');
    const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(timer);
  }

  /** Starts bpftrace and resolves once its probes are attached. */
  #spawn(): Promise<void> {
    const child = spawn(this.#opts.bpftrace ?? 'bpftrace', ['-f', 'json', '-e', this.#opts.program()], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, BPFTRACE_STRLEN: String(this.#opts.strlen ?? 80), BPFTRACE_PERF_RB_PAGES: '256' },
    });
    this.#child = child;
    this.starts++;
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-4000); });
    const attachMs = this.#opts.attachTimeoutMs ?? 60_000;
    return new Promise<void>((resolve, reject) => {
      let attached = false;
      const timer = setTimeout(() => fail(new Error(`bpftrace did not attach within ${attachMs} ms`)), attachMs);
      const fail = (err: Error): void => {
        clearTimeout(timer);
        if (attached) return;
        attached = true;
        child.kill('SIGKILL');
        reject(new StrataError('STRATA_ERR_GUARD_UNAVAILABLE', `the os interceptor could not start bpftrace: ${err.message}; ${lastLines(stderr)}`, undefined, { cause: err }));
      };
      child.once('error', fail);
      createInterface({ input: child.stdout! }).on('line', (line) => {
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
        else if (this.#child === child) this.#died(String(signal ?? code), stderr);
      });
    });
  }

  #died(exit: string, stderr: string): void {
    this.#child = undefined;
    if (!this.#running) return;
    if (Date.now() - this.#startedAt > 60_000) this.#backoff = this.#opts.restartMs?.initial ?? 500;
    const delayMs = this.#backoff;
    this.#backoff = Math.min(this.#backoff * 2, this.#opts.restartMs?.max ?? 30_000);
    this.#opts.log?.('os interceptor died; restarting', { exit, delayMs, stderr: lastLines(stderr) });
    this.#opts.died({ exit, delayMs, stderr: lastLines(stderr) });
    this.#restartTimer = setTimeout(() => {
      if (!this.#running) return;
      this.#spawn().then(() => this.#opts.restarted(), () => this.#died('no start', ''));
    }, delayMs);
    this.#restartTimer.unref?.();
  }

  #line(line: string): void {
    let msg: { type?: string; data?: unknown };
    try {
      msg = JSON.parse(line) as { type?: string; data?: unknown };
    } catch {
      return;
    }
    const out = this.#opts.output;
    switch (msg.type) {
      case 'value':
        if (Array.isArray(msg.data)) out.value(msg.data as Row);
        return;
      case 'map':
        out.map(msg.data as Record<string, Record<string, number>>);
        return;
      case 'lost_events':
        out.lost(Number((msg.data as { events?: number })?.events ?? 0));
        return;
      default:
    }
  }
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
export function hasTracepoint(tracepoint: string): boolean {
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

/** The last lines of bpftrace's stderr, without its harmless warnings. */
function lastLines(stderr: string): string {
  return stderr.split('\n').filter((l) => l.trim() && !l.includes('RLIMIT_MEMLOCK') && !l.includes('WARNING') && !/^\s/.test(l)).slice(-3).join(' | ');
}
