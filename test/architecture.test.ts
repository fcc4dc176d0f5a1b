/**
 * The shape of src/: dependencies between its top-level folders point one way.
 *
 *   core ← store, audit ← auth, levels, gateway ← control ← guard ← api ← daemon ← cli
 *
 * A folder may import its own files and folders further left, never one to its
 * right or beside it. Why this order:
 * - `core` (errors, event bus, keyed mutex, hashing, /proc, cgroups, validation) is
 *   what every layer may use, so it imports nothing of Strata.
 * - `store` and `audit` keep state; they know only core.
 * - `auth` (tokens, roles) reads users from the store; `levels` run instances and
 *   `gateway` serves sites: engines the control plane drives, each knowing only
 *   the store and core. The gateway sits here rather than beside the API because
 *   it imports nothing above core, and the control plane's front door and
 *   certificates are what program it.
 * - `control` (lifecycle, certificates, moves, front door) composes those.
 * - `guard` watches instances and acts through the control plane (its wiring
 *   reads lifecycle state and asks drivers to freeze or recover).
 * - `api` serves all of the above, the guard's alerts included.
 * - `daemon.ts` builds everything; `cli` runs the daemon in-process (`strata up`).
 *
 * Also: no cycle between folders (implied by the order, checked on its own so the
 * failure names the loop), no file under src/ longer than 600 lines, and nothing
 * outside src/levels/ names a level (an id of `levels/ids.ts` as a string
 * literal, comments included) or a driver class: the rest of Strata asks the
 * level registry, so a new level is a folder in src/levels/ and a line in its
 * registry, and nothing else branches on one.
 */
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { LEVEL_IDS } from '../src/levels/ids.js';

export const LAYERS: readonly (readonly string[])[] = [
  ['core'],
  ['store', 'audit'],
  ['auth', 'levels', 'gateway'],
  ['control'],
  ['guard'],
  ['api'],
  ['daemon'],
  ['cli'],
];
const MAX_LINES = 600;

const SRC = resolve(fileURLToPath(new URL('../../src/', import.meta.url)));

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? sources(p) : p.endsWith('.ts') ? [p] : [];
  });
}

/** The top-level folder of a file under src/ (a file directly in src/ counts as its own name: daemon.ts → daemon). */
export const folderOf = (file: string): string => {
  const parts = relative(SRC, file).split('/');
  return parts.length === 1 ? parts[0]!.replace(/\.ts$/, '') : parts[0]!;
};

/** Relative module specifiers a file imports or re-exports (static, dynamic, type-only or side-effect). */
export function importsOf(text: string): string[] {
  const out: string[] = [];
  const patterns = [
    /^\s*(?:import|export)\s[^;]*?\sfrom\s*['"]([^'"]+)['"]/gm,
    /^\s*import\s*['"]([^'"]+)['"]/gm,
    /\bimport\(\s*['"]([^'"]+)['"]\s*\)/g,
  ];
  for (const re of patterns) for (const m of text.matchAll(re)) if (m[1]!.startsWith('.')) out.push(m[1]!);
  return out;
}

export interface Edge { from: string; to: string; file: string; spec: string }

/** Every import that crosses from one top-level folder of src/ to another. */
export function crossingImports(files: readonly { path: string; text: string }[]): Edge[] {
  const edges: Edge[] = [];
  for (const f of files) {
    for (const spec of importsOf(f.text)) {
      const target = resolve(dirname(f.path), spec);
      if (!target.startsWith(SRC + '/')) continue;
      const from = folderOf(f.path);
      const to = folderOf(target.replace(/\.js$/, '.ts'));
      if (from !== to) edges.push({ from, to, file: relative(SRC, f.path), spec });
    }
  }
  return edges;
}

const rank = new Map(LAYERS.flatMap((names, i) => names.map((n) => [n, i] as const)));

/** Imports that go right or sideways in LAYERS, and folders LAYERS does not place. */
export function wrongWay(edges: readonly Edge[]): string[] {
  const bad: string[] = [];
  for (const e of edges) {
    const from = rank.get(e.from);
    const to = rank.get(e.to);
    if (from === undefined || to === undefined) bad.push(`${e.file}: '${from === undefined ? e.from : e.to}' is not placed in LAYERS`);
    else if (to >= from) bad.push(`${e.file} imports ${e.spec}: ${e.from} may not depend on ${e.to}`);
  }
  return bad;
}

/** Loops in the folder graph (strongly connected components of more than one folder). */
export function cycles(edges: readonly Edge[]): string[][] {
  const next = new Map<string, Set<string>>();
  for (const e of edges) (next.get(e.from) ?? next.set(e.from, new Set()).get(e.from)!).add(e.to);
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, index.size);
    low.set(v, index.get(v)!);
    stack.push(v);
    onStack.add(v);
    for (const w of next.get(v) ?? []) {
      if (!index.has(w)) { visit(w); low.set(v, Math.min(low.get(v)!, low.get(w)!)); }
      else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const scc: string[] = [];
      let w: string;
      do { w = stack.pop()!; onStack.delete(w); scc.push(w); } while (w !== v);
      if (scc.length > 1) found.push(scc.sort());
    }
  };
  for (const v of next.keys()) if (!index.has(v)) visit(v);
  return found;
}

/**
 * Places outside src/levels/ where a level id is spelled for another reason,
 * each with why (file relative to src/, the literal as written).
 */
const NOT_A_LEVEL: readonly { file: string; literal: string; why: string }[] = [
  { file: 'cli/exec.ts', literal: "'env'", why: 'the exec query parameter carrying environment variables' },
];

/** Driver classes: every `class …Driver` under src/levels/. */
export const driverClasses = (files: readonly { path: string; text: string }[]): string[] =>
  files.filter((f) => folderOf(f.path) === 'levels').flatMap((f) => [...f.text.matchAll(/\bclass\s+(\w+Driver)\b/g)].map((m) => m[1]!));

/** Level ids as string literals, and driver class names, in files outside src/levels/ ("file:line: what"). */
export function levelNames(files: readonly { path: string; text: string }[], levels: readonly string[], classes: readonly string[]): string[] {
  const literal = new RegExp(`(['"\`])(?:${levels.join('|')})\\1`, 'g');
  const klass = classes.length > 0 ? new RegExp(`\\b(?:${classes.join('|')})\\b`, 'g') : null;
  const found: string[] = [];
  for (const f of files) {
    if (folderOf(f.path) === 'levels') continue;
    const file = relative(SRC, f.path);
    f.text.split('\n').forEach((line, i) => {
      for (const m of line.matchAll(literal)) {
        if (!NOT_A_LEVEL.some((n) => n.file === file && n.literal === m[0])) found.push(`${file}:${i + 1}: level ${m[0]}`);
      }
      for (const m of klass ? line.matchAll(klass) : []) found.push(`${file}:${i + 1}: driver class ${m[0]}`);
    });
  }
  return found;
}

const files = sources(SRC).map((path) => ({ path, text: readFileSync(path, 'utf8') }));
const edges = crossingImports(files);

test('every import between top-level folders of src/ goes the way LAYERS says', () => {
  assert.ok(edges.length > 50, 'the import parser finds the imports');
  assert.deepEqual(wrongWay(edges), []);
});

test('no cycle between top-level folders of src/', () => {
  assert.deepEqual(cycles(edges), []);
});

test(`no file under src/ is longer than ${MAX_LINES} lines`, () => {
  const long = files
    .map((f) => ({ file: relative(SRC, f.path), lines: f.text.split('\n').length - (f.text.endsWith('\n') ? 1 : 0) }))
    .filter((f) => f.lines > MAX_LINES)
    .map((f) => `${f.file}: ${f.lines} lines`);
  assert.deepEqual(long, []);
});

test('nothing outside src/levels/ names a level or a driver class', () => {
  const classes = driverClasses(files);
  assert.ok(classes.length >= 4, `the driver classes are found (${classes.join(', ')})`);
  assert.deepEqual(levelNames(files, LEVEL_IDS, classes), []);
});

test('the level-name check catches a literal in any quotes and a driver class, and leaves src/levels/ and other words alone', () => {
  const file = (path: string, text: string) => ({ path: join(SRC, path), text });
  const found = levelNames([
    file('control/a.ts', "if (i.level === 'vm') return;\nconst ok = 'vms';"),
    file('api/b.ts', 'const x = { level: "os" };\nconst y = `emu`;'),
    file('guard/c.ts', "import type { OsDriver } from '../levels/os/driver.js';\nconst d: LevelDriver = null!;"),
    file('levels/os/module.ts', "export const osLevel = { id: 'os' };\nclass OsDriver {}"),
    file('cli/exec.ts', "query.push(['env', e]);"),
  ], LEVEL_IDS, ['OsDriver']);
  assert.deepEqual(found, [
    "control/a.ts:1: level 'vm'",
    'api/b.ts:1: level "os"',
    'api/b.ts:2: level `emu`',
    'guard/c.ts:1: driver class OsDriver',
  ]);
});

test('the checks catch a wrong-way import, a sideways one, an unplaced folder and a cycle', () => {
  const file = (path: string, text: string) => ({ path: join(SRC, path), text });
  const bad = crossingImports([
    file('store/x.ts', "import type { Reconciler } from '../control/lifecycle/reconciler.js';"),
    file('levels/y.ts', "export { thing } from '../gateway/index.js';"),
    file('control/z.ts', "const m = await import('../newthing/a.js');"),
    file('core/w.ts', "import '../store/sqlite.js';"),
    file('control/ok.ts', "import { StrataError } from '../core/errors.js';"),
  ]);
  assert.deepEqual(wrongWay(bad), [
    'store/x.ts imports ../control/lifecycle/reconciler.js: store may not depend on control',
    'levels/y.ts imports ../gateway/index.js: levels may not depend on gateway',
    "control/z.ts: 'newthing' is not placed in LAYERS",
    'core/w.ts imports ../store/sqlite.js: core may not depend on store',
  ]);
  const loop = crossingImports([
    file('store/a.ts', "import { x } from '../core/b.js';"),
    file('core/b.ts', "import { y } from '../store/a.js';"),
  ]);
  assert.deepEqual(cycles(loop), [['core', 'store']]);
});
