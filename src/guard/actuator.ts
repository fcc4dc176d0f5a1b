/**
 * The actuator: turns a rule match into an alert and an action.
 *
 * Every alert and every action goes three ways: to the daemon's target
 * (`alert`, and the action on the instance), to the audit log (actor `guard`,
 * with the event's fields as evidence; an action's entry names its alert and
 * that alert's audit index, plus what the action produced — a snapshot, a
 * replacement instance) and to the event bus (category 'alert'). Actions need
 * an instance, except `recover`, which also restores what an integrity scope
 * names (a static site's docroot); other alerts without an instance are
 * notify-only.
 *
 * Dynamic reaction:
 * - freeze, throttle and cut undo themselves: resume / unthrottle / reconnect
 *   after `freezeMs` / `throttleMs` / `cutMs` (default 5 min each) unless the
 *   instance was stopped meanwhile; `stop()` undoes whatever is still pending;
 * - repeat offenders escalate: every `escalateAfter` (default 3) alerts on one
 *   instance within `escalationWindowMs` (default 10 min) raise its response a
 *   rung on the ladder notify → freeze → stop (snapshot, throttle and cut count
 *   as notify and still happen when not escalated; recover is never replaced:
 *   the compromised instance is swapped out anyway); alerts of an operator
 *   session (`proc.origin = api`) neither escalate nor count;
 * - a failed action is itself audited and alerted, never swallowed.
 */
import { randomUUID } from 'node:crypto';
import type { AuditActor, AuditEntryInput } from '../audit/log.js';
import type { EventBus } from '../core/events.js';
import type { EventLevel, FieldValue, Priority } from '../core/guard-event.js';
import type { Match } from './evaluator.js';
import type { Action } from './rules.js';
import { messageOf } from '../core/errors.js';

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

/** What an action produced, recorded in its audit entry (e.g. `{ snapshot: 'guard-…' }`). */
export type ActionOutcome = Record<string, unknown> | void;

/** What `recover` is asked to make whole: an instance, or (without one) the tree an integrity scope names. */
export interface RecoverySubject {
  instanceId: string | null;
  tenantId: string | null;
  /** `integrity.scope` of the alert's event, when it has one (`instance:<id>`, `site:<hostname>`). */
  scope: string | null;
  alertId: string;
  /** The alert's audit entry: the evidence the recovery answers. */
  auditIndex: number;
}

/** What the daemon gives the guard to act with; the level drivers do the work. */
export interface ActuatorTarget {
  /** Delivers an alert beyond the log and the event stream (webhook, pager), where there is such a channel. Must not throw. */
  alert?(alert: Alert): void;
  freeze(instanceId: string): Promise<ActionOutcome>;
  /** Undoes a freeze. */
  resume(instanceId: string): Promise<ActionOutcome>;
  stop(instanceId: string): Promise<ActionOutcome>;
  /** A forensic snapshot of the instance as it is now. */
  snapshot(instanceId: string): Promise<ActionOutcome>;
  /** Caps the instance's CPU; absent where no level can. */
  throttle?(instanceId: string): Promise<ActionOutcome>;
  unthrottle?(instanceId: string): Promise<ActionOutcome>;
  /** Cuts the instance's network off; `reconnect` undoes it. */
  cut?(instanceId: string): Promise<ActionOutcome>;
  reconnect?(instanceId: string): Promise<ActionOutcome>;
  /** Hot recovery: serve the subject's last known-good state again. */
  recover?(subject: RecoverySubject): Promise<ActionOutcome>;
  /**
   * The instance's current generation (its start, as its level's events name it
   * in `instance.generation`), null when it has none (not running), undefined
   * where its level has no generations. Asked before every action on an
   * instance whose event named a generation.
   */
  generation?(instanceId: string): Promise<string | null | undefined>;
}

/** The field of an event naming the start of its instance it came from. */
export const GENERATION_FIELD = 'instance.generation';

type TargetAction = 'freeze' | 'resume' | 'stop' | 'snapshot' | 'throttle' | 'unthrottle' | 'cut' | 'reconnect';

/** Timed actions and the action that undoes each. */
const UNDO = { freeze: 'resume', throttle: 'unthrottle', cut: 'reconnect' } as const;
type Undoable = keyof typeof UNDO;

/** The one part of the audit log the actuator needs. */
export interface AuditSink {
  append(input: AuditEntryInput): { index: number };
}

export interface ActuatorOptions {
  target: ActuatorTarget;
  audit: AuditSink;
  events: EventBus;
  freezeMs?: number;
  /** How long a throttle lasts; default 5 min. */
  throttleMs?: number;
  /** How long a network cut lasts; default 5 min. */
  cutMs?: number;
  escalateAfter?: number;
  escalationWindowMs?: number;
}

export const GUARD_ACTOR: AuditActor = { userId: null, name: 'guard', role: 'system' };

const LADDER: readonly Action[] = ['notify', 'freeze', 'stop'];

export class Actuator {
  readonly #target: ActuatorTarget;
  readonly #audit: AuditSink;
  readonly #events: EventBus;
  readonly #undoAfterMs: Record<Undoable, number>;
  readonly #escalateAfter: number;
  readonly #escalationWindowMs: number;
  /** instance → times of its recent alerts. */
  readonly #strikes = new Map<string, number[]>();
  /** `action instance` → the timer that will undo it. */
  readonly #undoTimers = new Map<string, { timer: NodeJS.Timeout; action: Undoable; instanceId: string; tenantId: string | null; generation: string | undefined }>();
  /** instance → how many stops were ordered, so a freeze that finishes after a stop schedules no resume. */
  readonly #stops = new Map<string, number>();
  readonly #pending = new Set<Promise<void>>();

  constructor(opts: ActuatorOptions) {
    this.#target = opts.target;
    this.#audit = opts.audit;
    this.#events = opts.events;
    this.#undoAfterMs = { freeze: opts.freezeMs ?? 300_000, throttle: opts.throttleMs ?? 300_000, cut: opts.cutMs ?? 300_000 };
    this.#escalateAfter = opts.escalateAfter ?? 3;
    this.#escalationWindowMs = opts.escalationWindowMs ?? 600_000;
  }

  /** Raises the alert for a match (audit, bus, target) and starts its action; returns the alert at once. */
  handle(match: Match): Alert {
    const e = match.event;
    const scope = typeof e.fields['integrity.scope'] === 'string' ? e.fields['integrity.scope'] : null;
    // An operator session (exec through the API: authenticated, audited) is no offender: its alerts neither escalate nor count as strikes.
    const operator = e.fields['proc.origin'] === 'api';
    const action = e.instanceId !== null ? (operator ? match.action : this.#escalate(e.instanceId, match.action))
      : match.action === 'recover' && scope !== null ? 'recover' : 'notify';
    const alert = this.raise({
      rule: match.rule, priority: match.priority, output: match.output, tenantId: e.tenantId, instanceId: e.instanceId,
      level: e.level, kind: e.kind, action, count: match.count, fields: e.fields, tags: match.tags, eventTime: e.time,
    });
    if (action === 'recover') {
      this.#track(this.#perform('recover', e.instanceId ?? scope!, e.tenantId, alert, () =>
        this.#call('recover', { instanceId: e.instanceId, tenantId: e.tenantId, scope, alertId: alert.id, auditIndex: alert.auditIndex })));
    } else if (e.instanceId !== null && action !== 'notify') {
      this.#track(this.#act(action, e.instanceId, e.tenantId, alert));
    }
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
    this.#target.alert?.(alert);
    return alert;
  }

  /** Resolves once every action started so far has finished (or failed, and been audited). */
  async settled(): Promise<void> {
    while (this.#pending.size > 0) await Promise.all([...this.#pending]);
  }

  /** Stops the undo timers and undoes now what they would have undone, so a stopping guard leaves nothing frozen, throttled or cut off. */
  async stop(): Promise<void> {
    const pending = [...this.#undoTimers.values()];
    this.#undoTimers.clear();
    for (const u of pending) {
      clearTimeout(u.timer);
      this.#track(this.#perform(UNDO[u.action], u.instanceId, u.tenantId, null, () => this.#call(UNDO[u.action], u.instanceId), u.generation));
    }
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
    if (action === 'recover') return action;
    const rungs = Math.floor((strikes.length - 1) / this.#escalateAfter);
    const base = LADDER.includes(action) ? LADDER.indexOf(action) : 0;
    const rung = Math.min(LADDER.length - 1, base + rungs);
    return rung === base ? action : LADDER[rung]!;
  }

  async #act(action: Exclude<Action, 'notify' | 'recover'>, instanceId: string, tenantId: string | null, alert: Alert): Promise<void> {
    const stopsBefore = this.#stops.get(instanceId) ?? 0;
    if (action === 'stop') {
      this.#stops.set(instanceId, stopsBefore + 1);
      for (const undoable of Object.keys(UNDO) as Undoable[]) this.#cancelUndo(undoable, instanceId);
    }
    const ok = await this.#perform(action, instanceId, tenantId, alert, () => this.#call(action, instanceId));
    const stoppedMeanwhile = (this.#stops.get(instanceId) ?? 0) !== stopsBefore;
    if ((action === 'freeze' || action === 'throttle' || action === 'cut') && ok && !stoppedMeanwhile) {
      this.#cancelUndo(action, instanceId);
      const key = `${action} ${instanceId}`;
      const timer = setTimeout(() => {
        this.#undoTimers.delete(key);
        this.#track(this.#perform(UNDO[action], instanceId, tenantId, alert, () => this.#call(UNDO[action], instanceId)));
      }, this.#undoAfterMs[action]);
      timer.unref();
      this.#undoTimers.set(key, { timer, action, instanceId, tenantId, generation: generationOf(alert) });
    }
  }

  #cancelUndo(action: Undoable, instanceId: string): void {
    const key = `${action} ${instanceId}`;
    clearTimeout(this.#undoTimers.get(key)?.timer);
    this.#undoTimers.delete(key);
  }

  /** The target's method for an action; one the target lacks fails (and is alerted) like any failed action. */
  #call(action: TargetAction, instanceId: string): Promise<ActionOutcome>;
  #call(action: 'recover', subject: RecoverySubject): Promise<ActionOutcome>;
  #call(action: TargetAction | 'recover', arg: string | RecoverySubject): Promise<ActionOutcome> {
    const method = this.#target[action] as ((a: string | RecoverySubject) => Promise<ActionOutcome>) | undefined;
    if (!method) return Promise.reject(new Error(`this installation cannot ${action}`));
    return method.call(this.#target, arg);
  }

  /**
   * Runs the action, audits and publishes the outcome with its evidence; true
   * when it worked. On an instance, first checks that it is still the start the
   * evidence came from (`generation`, default the alert's): an instance since
   * restarted, or whose number a new start took, is not punished for its
   * predecessor — the action is refused, and audited as refused.
   */
  async #perform(action: TargetAction | 'recover', subject: string, tenantId: string | null, alert: Alert | null, run: () => Promise<ActionOutcome>,
    generation = generationOf(alert)): Promise<boolean> {
    const instanceId = action === 'recover' ? alert?.instanceId ?? null : subject;
    if (generation !== undefined && instanceId !== null && this.#target.generation) {
      const current = await this.#target.generation(instanceId).catch(() => null);
      if (current !== undefined && current !== generation) {
        const details = { alertId: alert?.id ?? null, ...(alert ? { alertAuditIndex: alert.auditIndex } : {}), refused: 'generation', eventGeneration: generation, currentGeneration: current };
        this.#audit.append({ actor: GUARD_ACTOR, tenantId, action: `guard.${action}`, target: subject, result: 'error', details });
        this.#events.publish('alert', `guard.${action}`, tenantId, { instanceId: subject, ok: false, ...details });
        return false;
      }
    }
    let error: string | undefined;
    let outcome: ActionOutcome = undefined;
    try { outcome = await run(); } catch (err) { error = messageOf(err); }
    const details = { alertId: alert?.id ?? null, ...(alert ? { alertAuditIndex: alert.auditIndex } : {}), ...(outcome ?? {}), ...(error ? { error } : {}) };
    this.#audit.append({ actor: GUARD_ACTOR, tenantId, action: `guard.${action}`, target: subject, result: error ? 'error' : 'ok', details });
    this.#events.publish('alert', `guard.${action}`, tenantId, { instanceId: subject, ok: !error, ...details });
    if (error) {
      this.raise({
        rule: 'guard.action.failed', priority: 'critical', output: `guard could not ${action} ${subject}: ${error}`, tenantId, instanceId: alert?.instanceId ?? (action === 'recover' ? null : subject),
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

/** The generation the alert's evidence names, if its level has them. */
function generationOf(alert: Alert | null): string | undefined {
  const g = alert?.fields[GENERATION_FIELD];
  return g === undefined ? undefined : String(g);
}
