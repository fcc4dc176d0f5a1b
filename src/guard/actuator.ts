/**
 * The actuator: turns a rule match into an alert and an action.
 *
 * Every alert and every action goes three ways: to the daemon's target
 * (`alert`, and `freeze` / `stop` / `snapshot` on the instance), to the audit
 * log (actor `guard`, with the event's fields as evidence) and to the event bus
 * (category 'alert'). Actions need an instance; an alert about Strata itself or
 * the gateway is notify-only.
 *
 * Dynamic reaction:
 * - freeze undoes itself: the instance is resumed after `freezeMs` (default
 *   5 min) unless it was stopped meanwhile;
 * - repeat offenders escalate: every `escalateAfter` (default 3) alerts on one
 *   instance within `escalationWindowMs` (default 10 min) raise its response a
 *   rung on the ladder notify → freeze → stop (a snapshot rule counts as notify
 *   and still takes its snapshot);
 * - a failed action is itself audited and alerted, never swallowed.
 */
import { randomUUID } from 'node:crypto';
import type { AuditActor, AuditEntryInput } from '../audit/log.js';
import type { EventBus } from '../control/events.js';
import type { EventLevel, FieldValue, Priority } from './event.js';
import type { Match } from './evaluator.js';
import type { Action } from './rules.js';

export interface Alert {
  id: string;
  /** ISO 8601, when the guard raised it. */
  time: string;
  /** Event time (ms since the epoch) of the event that completed the match. */
  eventTime: number;
  rule: string;
  priority: Priority;
  output: string;
  tenantId: string | null;
  instanceId: string | null;
  level: EventLevel;
  kind: string;
  /** The action actually taken, after tenant overrides and escalation. */
  action: Action;
  count: number;
  /** The event's fields: the evidence. */
  fields: Record<string, FieldValue>;
  tags: string[];
  /** Index of the alert's entry in the audit log. */
  auditIndex: number;
}

/** What the daemon gives the guard to act with; the level drivers do the work. */
export interface ActuatorTarget {
  /** Delivers an alert beyond the log and the event stream (webhook, pager). Must not throw. */
  alert(alert: Alert): void;
  freeze(instanceId: string): Promise<void>;
  /** Undoes a freeze. */
  resume(instanceId: string): Promise<void>;
  stop(instanceId: string): Promise<void>;
  /** A forensic snapshot of the instance as it is now. */
  snapshot(instanceId: string): Promise<void>;
}

/** The one part of the audit log the actuator needs. */
export interface AuditSink {
  append(input: AuditEntryInput): { index: number };
}

export interface ActuatorOptions {
  target: ActuatorTarget;
  audit: AuditSink;
  events: EventBus;
  freezeMs?: number;
  escalateAfter?: number;
  escalationWindowMs?: number;
}

export const GUARD_ACTOR: AuditActor = { userId: null, name: 'guard', role: 'system' };

const LADDER: readonly Action[] = ['notify', 'freeze', 'stop'];

export class Actuator {
  readonly #target: ActuatorTarget;
  readonly #audit: AuditSink;
  readonly #events: EventBus;
  readonly #freezeMs: number;
  readonly #escalateAfter: number;
  readonly #escalationWindowMs: number;
  /** instance → times of its recent alerts. */
  readonly #strikes = new Map<string, number[]>();
  /** instance → the timer that will resume it. */
  readonly #thawTimers = new Map<string, NodeJS.Timeout>();
  /** instance → how many stops were ordered, so a freeze that finishes after a stop schedules no resume. */
  readonly #stops = new Map<string, number>();
  readonly #pending = new Set<Promise<void>>();

  constructor(opts: ActuatorOptions) {
    this.#target = opts.target;
    this.#audit = opts.audit;
    this.#events = opts.events;
    this.#freezeMs = opts.freezeMs ?? 300_000;
    this.#escalateAfter = opts.escalateAfter ?? 3;
    this.#escalationWindowMs = opts.escalationWindowMs ?? 600_000;
  }

  /** Raises the alert for a match (audit, bus, target) and starts its action; returns the alert at once. */
  handle(match: Match): Alert {
    const e = match.event;
    const action = e.instanceId === null ? 'notify' : this.#escalate(e.instanceId, match.action);
    const alert = this.raise({
      rule: match.rule, priority: match.priority, output: match.output, tenantId: e.tenantId, instanceId: e.instanceId,
      level: e.level, kind: e.kind, action, count: match.count, fields: e.fields, tags: match.tags, eventTime: e.time,
    });
    if (e.instanceId !== null && action !== 'notify') this.#track(this.#act(action, e.instanceId, e.tenantId, alert.id));
    return alert;
  }

  /** Raises an alert that no rule produced (pool drops, a failed action): audited, published, delivered. */
  raise(a: Omit<Alert, 'id' | 'time' | 'auditIndex'>): Alert {
    const id = `al_${randomUUID()}`;
    const time = new Date().toISOString();
    const { index } = this.#audit.append({
      time, actor: GUARD_ACTOR, tenantId: a.tenantId, action: 'guard.alert', target: a.instanceId ?? 'strata', result: 'ok',
      details: { alertId: id, rule: a.rule, priority: a.priority, output: a.output, action: a.action, count: a.count, kind: a.kind, level: a.level, eventTime: a.eventTime, evidence: a.fields },
    });
    const alert: Alert = { id, time, auditIndex: index, ...a };
    this.#events.publish('alert', 'guard.alert', a.tenantId, { ...alert });
    this.#target.alert(alert);
    return alert;
  }

  /** Resolves once every action started so far has finished (or failed, and been audited). */
  async settled(): Promise<void> {
    while (this.#pending.size > 0) await Promise.all([...this.#pending]);
  }

  /** Stops the undo timers and resumes what they would have resumed, so a stopping guard leaves nothing frozen. */
  async stop(): Promise<void> {
    const frozen = [...this.#thawTimers.keys()];
    for (const t of this.#thawTimers.values()) clearTimeout(t);
    this.#thawTimers.clear();
    for (const id of frozen) this.#track(this.#perform('resume', id, null, null));
    await this.settled();
  }

  /** The action after escalation: one rung up the ladder per `escalateAfter` recent strikes. */
  #escalate(instanceId: string, action: Action): Action {
    const now = Date.now();
    let strikes = this.#strikes.get(instanceId);
    if (!strikes) this.#strikes.set(instanceId, (strikes = []));
    let expired = 0;
    while (expired < strikes.length && now - strikes[expired]! > this.#escalationWindowMs) expired++;
    if (expired > 0) strikes.splice(0, expired);
    strikes.push(now);
    const rungs = Math.floor((strikes.length - 1) / this.#escalateAfter);
    const base = action === 'snapshot' ? 0 : LADDER.indexOf(action);
    const rung = Math.min(LADDER.length - 1, base + rungs);
    return rung === base ? action : LADDER[rung]!;
  }

  async #act(action: Exclude<Action, 'notify'>, instanceId: string, tenantId: string | null, alertId: string): Promise<void> {
    const stopsBefore = this.#stops.get(instanceId) ?? 0;
    if (action === 'stop') {
      this.#stops.set(instanceId, stopsBefore + 1);
      clearTimeout(this.#thawTimers.get(instanceId));
      this.#thawTimers.delete(instanceId);
    }
    const ok = await this.#perform(action, instanceId, tenantId, alertId);
    const stoppedMeanwhile = (this.#stops.get(instanceId) ?? 0) !== stopsBefore;
    if (action === 'freeze' && ok && !stoppedMeanwhile) {
      clearTimeout(this.#thawTimers.get(instanceId));
      const timer = setTimeout(() => {
        this.#thawTimers.delete(instanceId);
        this.#track(this.#perform('resume', instanceId, tenantId, alertId));
      }, this.#freezeMs);
      timer.unref();
      this.#thawTimers.set(instanceId, timer);
    }
  }

  /** Calls the target, audits and publishes the outcome; true when it worked. */
  async #perform(action: Exclude<Action, 'notify'> | 'resume', instanceId: string, tenantId: string | null, alertId: string | null): Promise<boolean> {
    let error: string | undefined;
    try { await this.#target[action](instanceId); } catch (err) { error = err instanceof Error ? err.message : String(err); }
    const details = { alertId, ...(error ? { error } : {}) };
    this.#audit.append({ actor: GUARD_ACTOR, tenantId, action: `guard.${action}`, target: instanceId, result: error ? 'error' : 'ok', details });
    this.#events.publish('alert', `guard.${action}`, tenantId, { instanceId, ok: !error, ...details });
    if (error) {
      this.raise({
        rule: 'guard.action.failed', priority: 'critical', output: `guard could not ${action} ${instanceId}: ${error}`, tenantId, instanceId,
        level: 'host', kind: 'guard.action', action: 'notify', count: 1, fields: { 'guard.action': action, error }, tags: ['guard'], eventTime: Date.now(),
      });
    }
    return !error;
  }

  #track(p: Promise<unknown>): void {
    const done: Promise<void> = p.then(() => undefined, () => undefined).finally(() => this.#pending.delete(done));
    this.#pending.add(done);
  }
}
