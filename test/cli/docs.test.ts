/**
 * docs/cli.md against the CLI's own help (as test/errors.test.ts keeps
 * docs/errors.md in sync with the codes): every command and option that
 * `strata … --help` lists appears in the page, and the page lists no command or
 * option the CLI does not have.
 *
 * The page's shape that this reads: the "Global flags" table's first column
 * names the program's own options; the "Commands" table's first column holds
 * usages in backticks, `group command ARGS [--option VALUE]`, where `a\|b`
 * names several commands at once. An option is documented for a command by its
 * long or its short flag in one of that command's usages.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import type { Command, Option } from 'commander';
import { buildProgram } from '../../src/cli/main.js';

const doc = readFileSync(new URL('../../../docs/cli.md', import.meta.url), 'utf8');

/** The first cells of the table under `## heading`. */
function firstCells(heading: string): string[] {
  const section = doc.split(/^## /m).find((s) => s.startsWith(`${heading}\n`));
  assert.ok(section, `docs/cli.md has a "## ${heading}" section`);
  return section.split('\n').filter((l) => l.startsWith('| ') && !/^\|[-| ]+\|$/.test(l)).slice(1)
    .map((l) => /^\| (.*?) \| /.exec(l.replace(/\\\|/g, '\u0000'))?.[1]?.replace(/\u0000/g, '|') ?? '');
}

const spans = (cell: string): string[] => [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1]!);
const flagsIn = (text: string): string[] => [...text.matchAll(/(?<![\w-])(--?[a-zA-Z][\w-]*)/g)].map((m) => m[1]!);

/** What a usage names: its command paths (alternatives expanded) and its flags. */
function parseUsage(usage: string): { paths: string[][]; flags: string[] } {
  const words: string[][] = [];
  for (const token of usage.split(/\s+/)) {
    if (!/^[a-z][a-z-]*(\|[a-z][a-z-]*)*$/.test(token)) break;
    words.push(token.split('|'));
  }
  const paths = words.reduce<string[][]>((acc, alternatives) => acc.flatMap((p) => alternatives.map((w) => [...p, w])), [[]]);
  return { paths, flags: flagsIn(usage) };
}

const visibleCommands = (c: Command): Command[] => c.createHelp().visibleCommands(c).filter((s) => s.name() !== 'help');
/** The options help lists, but commander's own --help. */
const visibleOptions = (c: Command): Option[] => c.createHelp().visibleOptions(c).filter((o) => o.long !== '--help');
const flagsOf = (o: Option): string[] => [o.long, o.short].filter((f): f is string => !!f);

/** Every command that runs something (has no subcommands), by its path. */
function leaves(c: Command, path: string[] = []): Array<{ path: string; command: Command }> {
  return visibleCommands(c).flatMap((s) => {
    const p = [...path, s.name()];
    return visibleCommands(s).length === 0 ? [{ path: p.join(' '), command: s }] : leaves(s, p);
  });
}

const program = buildProgram();
const commands = new Map(leaves(program).map((l) => [l.path, l.command]));
/** Each documented command path with the flags its usages give it. */
const documented = new Map<string, Set<string>>();
for (const cell of firstCells('Commands')) {
  for (const usage of spans(cell)) {
    const { paths, flags } = parseUsage(usage);
    for (const p of paths) {
      const path = p.join(' ');
      const known = documented.get(path) ?? new Set<string>();
      for (const f of flags) known.add(f);
      documented.set(path, known);
    }
  }
}

test('the page was read: usages and commands found', () => {
  assert.ok(commands.size > 40, `${commands.size} commands in the CLI`);
  assert.ok(documented.size > 40, `${documented.size} command paths in docs/cli.md`);
});

test('every command the CLI has is in docs/cli.md, with every option its help lists', () => {
  for (const [path, command] of commands) {
    const flags = documented.get(path);
    assert.ok(flags, `docs/cli.md does not list \`${path}\``);
    for (const option of visibleOptions(command)) {
      assert.ok(flagsOf(option).some((f) => flags.has(f)), `docs/cli.md does not list ${option.flags} of \`${path}\``);
    }
  }
});

test('docs/cli.md lists no command and no option the CLI does not have', () => {
  const globals = new Set(visibleOptions(program).flatMap(flagsOf));
  for (const [path, flags] of documented) {
    const command = commands.get(path);
    assert.ok(command, `docs/cli.md lists \`${path}\`, which is no strata command`);
    const own = new Set(visibleOptions(command).flatMap(flagsOf));
    for (const f of flags) assert.ok(own.has(f) || globals.has(f), `docs/cli.md gives \`${path}\` ${f}, which it does not take`);
  }
});

test('the global flags in docs/cli.md are the program\'s own options', () => {
  const listed = new Set(firstCells('Global flags').flatMap((cell) => spans(cell).flatMap(flagsIn)));
  const globals = visibleOptions(program);
  for (const option of globals) assert.ok(flagsOf(option).some((f) => listed.has(f)), `docs/cli.md does not list the global ${option.flags}`);
  const own = new Set(globals.flatMap(flagsOf));
  for (const f of listed) assert.ok(own.has(f), `docs/cli.md lists the global flag ${f}, which strata does not take`);
});
