/**
 * The rule condition language, in the spirit of Falco's: comparisons over
 * event fields joined by `and` / `or` / `not` and parentheses.
 *
 *     kind = process.exec and proc.name in (shell_binaries) and not proc.pname = sshd
 *     file.path startswith /usr/bin or file.path glob "/etc/**.conf"
 *
 * Operators: `=`, `!=`, `<`, `<=`, `>`, `>=` (numeric), `in (a, b, list_name)`,
 * `startswith`, `endswith`, `contains`, `glob` (`*` within a path segment, `**`
 * across segments, `?` one character), and `exists`. A bare name that is a macro
 * stands for the macro's condition; a name inside `in (...)` that is a list
 * expands to the list's items. Values are bare words or quoted strings.
 *
 * A condition is parsed once into an AST and compiled into closures — no
 * `eval`, nothing re-parsed per event. A comparison on a field the event lacks
 * is false.
 */
import { fieldOf, type GuardEvent } from '../core/guard-event.js';

export type Condition =
  | { type: 'and' | 'or'; left: Condition; right: Condition }
  | { type: 'not'; operand: Condition }
  | { type: 'compare'; field: string; op: CompareOp; value: string }
  | { type: 'in'; field: string; values: string[] }
  | { type: 'exists'; field: string }
  | { type: 'macro'; name: string };

export const COMPARE_OPS = ['=', '!=', '<', '<=', '>', '>=', 'startswith', 'endswith', 'contains', 'glob'] as const;
export type CompareOp = (typeof COMPARE_OPS)[number];

export type Predicate = (event: GuardEvent) => boolean;

/** A condition that does not parse or names an unknown macro or list; `position` is a character offset. */
export class ConditionError extends Error {
  constructor(message: string, readonly position?: number) {
    super(position === undefined ? message : `${message} (at character ${position})`);
    this.name = 'ConditionError';
  }
}

type Token = { kind: 'word' | 'string' | 'op' | '(' | ')' | ','; text: string; pos: number };

const OPERATOR_CHARS = /^(!=|<=|>=|=|<|>)/;
const WORD_STOP = /[\s(),'"=!<>]/;

function tokenize(source: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < source.length) {
    const c = source[i]!;
    if (/\s/.test(c)) { i++; continue; }
    if (c === '(' || c === ')' || c === ',') { tokens.push({ kind: c, text: c, pos: i }); i++; continue; }
    if (c === '"' || c === "'") {
      const end = source.indexOf(c, i + 1);
      if (end < 0) throw new ConditionError('unterminated string', i);
      tokens.push({ kind: 'string', text: source.slice(i + 1, end), pos: i });
      i = end + 1;
      continue;
    }
    const op = OPERATOR_CHARS.exec(source.slice(i, i + 2));
    if (op) { tokens.push({ kind: 'op', text: op[1]!, pos: i }); i += op[1]!.length; continue; }
    let j = i;
    while (j < source.length && !WORD_STOP.test(source[j]!)) j++;
    if (j === i) throw new ConditionError(`unexpected character '${c}'`, i);
    tokens.push({ kind: 'word', text: source.slice(i, j), pos: i });
    i = j;
  }
  return tokens;
}

const WORD_OPS = new Set<string>(['startswith', 'endswith', 'contains', 'glob']);
const KEYWORDS = new Set(['and', 'or', 'not', 'in', 'exists', ...WORD_OPS]);

/** Parses a condition; `lists` expands list names inside `in (...)`. */
export function parseCondition(source: string, lists: ReadonlyMap<string, readonly string[]> = new Map()): Condition {
  const tokens = tokenize(source);
  let at = 0;
  const peek = (): Token | undefined => tokens[at];
  const isWord = (t: Token | undefined, w: string): boolean => t?.kind === 'word' && t.text === w;
  const fail = (what: string): never => {
    const t = peek();
    throw new ConditionError(t ? `${what}, found '${t.text}'` : `${what}, found the end`, t?.pos ?? source.length);
  };

  const parseOr = (): Condition => {
    let left = parseAnd();
    while (isWord(peek(), 'or')) { at++; left = { type: 'or', left, right: parseAnd() }; }
    return left;
  };
  const parseAnd = (): Condition => {
    let left = parseNot();
    while (isWord(peek(), 'and')) { at++; left = { type: 'and', left, right: parseNot() }; }
    return left;
  };
  const parseNot = (): Condition => {
    if (isWord(peek(), 'not')) { at++; return { type: 'not', operand: parseNot() }; }
    return parsePrimary();
  };
  const parseValue = (): string => {
    const t = peek();
    if (t?.kind === 'word' || t?.kind === 'string') { at++; return t.text; }
    return fail('expected a value');
  };
  const parsePrimary = (): Condition => {
    const t = peek();
    if (t?.kind === '(') {
      at++;
      const inner = parseOr();
      if (peek()?.kind !== ')') fail("expected ')'");
      at++;
      return inner;
    }
    if (t?.kind !== 'word' || KEYWORDS.has(t.text)) return fail('expected a field or macro name');
    at++;
    const field = t.text;
    const next = peek();
    if (next?.kind === 'op') { at++; return { type: 'compare', field, op: next.text as CompareOp, value: parseValue() }; }
    if (next?.kind === 'word' && WORD_OPS.has(next.text)) { at++; return { type: 'compare', field, op: next.text as CompareOp, value: parseValue() }; }
    if (isWord(next, 'exists')) { at++; return { type: 'exists', field }; }
    if (isWord(next, 'in')) {
      at++;
      if (peek()?.kind !== '(') fail("expected '(' after 'in'");
      at++;
      const values: string[] = [];
      while (peek()?.kind !== ')') {
        const item = peek();
        const value = parseValue();
        const list = item?.kind === 'word' ? lists.get(value) : undefined;
        if (list) values.push(...list); else values.push(value);
        if (peek()?.kind === ',') at++;
        else if (peek()?.kind !== ')') fail("expected ',' or ')'");
      }
      at++;
      return { type: 'in', field, values };
    }
    return { type: 'macro', name: field };
  };

  if (tokens.length === 0) throw new ConditionError('empty condition', 0);
  const tree = parseOr();
  if (at < tokens.length) fail('expected the end of the condition');
  return tree;
}

/** `*` matches within one path segment, `**` across segments, `?` one character; the whole value must match. */
export function globToRegExp(glob: string): RegExp {
  let out = '^';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*' && glob[i + 1] === '*') { out += '.*'; i++; }
    else if (c === '*') out += '[^/]*';
    else if (c === '?') out += '[^/]';
    else out += c.replace(/[\\^$.|+(){}[\]]/g, '\\$&');
  }
  return new RegExp(out + '$');
}

/**
 * Compiles a condition into one closure. `macros` maps names to their parsed
 * conditions; a macro that refers to itself, directly or not, is refused.
 */
export function compileCondition(tree: Condition, macros: ReadonlyMap<string, Condition> = new Map()): Predicate {
  const expanding = new Set<string>();
  const compile = (node: Condition): Predicate => {
    switch (node.type) {
      case 'and': { const l = compile(node.left), r = compile(node.right); return (e) => l(e) && r(e); }
      case 'or': { const l = compile(node.left), r = compile(node.right); return (e) => l(e) || r(e); }
      case 'not': { const inner = compile(node.operand); return (e) => !inner(e); }
      case 'exists': { const f = node.field; return (e) => fieldOf(e, f) !== undefined; }
      case 'in': {
        const f = node.field, set = new Set(node.values);
        return (e) => { const v = fieldOf(e, f); return v !== undefined && set.has(String(v)); };
      }
      case 'macro': {
        const body = macros.get(node.name);
        if (!body) throw new ConditionError(`'${node.name}' is neither a macro nor followed by an operator`);
        if (expanding.has(node.name)) throw new ConditionError(`macro '${node.name}' refers to itself`);
        expanding.add(node.name);
        const compiled = compile(body);
        expanding.delete(node.name);
        return compiled;
      }
      case 'compare': return compileCompare(node.field, node.op, node.value);
    }
  };
  return compile(tree);
}

function compileCompare(f: string, op: CompareOp, value: string): Predicate {
  const str = (e: GuardEvent): string | undefined => { const v = fieldOf(e, f); return v === undefined ? undefined : String(v); };
  const num = (e: GuardEvent): number => { const v = fieldOf(e, f); return v === undefined ? Number.NaN : Number(v); };
  const n = Number(value);
  switch (op) {
    case '=': return (e) => str(e) === value;
    case '!=': return (e) => { const v = str(e); return v !== undefined && v !== value; };
    case '<': return (e) => num(e) < n;
    case '<=': return (e) => num(e) <= n;
    case '>': return (e) => num(e) > n;
    case '>=': return (e) => num(e) >= n;
    case 'startswith': return (e) => str(e)?.startsWith(value) ?? false;
    case 'endswith': return (e) => str(e)?.endsWith(value) ?? false;
    case 'contains': return (e) => str(e)?.includes(value) ?? false;
    case 'glob': { const re = globToRegExp(value); return (e) => { const v = str(e); return v !== undefined && re.test(v); }; }
  }
}

/**
 * The event kinds a condition can match at all, or null when it may match any
 * kind. Read from `kind = X` / `kind in (...)` conjuncts so the evaluator can
 * index rules by kind and skip the rest.
 */
export function kindsOf(tree: Condition, macros: ReadonlyMap<string, Condition> = new Map(), seen = new Set<string>()): Set<string> | null {
  switch (tree.type) {
    case 'compare': return tree.field === 'kind' && tree.op === '=' ? new Set([tree.value]) : null;
    case 'in': return tree.field === 'kind' ? new Set(tree.values) : null;
    case 'and': {
      const l = kindsOf(tree.left, macros, seen), r = kindsOf(tree.right, macros, seen);
      if (l && r) return new Set([...l].filter((k) => r.has(k)));
      return l ?? r;
    }
    case 'or': {
      const l = kindsOf(tree.left, macros, seen), r = kindsOf(tree.right, macros, seen);
      return l && r ? new Set([...l, ...r]) : null;
    }
    case 'macro': {
      const body = macros.get(tree.name);
      if (!body || seen.has(tree.name)) return null;
      return kindsOf(body, macros, new Set([...seen, tree.name]));
    }
    default: return null;
  }
}
