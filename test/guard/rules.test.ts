import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StrataError } from '../../src/core/errors.js';
import { Evaluator, testRuleFixtures } from '../../src/guard/evaluator.js';
import { loadDefaultRuleset, loadRuleset } from '../../src/guard/rules.js';
import { event } from './fakes.js';

const rule = (extra: string) => `
rules:
  - rule: r
    desc: d
    condition: kind = x
    priority: warning
    output: o
${extra}`;

const fieldOfError = (fn: () => unknown): string => {
  try { fn(); } catch (err) {
    assert.ok(err instanceof StrataError, String(err));
    assert.equal(err.code, 'STRATA_ERR_VALIDATION');
    return (err.details!.issues as { field: string }[])[0]!.field;
  }
  assert.fail('expected a validation error');
};

test('schema errors name the offending field', () => {
  assert.equal(fieldOfError(() => loadRuleset(rule('    actoin: freeze'))), 'rules[0]');
  assert.match(String((() => { try { loadRuleset(rule('    actoin: freeze')); } catch (e) { return (e as Error).message; } })()), /actoin/);
  assert.equal(fieldOfError(() => loadRuleset(rule('    priority: urgent').replace('    priority: warning\n', ''))), 'rules[0].priority');
  assert.equal(fieldOfError(() => loadRuleset(rule('    threshold: { count: 0, window: 1s }'))), 'rules[0].threshold.count');
  assert.equal(fieldOfError(() => loadRuleset(rule('    threshold: { count: 3, window: soon }'))), 'rules[0].threshold.window');
  assert.equal(fieldOfError(() => loadRuleset(rule('').replace('kind = x', 'kind = '))), 'rules[0].condition');
  assert.equal(fieldOfError(() => loadRuleset(rule('').replace('kind = x', 'undefined_macro'))), 'rules[0].condition');
  assert.equal(fieldOfError(() => loadRuleset(rule('') + '  - { rule: r, desc: d, condition: a = 1, priority: info, output: o }')), 'rules[1].rule');
  assert.equal(fieldOfError(() => loadRuleset(rule('') + 'overrides: [{ tenant: t, rule: nope }]')), 'overrides[0].rule');
  assert.equal(fieldOfError(() => loadRuleset('macros: [{ macro: m, condition: "a = (" }]')), 'macros.m.condition');
  assert.equal(fieldOfError(() => loadRuleset('rulez: []')), '(document)');
  assert.equal(fieldOfError(() => loadRuleset(rule('    exceptions: [{ name: e, fields: [a, b], values: [[1]] }]'))), 'rules[0].exceptions.e.values[0]');
});

test('output templates substitute %fields; exceptions suppress; overrides disable or change the action per tenant', () => {
  const set = loadRuleset(`
rules:
  - rule: exec
    desc: d
    condition: kind = process.exec
    priority: error
    output: "%proc.name ran in %instance.id (%missing.field)."
    action: freeze
    exceptions: [{ name: cron, fields: [proc.name, proc.pname], values: [[bash, cron]] }]
overrides:
  - { tenant: quiet, rule: exec, enabled: false }
  - { tenant: gentle, rule: exec, action: notify }
`);
  const evaluator = new Evaluator(set);
  const w = (e: ReturnType<typeof event>) => ({ event: e, count: 1, firstTime: e.time, lastTime: e.time });
  const [m] = evaluator.evaluate(w(event('process.exec', { 'proc.name': 'bash', 'proc.pname': 'php' })));
  assert.equal(m!.output, 'bash ran in i1 (<NA>).');
  assert.equal(m!.action, 'freeze');
  assert.equal(evaluator.evaluate(w(event('process.exec', { 'proc.name': 'bash', 'proc.pname': 'cron' }))).length, 0);
  assert.equal(evaluator.evaluate(w(event('process.exec', { 'proc.name': 'bash' }, { tenantId: 'quiet' }))).length, 0);
  assert.equal(evaluator.evaluate(w(event('process.exec', { 'proc.name': 'bash' }, { tenantId: 'gentle' })))[0]!.action, 'notify');
  evaluator.setOverride({ tenant: 'quiet', rule: 'exec', enabled: true });
  assert.equal(evaluator.evaluate(w(event('process.exec', { 'proc.name': 'bash' }, { tenantId: 'quiet' }))).length, 1);
});

test('every default rule fires on each of its fixtures, and its benign fixtures fire no rule at all', async () => {
  const set = await loadDefaultRuleset();
  assert.ok(set.rules.length >= 10);
  for (const r of set.rules) {
    assert.ok(r.fixtures, `${r.name} has fixtures`);
    const result = testRuleFixtures(set, r);
    assert.ok(result.fires.length > 0 && result.fires.every(Boolean), `${r.name} fires on its fixtures: ${JSON.stringify(result.fires)}`);
    assert.ok(result.benign.length > 0 && result.benign.every((fired) => fired.length === 0), `${r.name}'s benign fixtures fire nothing: ${JSON.stringify(result.benign)}`);
  }
  for (const name of ['Tampered content recovered', 'Strata files changed', 'Checksum DB tampered', 'Request smuggling attempts']) {
    assert.ok(set.rules.some((r) => r.name === name), `rules/integrity.yaml is loaded with the default ruleset: ${name}`);
  }
  assert.equal(set.rules.find((r) => r.name === 'Tampered content recovered')!.action, 'recover');
  for (const kind of ['file.write', 'process.exec', 'net.connect', 'isolate.limit', 'integrity.mismatch', 'kernel.text', 'gateway.reject']) {
    assert.ok(set.rules.some((r) => r.kinds?.has(kind)), `some default rule covers ${kind}`);
  }
});
