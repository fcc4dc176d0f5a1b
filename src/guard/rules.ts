/**
 * Guard rules: the YAML format, its schema, and compilation into ready-to-run
 * rules. In the spirit of Falco's rules files — a document is a list of
 * `lists`, `macros` and `rules` — plus what Falco lacks: an `action` per rule,
 * per-tenant `overrides`, stateful `threshold` and `sequence` rules, and inline
 * `fixtures` (events a rule must fire on, and benign events it must not) that
 * `strata guard rules test` runs.
 *
 * Every object is `.strict()`: a misspelt key is an error naming its path, as is
 * a condition that does not parse (`rules[2].condition: expected a value …`).
 */
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { StrataError } from '../core/errors.js';
import { DEFAULT_LEVEL } from '../levels/index.js';
import { LEVEL_IDS } from '../levels/ids.js';
import { validationError } from '../core/validation.js';
import { compileCondition, ConditionError, kindsOf, parseCondition, type Condition, type Predicate } from './condition.js';
import { fieldOf, PRIORITIES, type FieldValue, type GuardEvent, type Priority } from '../core/guard-event.js';

export const ACTIONS = ['notify', 'snapshot', 'freeze', 'stop', 'throttle', 'cut', 'recover'] as const;
/**
 * What the actuator does on a match; notify → freeze → stop is also the
 * escalation ladder. `throttle` (CPU quota) and `cut` (network) undo themselves
 * after a while; `recover` replaces what was tampered with by its last
 * known-good state.
 */
export type Action = (typeof ACTIONS)[number];

/** '500ms', '10s', '5m', '1h', or a number of milliseconds. */
const duration = z.union([z.number().int().positive(), z.string().regex(/^\d+(ms|s|m|h)$/, 'a duration like 500ms, 10s, 5m or 1h')])
  .transform((d) => {
    if (typeof d === 'number') return d;
    const [, n, unit] = /^(\d+)(ms|s|m|h)$/.exec(d)!;
    return Number(n) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[unit as 'ms' | 's' | 'm' | 'h'];
  });

const fieldValue = z.union([z.string(), z.number(), z.boolean()]);

/** An event as fixtures write it: defaults fill in what a rule does not care about; `repeat` sends it n times. */
const fixtureEvent = z.object({
  kind: z.string().min(1),
  tenantId: z.string().nullable().default('t_fixture'),
  instanceId: z.string().nullable().default('i_fixture'),
  level: z.enum([...LEVEL_IDS, 'gateway', 'host']).default(DEFAULT_LEVEL),
  priority: z.enum(PRIORITIES).optional(),
  fields: z.record(z.string(), fieldValue).default({}),
  repeat: z.number().int().positive().max(100_000).default(1),
  /** Milliseconds after the previous event; default 1. */
  after: z.number().int().nonnegative().default(1),
}).strict();

const ruleSchema = z.object({
  rule: z.string().min(1),
  desc: z.string().min(1),
  condition: z.string().min(1),
  priority: z.enum(PRIORITIES),
  output: z.string().min(1),
  action: z.enum(ACTIONS).default('notify'),
  enabled: z.boolean().default(true),
  tags: z.array(z.string()).default([]),
  /** Falco-style: the rule does not fire when the event's `fields` equal any one `values` tuple. */
  exceptions: z.array(z.object({
    name: z.string().min(1),
    fields: z.array(z.string()).min(1),
    values: z.array(z.array(fieldValue)),
  }).strict()).default([]),
  /** Fire once `count` matches (aggregated counts included) fall within `window`, counted per `by` group. */
  threshold: z.object({ count: z.number().int().positive(), window: duration, by: z.array(z.string()).default(['instance.id']) }).strict().optional(),
  /** Fire when events matching each step arrive in order within `window`, per `by` group. */
  sequence: z.object({ steps: z.array(z.string().min(1)).min(2), window: duration, by: z.array(z.string()).default(['instance.id']) }).strict().optional(),
  fixtures: z.object({ fires: z.array(z.array(fixtureEvent).min(1)).min(1), benign: z.array(z.array(fixtureEvent).min(1)).min(1) }).strict().optional(),
}).strict().refine((r) => !(r.threshold && r.sequence), { message: 'a rule has a threshold or a sequence, not both', path: ['sequence'] });

const overrideSchema = z.object({
  tenant: z.string().min(1),
  rule: z.string().min(1),
  enabled: z.boolean().optional(),
  action: z.enum(ACTIONS).optional(),
}).strict();

const rulesDocument = z.object({
  lists: z.array(z.object({ list: z.string().min(1), items: z.array(z.union([z.string(), z.number()]).transform(String)) }).strict()).default([]),
  macros: z.array(z.object({ macro: z.string().min(1), condition: z.string().min(1) }).strict()).default([]),
  rules: z.array(ruleSchema).default([]),
  overrides: z.array(overrideSchema).default([]),
}).strict();

export type FixtureEvent = z.output<typeof fixtureEvent>;
export type TenantOverride = z.output<typeof overrideSchema>;

export interface CompiledRule {
  name: string;
  desc: string;
  priority: Priority;
  action: Action;
  enabled: boolean;
  tags: string[];
  /** The condition and its exceptions in one closure. */
  matches: Predicate;
  /** The kinds it can match, or null for any. */
  kinds: Set<string> | null;
  render(event: GuardEvent): string;
  threshold?: { count: number; windowMs: number; groupOf(event: GuardEvent): string };
  sequence?: { steps: Predicate[]; windowMs: number; groupOf(event: GuardEvent): string };
  fixtures?: { fires: FixtureEvent[][]; benign: FixtureEvent[][] };
}

export interface Ruleset {
  rules: CompiledRule[];
  overrides: TenantOverride[];
}

const invalid = validationError;

const pathOf = (path: readonly PropertyKey[]): string =>
  path.map((p, i) => (typeof p === 'number' ? `[${p}]` : `${i === 0 ? '' : '.'}${String(p)}`)).join('') || '(document)';

/** A key from the named fields of an event, for grouping threshold counts and sequences. */
const grouper = (fields: string[]) => (e: GuardEvent): string => fields.map((f) => String(fieldOf(e, f) ?? '')).join('\u0000');

/** Splits an output template once into literal text and `%field` references. */
export function compileOutput(template: string): (event: GuardEvent) => string {
  const parts = template.split(/%([A-Za-z_][\w.-]*[\w])/);
  return (event) => {
    let out = '';
    for (let i = 0; i < parts.length; i++) out += i % 2 === 0 ? parts[i] : String(fieldOf(event, parts[i]!) ?? '<NA>');
    return out;
  };
}

/**
 * Parses and compiles one or more YAML rule documents (later documents may use
 * earlier lists and macros, as Falco's layered rules files do). Throws a
 * STRATA_ERR_VALIDATION naming the offending field.
 */
export function loadRuleset(...sources: string[]): Ruleset {
  const lists = new Map<string, string[]>();
  const macroSources = new Map<string, string>();
  const rules: z.output<typeof ruleSchema>[] = [];
  const overrides: TenantOverride[] = [];
  for (const source of sources) {
    let raw: unknown;
    try { raw = parseYaml(source); } catch (err) { throw invalid('(document)', `not valid YAML: ${(err as Error).message}`); }
    const parsed = rulesDocument.safeParse(raw ?? {});
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw invalid(pathOf(issue.path), issue.message);
    }
    for (const l of parsed.data.lists) lists.set(l.list, l.items);
    for (const m of parsed.data.macros) macroSources.set(m.macro, m.condition);
    rules.push(...parsed.data.rules);
    overrides.push(...parsed.data.overrides);
  }

  const macros = new Map<string, Condition>();
  for (const [name, cond] of macroSources) macros.set(name, parseOrThrow(cond, lists, `macros.${name}.condition`));
  const seen = new Set<string>();
  const compiled = rules.map((r, i): CompiledRule => {
    const at = `rules[${i}]`;
    if (seen.has(r.rule)) throw invalid(`${at}.rule`, `duplicate rule name '${r.rule}'`);
    seen.add(r.rule);
    const tree = parseOrThrow(r.condition, lists, `${at}.condition`);
    const condition = compileOrThrow(tree, macros, `${at}.condition`);
    const excepted = r.exceptions.map((x) => {
      const tuples = new Set(x.values.map((v, j) => {
        if (v.length !== x.fields.length) throw invalid(`${at}.exceptions.${x.name}.values[${j}]`, `needs ${x.fields.length} values, one per field`);
        return v.map(String).join('\u0000');
      }));
      const key = grouper(x.fields);
      return (e: GuardEvent) => tuples.has(key(e));
    });
    const matches: Predicate = excepted.length === 0 ? condition : (e) => condition(e) && !excepted.some((x) => x(e));
    return {
      name: r.rule, desc: r.desc, priority: r.priority, action: r.action, enabled: r.enabled, tags: r.tags,
      matches,
      kinds: kindsOf(tree, macros),
      render: compileOutput(r.output),
      ...(r.threshold ? { threshold: { count: r.threshold.count, windowMs: r.threshold.window, groupOf: grouper(r.threshold.by) } } : {}),
      ...(r.sequence ? {
        sequence: {
          steps: r.sequence.steps.map((s, j) => compileOrThrow(parseOrThrow(s, lists, `${at}.sequence.steps[${j}]`), macros, `${at}.sequence.steps[${j}]`)),
          windowMs: r.sequence.window,
          groupOf: grouper(r.sequence.by),
        },
      } : {}),
      ...(r.fixtures ? { fixtures: r.fixtures } : {}),
    };
  });
  for (const [i, o] of overrides.entries()) {
    if (!seen.has(o.rule)) throw invalid(`overrides[${i}].rule`, `no rule named '${o.rule}'`);
  }
  return { rules: compiled, overrides };
}

function parseOrThrow(source: string, lists: ReadonlyMap<string, string[]>, field: string): Condition {
  try { return parseCondition(source, lists); } catch (err) {
    if (err instanceof ConditionError) throw invalid(field, err.message);
    throw err;
  }
}

function compileOrThrow(tree: Condition, macros: ReadonlyMap<string, Condition>, field: string): Predicate {
  try { return compileCondition(tree, macros); } catch (err) {
    if (err instanceof ConditionError) throw invalid(field, err.message);
    throw err;
  }
}

/** Turns a fixture into the events it stands for, starting at `start` ms. */
export function fixtureEvents(fixture: readonly FixtureEvent[], start = 1_700_000_000_000): GuardEvent[] {
  const out: GuardEvent[] = [];
  let time = start;
  for (const f of fixture) {
    for (let n = 0; n < f.repeat; n++) {
      time += f.after;
      out.push({
        time, tenantId: f.tenantId, instanceId: f.instanceId, level: f.level, kind: f.kind,
        ...(f.priority ? { priority: f.priority } : {}), fields: { ...f.fields } as Record<string, FieldValue>,
      });
    }
  }
  return out;
}

/** Where the default ruleset lives: `rules/default.yaml` at the package root. */
export const DEFAULT_RULES_URL = new URL('../../../rules/default.yaml', import.meta.url);

/**
 * The default ruleset, compiled: every `rules/*.yaml` at the package root,
 * `default.yaml` first (its lists and macros are there for the others), then
 * the rest in name order — each area of the guard keeps its rules in its own file.
 */
export async function loadDefaultRuleset(): Promise<Ruleset> {
  const { readFile, readdir } = await import('node:fs/promises');
  const dir = new URL('./', DEFAULT_RULES_URL);
  const names = (await readdir(dir)).filter((n) => n.endsWith('.yaml') && n !== 'default.yaml').sort();
  const sources = await Promise.all(['default.yaml', ...names].map((n) => readFile(new URL(n, dir), 'utf8')));
  return loadRuleset(...sources);
}
