/**
 * The dispatcher: takes every alert the actuator raises and hands it to the
 * outputs that want it, without ever making the guard wait.
 *
 * - Who receives what: a provider output every alert (host-level ones too); a
 *   tenant's output only alerts whose tenant id — the identity the event
 *   carried, never a name — is its tenant's. Then the filters: a minimum
 *   priority, and a list of rule names.
 * - `deliver` is synchronous and only appends to each output's bounded queue
 *   (default 1,000 alerts); a full queue drops the alert and counts it. Each
 *   output has one worker sending its queue in order, every attempt under a
 *   deadline, retrying with exponential backoff (1 s doubling to 60 s, ±20 %)
 *   until the output's retry limit, then counting a dead letter. A receiver
 *   that hangs only fills its own queue.
 * - Failures are counted (`stats`, the metrics) and raise a host-level alert,
 *   `guard.output.failed`, at most once per output per minute (the ones in
 *   between are summed into the next); that alert never goes to the output it
 *   is about, so a failing output cannot feed itself.
 */
import { priorityRank } from '../../core/guard-event.js';
import type { Alert } from '../actuator.js';
import { FileSink } from './file.js';
import { SyslogSink } from './syslog.js';
import type { Attempt, OutputDefinition, OutputStats, Sink } from './types.js';
import { WebhookSink } from './webhook.js';

export const FAILURE_RULE = 'guard.output.failed';

export type RaiseFn = (a: Omit<Alert, 'id' | 'time' | 'auditIndex'>) => void;

export interface DispatcherOptions {
  /** Where file outputs write (`<data dir>/alerts`). */
  fileRoot: string;
  /** Raises a host-level alert (the guard's `raise`). */
  raise?: RaiseFn;
  /** Alerts waiting per output; default 1,000. */
  queueSize?: number;
  /** The first retry's delay, doubled each time up to `maxBackoffMs`; default 1 s and 60 s. */
  backoffMs?: number;
  maxBackoffMs?: number;
  /** At most one failure alert per output in this time; default 60 s. */
  failureAlertIntervalMs?: number;
  /** Tenant outputs may reach loopback and private addresses (tests, closed labs); default false. */
  allowPrivateTargets?: boolean;
}

/** Attempts after the first for outputs without a setting of their own (syslog, file). */
const DEFAULT_RETRIES = 3;

/** Whether `def` takes `alert`: the tenant identity first, then the filters. */
export function accepts(def: OutputDefinition, alert: Alert): boolean {
  if (def.tenantId !== null && alert.tenantId !== def.tenantId) return false;
  if (alert.rule === FAILURE_RULE && alert.fields['output.id'] === def.id) return false;
  if (def.filter.minPriority !== null && priorityRank(alert.priority) > priorityRank(def.filter.minPriority)) return false;
  if (def.filter.rules !== null && !def.filter.rules.includes(alert.rule)) return false;
  return true;
}

export function makeSink(def: OutputDefinition, opts: Pick<DispatcherOptions, 'fileRoot' | 'allowPrivateTargets'>): Sink {
  const restricted = def.tenantId !== null && !opts.allowPrivateTargets;
  switch (def.config.type) {
    case 'webhook': return new WebhookSink(def.config, def.secret ?? '', restricted);
    case 'syslog': return new SyslogSink(def.config, restricted);
    case 'file':
      // A tenant never writes into the host's files, whatever reached the store.
      if (def.tenantId !== null) throw new Error('file outputs are the provider\'s only');
      return new FileSink(def.config, opts.fileRoot);
  }
}

/** One output: its queue, its worker and its counters. */
class Worker {
  readonly queue: Alert[] = [];
  readonly stats: OutputStats = { queued: 0, delivered: 0, failedAttempts: 0, deadLetters: 0, dropped: 0, lastError: null, lastErrorAt: null, lastDeliveredAt: null };
  running: Promise<void> | undefined;
  closed = false;
  /** Failures not yet alerted (rate limit), and when the last alert went out. */
  unreported = { deadLetters: 0, dropped: 0, error: '' };
  lastAlertAt = -Infinity;
  reportTimer: NodeJS.Timeout | undefined;
  /** Wakes a backoff sleep early when the output is closed. */
  wake: (() => void) | undefined;

  constructor(readonly def: OutputDefinition, readonly sink: Sink) {}
}

export class AlertDispatcher {
  readonly #opts: Required<Omit<DispatcherOptions, 'raise'>> & Pick<DispatcherOptions, 'raise'>;
  readonly #workers = new Map<string, Worker>();
  /** One JSON body per alert, however many outputs take it. */
  readonly #bodies = new WeakMap<Alert, string>();

  constructor(opts: DispatcherOptions) {
    this.#opts = {
      queueSize: 1000, backoffMs: 1000, maxBackoffMs: 60_000, failureAlertIntervalMs: 60_000, allowPrivateTargets: false, ...opts,
    };
  }

  /** Makes the running outputs these: new ones start, missing ones stop (what they still held is dropped). */
  set(defs: readonly OutputDefinition[]): void {
    const wanted = new Map(defs.map((d) => [d.id, d]));
    for (const [id, w] of this.#workers) if (!wanted.has(id)) this.#close(w);
    for (const def of defs) {
      if (this.#workers.has(def.id)) continue;
      this.#workers.set(def.id, new Worker(def, makeSink(def, this.#opts)));
    }
  }

  /** Queues the alert for every output that takes it; never waits, never throws. */
  deliver(alert: Alert): void {
    for (const w of this.#workers.values()) {
      if (!accepts(w.def, alert)) continue;
      if (w.queue.length >= this.#opts.queueSize) {
        w.stats.dropped++;
        this.#failed(w, 'dropped', 'queue full');
        continue;
      }
      w.queue.push(alert);
      w.stats.queued = w.queue.length;
      this.#kick(w);
    }
  }

  /** Starts the output's worker unless it runs; one that ends with alerts left (queued just as it finished) starts again. */
  #kick(w: Worker): void {
    if (w.running || w.closed) return;
    w.running = this.#run(w).finally(() => {
      w.running = undefined;
      if (w.queue.length > 0) this.#kick(w);
    });
  }

  /** Sends one alert through an output's sink now, once, outside its queue: `strata output test`. */
  async test(def: OutputDefinition, alert: Alert): Promise<Attempt> {
    const running = this.#workers.get(def.id);
    const sink = running?.sink ?? makeSink(def, this.#opts);
    try {
      return await sink.send(this.#body(alert), alert);
    } finally {
      if (!running) await sink.close();
    }
  }

  stats(id: string): OutputStats | null {
    const w = this.#workers.get(id);
    return w ? { ...w.stats, queued: w.queue.length } : null;
  }

  /** Every running output with its counters (the metrics). */
  all(): Array<{ def: OutputDefinition; stats: OutputStats }> {
    return [...this.#workers.values()].map((w) => ({ def: w.def, stats: { ...w.stats, queued: w.queue.length } }));
  }

  /** Resolves once every queue is empty and nothing is in flight (tests, shutdown). */
  async idle(): Promise<void> {
    for (;;) {
      const running = [...this.#workers.values()].map((w) => w.running).filter((r) => r !== undefined);
      if (running.length === 0) return;
      await Promise.all(running);
    }
  }

  /** Stops every output: queued alerts are not sent, sleeping retries end, sockets close. */
  async close(): Promise<void> {
    const workers = [...this.#workers.values()];
    for (const w of workers) this.#close(w);
    await Promise.all(workers.map((w) => w.running));
  }

  #close(w: Worker): void {
    w.closed = true;
    w.queue.length = 0;
    w.wake?.();
    clearTimeout(w.reportTimer);
    this.#workers.delete(w.def.id);
    void w.sink.close().catch(() => undefined);
  }

  #body(alert: Alert): string {
    let body = this.#bodies.get(alert);
    if (body === undefined) this.#bodies.set(alert, (body = JSON.stringify(alert)));
    return body;
  }

  async #run(w: Worker): Promise<void> {
    const retries = w.def.config.type === 'webhook' ? w.def.config.retries : DEFAULT_RETRIES;
    while (!w.closed && w.queue.length > 0) {
      const alert = w.queue.shift()!;
      for (let attempt = 0; !w.closed; attempt++) {
        const r = await w.sink.send(this.#body(alert), alert).catch((e: Error): Attempt => ({ ok: false, error: e.message, retry: true }));
        if (w.closed) return;
        if (r.ok) {
          w.stats.delivered++;
          w.stats.lastDeliveredAt = new Date().toISOString();
          break;
        }
        w.stats.failedAttempts++;
        w.stats.lastError = r.error;
        w.stats.lastErrorAt = new Date().toISOString();
        if (!r.retry || attempt >= retries) {
          w.stats.deadLetters++;
          this.#failed(w, 'deadLetters', r.error);
          break;
        }
        await this.#sleep(w, this.#backoff(attempt));
      }
    }
  }

  #backoff(attempt: number): number {
    const base = Math.min(this.#opts.maxBackoffMs, this.#opts.backoffMs * 2 ** attempt);
    return Math.round(base * (0.8 + Math.random() * 0.4));
  }

  #sleep(w: Worker, ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => { w.wake = undefined; resolve(); }, ms);
      w.wake = () => { clearTimeout(timer); w.wake = undefined; resolve(); };
    });
  }

  /** Counts a failure for the next failure alert, and sends that alert now if the output's last one is old enough. */
  #failed(w: Worker, what: 'deadLetters' | 'dropped', error: string): void {
    w.unreported[what]++;
    w.unreported.error = error;
    if (!this.#opts.raise || w.reportTimer) return;
    const wait = w.lastAlertAt + this.#opts.failureAlertIntervalMs - Date.now();
    // Never raised from inside `deliver` (which the actuator is calling): always a turn later.
    w.reportTimer = setTimeout(() => this.#report(w), Math.max(0, wait));
    w.reportTimer.unref();
  }

  #report(w: Worker): void {
    w.reportTimer = undefined;
    if (w.closed || !this.#opts.raise) return;
    const { deadLetters, dropped, error } = w.unreported;
    w.unreported = { deadLetters: 0, dropped: 0, error: '' };
    w.lastAlertAt = Date.now();
    // From a timer: a throw here would take the daemon down, so whatever raising fails on stays counted in the stats.
    try {
      this.#raiseFailure(w, deadLetters, dropped, error);
    } catch {
      // the stats keep the failures
    }
  }

  #raiseFailure(w: Worker, deadLetters: number, dropped: number, error: string): void {
    const owner = w.def.tenantId ?? 'provider';
    const what = [deadLetters ? `${deadLetters} alerts given up after retries` : '', dropped ? `${dropped} dropped on a full queue` : ''].filter(Boolean).join(', ');
    this.#opts.raise!({
      rule: FAILURE_RULE, priority: 'error', output: `alert output ${w.def.name} (${owner}, ${w.def.config.type}) failing: ${what}; last error: ${error}`,
      tenantId: null, instanceId: null, level: 'host', kind: 'guard.output', action: 'notify', count: deadLetters + dropped,
      fields: {
        'output.id': w.def.id, 'output.name': w.def.name, 'output.owner': owner, 'output.type': w.def.config.type,
        'output.dead_letters': deadLetters, 'output.dropped': dropped, error,
      },
      tags: ['guard'], eventTime: Date.now(),
    });
  }
}
