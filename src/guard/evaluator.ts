/**
 * The evaluator: weighs drained warnings against the ruleset and says which
 * rules match. Stateless rules match one warning; `threshold` rules count
 * matches (a warning's aggregated `count` included) per group within a window;
 * `sequence` rules follow each group through their steps within a window.
 * Windows run on event time, so replaying events gives the same answers.
 *
 * Rules are indexed by the event kinds their conditions allow, so a warning is
 * only tested against rules that could match it. Per-tenant overrides (from
 * the ruleset, or set at run time by `setOverride`) disable a rule or change
 * its action for one tenant.
 */
import type { GuardEvent, Priority } from '../core/guard-event.js';
import type { Warning } from './pool.js';
import { fixtureEvents, type Action, type CompiledRule, type FixtureEvent, type Ruleset, type TenantOverride } from './rules.js';

export interface Match {
  rule: string;
  priority: Priority;
  /** The rule's action after the tenant's override. */
  action: Action;
  output: string;
  /** The event that completed the match (the last step of a sequence, the crossing event of a threshold). */
  event: GuardEvent;
  /** Events this match stands for: the warning's count, or the threshold's tally. */
  count: number;
  tags: string[];
}

/** Stale threshold and sequence groups are swept after this many evaluations. */
const SWEEP_EVERY = 65_536;

export class Evaluator {
  readonly #byKind = new Map<string, CompiledRule[]>();
  readonly #anyKind: CompiledRule[] = [];
  readonly #overrides = new Map<string, Omit<TenantOverride, 'tenant' | 'rule'>>();
  /** rule → group → times and counts of matches within the window. */
  readonly #tallies = new Map<CompiledRule, Map<string, { times: number[]; counts: number[]; sum: number }>>();
  /** rule → group → next step and the time of the first. */
  readonly #progress = new Map<CompiledRule, Map<string, { step: number; since: number }>>();
  #evaluated = 0;

  constructor(ruleset: Ruleset) {
    for (const rule of ruleset.rules) {
      if (!rule.kinds) { this.#anyKind.push(rule); continue; }
      for (const kind of rule.kinds) {
        const list = this.#byKind.get(kind) ?? [];
        list.push(rule);
        this.#byKind.set(kind, list);
      }
    }
    for (const o of ruleset.overrides) this.setOverride(o);
  }

  /** Disables a rule or changes its action for one tenant; later calls win. */
  setOverride(o: TenantOverride): void {
    const key = `${o.tenant}\u0000${o.rule}`;
    this.#overrides.set(key, { ...this.#overrides.get(key), ...(o.enabled !== undefined ? { enabled: o.enabled } : {}), ...(o.action ? { action: o.action } : {}) });
  }

  get evaluated(): number { return this.#evaluated; }

  /** The rules this warning fires, in ruleset order within its kind. */
  evaluate(warning: Warning): Match[] {
    const event = warning.event;
    if (++this.#evaluated % SWEEP_EVERY === 0) this.#sweep(event.time);
    const matches: Match[] = [];
    const candidates = this.#byKind.get(event.kind);
    if (candidates) for (const rule of candidates) this.#try(rule, warning, matches);
    for (const rule of this.#anyKind) this.#try(rule, warning, matches);
    return matches;
  }

  #try(rule: CompiledRule, warning: Warning, out: Match[]): void {
    const event = warning.event;
    const override = event.tenantId === null ? undefined : this.#overrides.get(`${event.tenantId}\u0000${rule.name}`);
    if (!(override?.enabled ?? rule.enabled)) return;
    if (!rule.matches(event)) return;
    let count = warning.count;
    if (rule.threshold) {
      const tally = this.#tally(rule, rule.threshold, warning);
      if (tally === null) return;
      count = tally;
    } else if (rule.sequence && !this.#advance(rule, rule.sequence, event)) {
      return;
    }
    out.push({ rule: rule.name, priority: rule.priority, action: override?.action ?? rule.action, output: rule.render(event), event, count, tags: rule.tags });
  }

  /** Adds the warning to its group's tally; the tally when it reaches the threshold (then resets), else null. */
  #tally(rule: CompiledRule, t: NonNullable<CompiledRule['threshold']>, warning: Warning): number | null {
    let groups = this.#tallies.get(rule);
    if (!groups) this.#tallies.set(rule, (groups = new Map()));
    const key = t.groupOf(warning.event);
    let g = groups.get(key);
    if (!g) groups.set(key, (g = { times: [], counts: [], sum: 0 }));
    const now = warning.lastTime;
    let expired = 0;
    while (expired < g.times.length && now - g.times[expired]! > t.windowMs) g.sum -= g.counts[expired++]!;
    if (expired > 0) { g.times.splice(0, expired); g.counts.splice(0, expired); }
    g.times.push(now);
    g.counts.push(warning.count);
    g.sum += warning.count;
    if (g.sum < t.count) return null;
    const sum = g.sum;
    groups.delete(key);
    return sum;
  }

  /** Moves the event's group along the sequence; true when this event completes it. */
  #advance(rule: CompiledRule, s: NonNullable<CompiledRule['sequence']>, event: GuardEvent): boolean {
    let groups = this.#progress.get(rule);
    if (!groups) this.#progress.set(rule, (groups = new Map()));
    const key = s.groupOf(event);
    let p = groups.get(key);
    if (p && event.time - p.since > s.windowMs) { groups.delete(key); p = undefined; }
    if (p && s.steps[p.step]!(event)) {
      if (++p.step === s.steps.length) { groups.delete(key); return true; }
      return false;
    }
    if (!p && s.steps[0]!(event)) groups.set(key, { step: 1, since: event.time });
    return false;
  }

  /** Forgets groups whose window has passed, so state stays bounded by live activity. */
  #sweep(now: number): void {
    for (const [rule, groups] of this.#tallies) {
      for (const [key, g] of groups) if (now - g.times[g.times.length - 1]! > rule.threshold!.windowMs) groups.delete(key);
    }
    for (const [rule, groups] of this.#progress) {
      for (const [key, p] of groups) if (now - p.since > rule.sequence!.windowMs) groups.delete(key);
    }
  }
}

/**
 * Runs one rule's fixtures: each firing fixture must fire it; each benign one
 * must fire no rule of the whole set (precision). Answers per fixture: whether
 * it fired, and which rules the benign ones fired. The basis of
 * `strata guard rules test`.
 */
export function testRuleFixtures(ruleset: Ruleset, rule: CompiledRule): { fires: boolean[]; benign: string[][] } {
  const run = (evaluator: Evaluator, fixture: FixtureEvent[]): string[] =>
    fixtureEvents(fixture).flatMap((event) => evaluator.evaluate({ event, count: 1, firstTime: event.time, lastTime: event.time }).map((m) => m.rule));
  return {
    fires: (rule.fixtures?.fires ?? []).map((f) => run(new Evaluator({ rules: [rule], overrides: [] }), f).includes(rule.name)),
    benign: (rule.fixtures?.benign ?? []).map((f) => run(new Evaluator(ruleset), f)),
  };
}
