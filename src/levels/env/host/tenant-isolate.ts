/**
 * One tenant instance's isolate inside a host process: its own V8 heap (with a
 * limit), the runtime from `runtime.ts`, and the tenant's module.
 *
 * Every entry into tenant code — the handler call, a host call's answer, a
 * timer — runs with a timeout of `cpuMs`. When tenant code breaks a limit
 * (a run over its CPU time, a heap over its limit) the isolate is *reset*: it is
 * disposed, its requests in flight fail, and a fresh isolate with the same code
 * takes its place, so one runaway request costs that instance one reload and
 * costs its neighbours nothing.
 */
import ivm from 'isolated-vm';
import { webcrypto } from 'node:crypto';
import type { HeaderList, IsolateLimits, InvokeFailure } from '../protocol.js';
import type { RuntimeEntryPoints } from './runtime.js';

export interface InvokeOutcome {
  ok: true;
  status: number;
  headers: HeaderList;
  body: Uint8Array;
}
export interface InvokeFailed {
  ok: false;
  failure: InvokeFailure;
  detail: string;
}

/** What an isolate needs from the host process around it. */
export interface IsolateHostSide {
  /** Forwards an async host call to the supervisor; returns its id for the answer. */
  forwardCall(isolate: TenantIsolate, localId: number, kind: string, fields: Record<string, unknown>, body: Uint8Array | null): void;
  /** Records a boundary call that needs no answer (console, crypto, timers). */
  event(inst: string, kind: string, fields: Record<string, unknown>): void;
  /** Tells the supervisor the isolate was reset. */
  reset(isolate: TenantIsolate, reason: InvokeFailure, detail: string): void;
}

/** Largest response body tenant code may produce. */
const MAX_RESPONSE_BYTES = 32 * 1024 * 1024;
/** Top-level module code gets this much time at least (it usually builds tables). */
const MIN_STARTUP_MS = 500;
const TIMED_OUT = 'Script execution timed out.';
const ARRAY_BUFFER_REFUSED = 'Array buffer allocation failed';

type Entry = ivm.Reference<(...args: unknown[]) => unknown>;

export class TenantIsolate {
  #isolate: ivm.Isolate | null = null;
  #entries: { dispatch: Entry; settle: Entry; fire: Entry } | null = null;
  #timers = new Map<number, NodeJS.Timeout>();
  #inflight = new Map<number, (failure: InvokeFailed) => void>();
  /** Settles when the current isolate is loaded; replaced on every reset. */
  #ready: Promise<void> = Promise.resolve();
  #disposed = false;
  /** Bumped on every reset, so answers meant for a dead isolate are dropped. */
  epoch = 0;
  /** CPU time of the isolates reset before the current one, so a reset does not wind the figure back. */
  #cpuBeforeNs = 0n;

  constructor(
    readonly inst: string,
    readonly gen: number,
    readonly code: string,
    readonly vars: Record<string, string>,
    readonly limits: IsolateLimits,
    readonly snapshot: ivm.ExternalCopy<ArrayBuffer>,
    readonly side: IsolateHostSide,
  ) {}

  /** Creates the isolate and evaluates the tenant's module; throws with a message fit for the tenant's log. */
  async load(): Promise<void> {
    this.#ready = this.#build();
    await this.#ready;
  }

  async #build(): Promise<void> {
    const isolate = new ivm.Isolate({
      memoryLimit: this.limits.memoryMiB,
      snapshot: this.snapshot,
      onCatastrophicError: (message) => {
        process.stderr.write(`isolate ${this.inst}: catastrophic V8 error: ${message}\n`);
        process.abort();
      },
    });
    this.#isolate = isolate;
    const epoch = this.epoch;
    try {
      const context = await isolate.createContext();
      const install = await context.global.get('__strata_install', { reference: true });
      const callbacks = [
        new ivm.Callback((id: number, kind: string, fieldsJson: string, body: Uint8Array | null) => {
          if (this.epoch !== epoch) return;
          let fields: Record<string, unknown>;
          try { fields = JSON.parse(fieldsJson) as Record<string, unknown>; } catch { return; }
          this.side.forwardCall(this, id, kind, fields, body);
        }, { ignored: true }),
        new ivm.Callback((kind: string, fieldsJson: string) => {
          try { this.side.event(this.inst, kind, JSON.parse(fieldsJson) as Record<string, unknown>); } catch { /* malformed: dropped */ }
        }, { ignored: true }),
        new ivm.Callback((n: number) => {
          const bytes = new Uint8Array(Math.min(65536, Math.max(0, n | 0)));
          webcrypto.getRandomValues(bytes);
          this.side.event(this.inst, 'crypto.random', { bytes: bytes.length });
          return bytes;
        }),
        new ivm.Callback((id: number, ms: number) => this.#arm(epoch, id, ms), { ignored: true }),
        new ivm.Callback((id: number) => this.#disarm(id), { ignored: true }),
      ];
      const exports = await install.apply(undefined, [...callbacks, JSON.stringify(this.vars), this.limits.maxTimers, this.limits.maxTimerMs], {
        result: { reference: true },
        timeout: MIN_STARTUP_MS,
      }) as ivm.Reference<RuntimeEntryPoints>;
      const entry = (name: keyof RuntimeEntryPoints): Entry => exports.getSync(name, { reference: true }) as unknown as Entry;
      const bind = entry('bind');
      this.#entries = { dispatch: entry('dispatch'), settle: entry('settle'), fire: entry('fire') };
      const module = await isolate.compileModule(this.code, { filename: 'file:///handler.js' });
      if (module.dependencySpecifiers.length > 0) throw new Error(`imports are not available: ${module.dependencySpecifiers.join(', ')}`);
      await module.instantiate(context, () => { throw new Error('imports are not available'); });
      const startupMs = Math.max(MIN_STARTUP_MS, this.limits.cpuMs);
      await module.evaluate({ timeout: startupMs });
      await bind.apply(undefined, [module.namespace.derefInto()], { timeout: startupMs });
    } catch (e) {
      if (!isolate.isDisposed) isolate.dispose();
      throw new Error(describe(e, isolate));
    }
  }

  /** Runs the handler for one request; never throws. */
  async invoke(method: string, url: string, headers: HeaderList, body: Uint8Array | null): Promise<InvokeOutcome | InvokeFailed> {
    try {
      await this.#ready;
    } catch (e) {
      return { ok: false, failure: 'unloaded', detail: `the handler could not be reloaded: ${describe(e, null)}` };
    }
    const entries = this.#entries;
    if (this.#disposed || !entries) return { ok: false, failure: 'unloaded', detail: 'isolate unloaded' };
    const token = Symbol('request');
    let failEarly!: (f: InvokeFailed) => void;
    const failed = new Promise<InvokeFailed>((resolve) => (failEarly = resolve));
    const id = nextRequestId++;
    this.#inflight.set(id, failEarly);
    try {
      const run = entries.dispatch.apply(undefined, [{ method, url, headers }, body], {
        arguments: { copy: true },
        result: { promise: true, copy: true },
        timeout: this.limits.cpuMs,
      }).then((value) => ({ token, value }), (error: unknown) => ({ token, error }));
      const outcome = await Promise.race([run, failed]);
      if (!('token' in outcome)) return outcome;
      if ('error' in outcome) return this.#failure(outcome.error);
      return checkResponse(outcome.value);
    } finally {
      this.#inflight.delete(id);
    }
  }

  /** Delivers a host call's answer into the isolate. */
  settle(epoch: number, localId: number, ok: boolean, value: unknown, body: Uint8Array | null): void {
    if (epoch !== this.epoch || !this.#entries) return;
    this.#entries.settle.apply(undefined, [localId, ok, value, body], { arguments: { copy: true }, timeout: this.limits.cpuMs })
      .catch((e: unknown) => this.#failure(e));
  }

  #arm(epoch: number, id: number, ms: number): void {
    if (epoch !== this.epoch || this.#disposed) return;
    this.side.event(this.inst, 'timer.set', { ms });
    const timer = setTimeout(() => {
      this.#timers.delete(id);
      this.#entries?.fire.apply(undefined, [id], { timeout: this.limits.cpuMs }).catch((e: unknown) => this.#failure(e));
    }, ms);
    this.#timers.set(id, timer);
  }

  #disarm(id: number): void {
    clearTimeout(this.#timers.get(id));
    this.#timers.delete(id);
  }

  /** Classifies a failed entry; a limit breach resets the isolate. */
  #failure(error: unknown): InvokeFailed {
    const isolate = this.#isolate;
    const message = error instanceof Error ? error.message : String(error);
    if (message === TIMED_OUT) return this.#reset('cpu', `a run of the handler exceeded its CPU-time limit of ${this.limits.cpuMs} ms`);
    if (isolate?.isDisposed && !this.#disposed) return this.#reset('memory', `the isolate exceeded its memory limit of ${this.limits.memoryMiB} MiB`);
    if (this.#disposed) return { ok: false, failure: 'unloaded', detail: 'isolate unloaded' };
    // V8 refuses an ArrayBuffer past the isolate's memory limit with an exception, not a reset: still a limit hit.
    // (Code that throws this message itself only reports itself.)
    if (error instanceof Error && error.message === ARRAY_BUFFER_REFUSED) {
      this.side.event(this.inst, 'limit', { limit: 'memory', max: this.limits.memoryMiB });
    }
    return { ok: false, failure: 'exception', detail: describe(error, isolate) };
  }

  #reset(reason: InvokeFailure, detail: string): InvokeFailed {
    const failure: InvokeFailed = { ok: false, failure: reason, detail };
    if (this.#disposed) return failure;
    this.epoch++;
    this.#teardown();
    for (const fail of this.#inflight.values()) fail(failure);
    this.#inflight.clear();
    this.side.reset(this, reason, detail);
    this.#ready = this.#build();
    this.#ready.catch(() => undefined);
    return failure;
  }

  #teardown(): void {
    for (const timer of this.#timers.values()) clearTimeout(timer);
    this.#timers.clear();
    this.#entries = null;
    if (this.#isolate && !this.#isolate.isDisposed) {
      this.#cpuBeforeNs += cpuTimeOf(this.#isolate);
      this.#isolate.dispose();
    }
  }

  /** Unloads for good: pending requests fail as `unloaded`. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.epoch++;
    this.#teardown();
    for (const fail of this.#inflight.values()) fail({ ok: false, failure: 'unloaded', detail: 'isolate unloaded' });
    this.#inflight.clear();
  }

  /** CPU time its code used (this isolate and those reset before it), ns, for stats. */
  get cpuNs(): number {
    const isolate = this.#isolate;
    return Number(this.#cpuBeforeNs + (isolate && !isolate.isDisposed ? cpuTimeOf(isolate) : 0n));
  }

  /** Heap in use, for stats. */
  get heapBytes(): number {
    try {
      const isolate = this.#isolate;
      if (!isolate || isolate.isDisposed) return 0;
      const h = isolate.getHeapStatisticsSync();
      return h.used_heap_size + h.externally_allocated_size;
    } catch {
      return 0;
    }
  }
}

let nextRequestId = 1;

/** An error from tenant code as text for the tenant's log: its stack when it has one. */
function describe(error: unknown, isolate: ivm.Isolate | null): string {
  if (isolate?.isDisposed && error instanceof Error && /memory limit/.test(error.message)) return error.message;
  if (error instanceof Error) return error.stack ?? error.message;
  return String(error);
}

const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** The isolate's answer is untrusted: check its shape and bounds before it leaves the host. */
function checkResponse(value: unknown): InvokeOutcome | InvokeFailed {
  const bad = (detail: string): InvokeFailed => ({ ok: false, failure: 'invalid-response', detail });
  if (typeof value !== 'object' || value === null) return bad('the handler produced no response object');
  const { status, headers, body } = value as { status: unknown; headers: unknown; body: unknown };
  if (typeof status !== 'number' || !Number.isInteger(status) || status < 200 || status > 599) return bad(`invalid status ${String(status)}`);
  if (!Array.isArray(headers)) return bad('invalid headers');
  const list: HeaderList = [];
  for (const pair of headers) {
    if (!Array.isArray(pair) || pair.length !== 2) return bad('invalid header');
    const [name, v] = pair as [unknown, unknown];
    if (typeof name !== 'string' || typeof v !== 'string' || !HEADER_NAME.test(name) || /[\r\n\0]/.test(v)) return bad('invalid header');
    list.push([name, v]);
  }
  let bytes: Uint8Array;
  if (body === null || body === undefined) bytes = new Uint8Array(0);
  else if (typeof body === 'string') bytes = Buffer.from(body);
  else if (body instanceof Uint8Array) bytes = body;
  else return bad('invalid body');
  if (bytes.length > MAX_RESPONSE_BYTES) return bad(`response body over ${MAX_RESPONSE_BYTES} bytes`);
  return { ok: true, status, headers: list, body: bytes };
}

function cpuTimeOf(isolate: ivm.Isolate): bigint {
  try {
    return isolate.cpuTime;
  } catch {
    return 0n; // disposed between the check and the read
  }
}
