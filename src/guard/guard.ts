/**
 * The guard: interceptors → warning pool → evaluator → actuator, in one object
 * the daemon starts with `strata up`.
 *
 * `ingest` (what interceptors call) only files the event in the pool and, if
 * no drain is scheduled, schedules one with `setImmediate`; the drain
 * evaluates up to `batchSize` warnings, hands matches to the actuator, reports
 * pool drops as an alert, and yields to the event loop before the next batch.
 * So evaluation never runs on an interceptor's path and I/O keeps flowing
 * under a flood.
 *
 * Alerts are kept in an in-memory ring (default the last 10,000) for
 * `alerts()`; each carries the index of its audit log entry, which is the
 * lasting record.
 */
import type { EventBus } from '../core/events.js';
import { priorityRank, type GuardEvent, type Priority } from '../core/guard-event.js';
import { Actuator, type ActuatorTarget, type Alert, type AuditSink } from './actuator.js';
import { Evaluator } from './evaluator.js';
import type { Interceptor } from '../core/interceptor.js';
import { GuardIntake } from './intake.js';
import { authFailureEvent } from './interceptors/gateway.js';
import type { PoolOptions, RecordOutcome } from './pool.js';
import { OperatorSessions } from './sessions.js';
import type { Ruleset, TenantOverride } from './rules.js';

export interface GuardOptions {
  ruleset: Ruleset;
  target: ActuatorTarget;
  audit: AuditSink;
  events: EventBus;
  /** Where interceptors file events; default a fresh one (with `pool`). */
  intake?: GuardIntake;
  pool?: PoolOptions;
  /** Warnings evaluated per turn of the event loop; default 4,096. */
  batchSize?: number;
  /** Alerts kept for `alerts()`; default 10,000. */
  alertRing?: number;
  /** See ActuatorOptions. */
  freezeMs?: number;
  throttleMs?: number;
  cutMs?: number;
  escalateAfter?: number;
  escalationWindowMs?: number;
}

export interface GuardStats {
  /** Events handed to `ingest`. */
  received: number;
  /** Events folded into a waiting identical warning. */
  aggregated: number;
  /** Events lost to a full pool (each also raised an alert). */
  dropped: number;
  /** Warnings evaluated against the rules. */
  evaluated: number;
  alerts: number;
  waiting: number;
}

export interface AlertQuery {
  tenantId?: string;
  /** This priority or a more urgent one. */
  priority?: Priority;
  /** ISO 8601 or ms since the epoch: alerts raised at or after it. */
  since?: string | number;
  limit?: number;
}

export class Guard {
  /** Exec and console sessions started through the API, registered before they run (`sessions.ts`). */
  readonly sessions: OperatorSessions;
  readonly #intake: GuardIntake;
  readonly #evaluator: Evaluator;
  readonly #actuator: Actuator;
  readonly #batchSize: number;
  readonly #ring: (Alert | undefined)[];
  #ringNext = 0;
  #alertCount = 0;
  #drainScheduled: NodeJS.Immediate | undefined;
  #idleWaiters: (() => void)[] = [];

  constructor(opts: GuardOptions) {
    this.#intake = opts.intake ?? new GuardIntake(opts.pool);
    this.#intake.consume(() => { this.#drainScheduled ??= setImmediate(this.#drain); });
    this.#evaluator = new Evaluator(opts.ruleset);
    this.#actuator = new Actuator({
      target: opts.target, audit: opts.audit, events: opts.events,
      ...(opts.freezeMs !== undefined ? { freezeMs: opts.freezeMs } : {}),
      ...(opts.throttleMs !== undefined ? { throttleMs: opts.throttleMs } : {}),
      ...(opts.cutMs !== undefined ? { cutMs: opts.cutMs } : {}),
      ...(opts.escalateAfter !== undefined ? { escalateAfter: opts.escalateAfter } : {}),
      ...(opts.escalationWindowMs !== undefined ? { escalationWindowMs: opts.escalationWindowMs } : {}),
    });
    this.#batchSize = opts.batchSize ?? 4096;
    this.sessions = new OperatorSessions((e) => { this.ingest(e); });
    this.#ring = new Array(opts.alertRing ?? 10_000);
  }

  /** Adds an interceptor; started now if the guard runs, else by `start`. Ids must be unique. */
  addInterceptor(interceptor: Interceptor): Promise<void> {
    return this.#intake.addInterceptor(interceptor);
  }

  removeInterceptor(id: string): Promise<void> {
    return this.#intake.removeInterceptor(id);
  }

  start(): Promise<void> {
    return this.#intake.start();
  }

  /** Stops the interceptors, evaluates what is still waiting, and undoes pending freezes. */
  async stop(): Promise<void> {
    await this.#intake.stop();
    await this.drained();
    await this.#actuator.stop();
  }

  /** Files one event; O(1), never evaluates. The answer is the pool's back-pressure signal. */
  get ingest(): (event: GuardEvent) => RecordOutcome {
    return this.#intake.ingest;
  }

  /** An API request refused as unauthenticated: brute-force rules count these. */
  authFailed(ip: string, path: string): void {
    this.ingest(authFailureEvent(ip, path));
  }

  /** Raises an alert no rule produced (a failing alert output): audited, published, delivered, kept. */
  raise(a: Omit<Alert, 'id' | 'time' | 'auditIndex'>): Alert {
    const alert = this.#actuator.raise(a);
    this.#keep(alert);
    return alert;
  }

  /** Disables a rule or changes its action for one tenant (tenant policy). */
  setOverride(o: TenantOverride): void {
    this.#evaluator.setOverride(o);
  }

  /** Resolves when the pool is empty and every action started has finished. */
  async drained(): Promise<void> {
    if (this.#intake.pool.waiting > 0 || this.#drainScheduled !== undefined) await new Promise<void>((resolve) => this.#idleWaiters.push(resolve));
    await this.#actuator.settled();
  }

  stats(): GuardStats {
    const p = this.#intake.pool.stats();
    return { received: p.received, aggregated: p.aggregated, dropped: p.dropped, evaluated: this.#evaluator.evaluated, alerts: this.#alertCount, waiting: p.waiting };
  }

  /** Recent alerts, oldest first, filtered. */
  alerts(q: AlertQuery = {}): Alert[] {
    const since = q.since === undefined ? undefined : typeof q.since === 'number' ? q.since : Date.parse(q.since);
    const maxRank = q.priority === undefined ? undefined : priorityRank(q.priority);
    const out: Alert[] = [];
    for (let i = 0; i < this.#ring.length; i++) {
      const a = this.#ring[(this.#ringNext + i) % this.#ring.length];
      if (!a) continue;
      if (q.tenantId !== undefined && a.tenantId !== q.tenantId) continue;
      if (maxRank !== undefined && priorityRank(a.priority) > maxRank) continue;
      if (since !== undefined && Date.parse(a.time) < since) continue;
      out.push(a);
    }
    return q.limit === undefined ? out : out.slice(-q.limit);
  }

  readonly #drain = (): void => {
    this.#drainScheduled = undefined;
    for (const warning of this.#intake.pool.drain(this.#batchSize)) {
      for (const match of this.#evaluator.evaluate(warning)) this.#keep(this.#actuator.handle(match));
    }
    const drops = this.#intake.pool.takeDropReport();
    if (drops) {
      this.#keep(this.#actuator.raise({
        rule: 'guard.pool.dropped', priority: 'critical', output: `warning pool full: ${drops.total} events dropped`,
        tenantId: null, instanceId: null, level: 'host', kind: 'guard.pool', action: 'notify', count: drops.total,
        fields: Object.fromEntries(Object.entries(drops.byPriority).map(([p, n]) => [`dropped.${p}`, n])), tags: ['guard'], eventTime: Date.now(),
      }));
    }
    if (this.#intake.pool.waiting > 0) this.#drainScheduled = setImmediate(this.#drain);
    else for (const resolve of this.#idleWaiters.splice(0)) resolve();
  };

  #keep(alert: Alert): void {
    this.#ring[this.#ringNext] = alert;
    this.#ringNext = (this.#ringNext + 1) % this.#ring.length;
    this.#alertCount++;
  }
}
