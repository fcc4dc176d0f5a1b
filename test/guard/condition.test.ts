import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compileCondition, ConditionError, globToRegExp, kindsOf, parseCondition } from '../../src/guard/condition.js';
import { event } from './fakes.js';

const lists = new Map([['shells', ['sh', 'bash']]]);
const check = (cond: string, fields: Record<string, string | number | boolean>, macros = new Map()) =>
  compileCondition(parseCondition(cond, lists), macros)(event('process.exec', fields));

test('comparisons: = != < <= > >= startswith endswith contains glob exists', () => {
  assert.equal(check('proc.name = sh', { 'proc.name': 'sh' }), true);
  assert.equal(check('proc.name = "sh"', { 'proc.name': 'bash' }), false);
  assert.equal(check('proc.name != sh', { 'proc.name': 'bash' }), true);
  assert.equal(check('proc.name != sh', {}), false, 'a missing field compares false');
  assert.equal(check('net.dport < 1024', { 'net.dport': 80 }), true);
  assert.equal(check('net.dport >= 1024', { 'net.dport': 80 }), false);
  assert.equal(check('net.dport <= 80 and net.dport > 79', { 'net.dport': 80 }), true);
  assert.equal(check('file.path startswith /usr/bin/', { 'file.path': '/usr/bin/ls' }), true);
  assert.equal(check('file.path endswith .conf', { 'file.path': '/etc/a.conf' }), true);
  assert.equal(check("proc.cmdline contains 'rm -rf'", { 'proc.cmdline': 'sh -c rm -rf /' }), true);
  assert.equal(check('file.path glob "/etc/*.conf"', { 'file.path': '/etc/a.conf' }), true);
  assert.equal(check('file.path glob "/etc/*.conf"', { 'file.path': '/etc/x/a.conf' }), false);
  assert.equal(check('file.path glob "/etc/**.conf"', { 'file.path': '/etc/x/a.conf' }), true);
  assert.equal(check('proc.tty exists', { 'proc.tty': 0 }), true);
  assert.equal(check('proc.tty exists', {}), false);
  assert.equal(check('ok = true', { ok: true }), true, 'booleans compare by their text');
  assert.equal(check('kind = process.exec and instance.id = i1 and tenant.id = t1 and level = os', {}), true);
});

test('in (...) expands lists; and/or/not precedence and parentheses', () => {
  assert.equal(check('proc.name in (shells, zsh)', { 'proc.name': 'bash' }), true);
  assert.equal(check('proc.name in (shells, zsh)', { 'proc.name': 'zsh' }), true);
  assert.equal(check('proc.name in (shells)', { 'proc.name': 'node' }), false);
  assert.equal(check('a = 1 or a = 2 and b = 3', { a: 1, b: 0 }), true, 'and binds tighter than or');
  assert.equal(check('(a = 1 or a = 2) and b = 3', { a: 1, b: 0 }), false);
  assert.equal(check('not a = 1 and b = 3', { a: 2, b: 3 }), true);
  assert.equal(check('not (a = 1 or b = 3)', { a: 2, b: 3 }), false);
});

test('macros by name, refused when unknown or self-referring', () => {
  const macros = new Map([['is_shell', parseCondition('proc.name in (shells)', lists)]]);
  assert.equal(check('is_shell and not proc.pname = sshd', { 'proc.name': 'sh', 'proc.pname': 'php' }, macros), true);
  assert.throws(() => check('no_such_macro', {}), /neither a macro/);
  const loop = new Map([['m', parseCondition('m or a = 1')]]);
  assert.throws(() => check('m', {}, loop), /refers to itself/);
});

test('syntax errors say what was expected and where', () => {
  assert.throws(() => parseCondition('a = '), (e: unknown) => e instanceof ConditionError && /expected a value, found the end/.test(e.message));
  assert.throws(() => parseCondition('(a = 1'), /expected '\)'/);
  assert.throws(() => parseCondition('a = 1 b = 2'), /expected the end.*at character 6/);
  assert.throws(() => parseCondition('a in 1'), /expected '\(' after 'in'/);
  assert.throws(() => parseCondition("a = 'x"), /unterminated string/);
  assert.throws(() => parseCondition(''), /empty condition/);
  assert.throws(() => parseCondition('and = 1'), /expected a field or macro name/);
});

test('globs: * stays within a segment, ** crosses them, ? is one character, the rest is literal', () => {
  assert.ok(globToRegExp('/var/www/**').test('/var/www/a/b.php'));
  assert.ok(!globToRegExp('/var/*/x').test('/var/a/b/x'));
  assert.ok(globToRegExp('/a?c').test('/abc'));
  assert.ok(!globToRegExp('/a.c').test('/abc'), 'a dot is a dot');
});

test('kindsOf reads the kinds a condition can match, for indexing', () => {
  assert.deepEqual([...kindsOf(parseCondition('kind = a and x = 1'))!], ['a']);
  assert.deepEqual([...kindsOf(parseCondition('kind in (a, b) and (kind = b or kind = c)'))!], ['b']);
  assert.equal(kindsOf(parseCondition('kind = a or x = 1')), null);
  assert.equal(kindsOf(parseCondition('not kind = a')), null);
});
