import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Evaluator } from '../../src/guard/evaluator.js';
import type { GuardEvent } from '../../src/core/guard-event.js';
import { loadRuleset } from '../../src/guard/rules.js';
import { event } from './fakes.js';

const at = (e: GuardEvent, time: number, count = 1) => ({ event: { ...e, time }, count, firstTime: time, lastTime: time });

test('threshold: fires when the count within the window reaches it, per group, counting aggregated warnings, then resets', () => {
  const evaluator = new Evaluator(loadRuleset(`
rules:
  - { rule: burst, desc: d, condition: kind = process.exec, priority: critical, output: o, threshold: { count: 5, window: 1s, by: [instance.id] } }
`));
  const a = event('process.exec'), b = event('process.exec', {}, { instanceId: 'i2' });
  const fired: number[] = [];
  for (let i = 0; i < 4; i++) assert.equal(evaluator.evaluate(at(a, 1000 + i)).length, 0);
  assert.equal(evaluator.evaluate(at(b, 1004)).length, 0, 'another instance has its own count');
  const [m] = evaluator.evaluate(at(a, 1005));
  assert.equal(m!.count, 5);
  fired.push(m!.count);
  for (let i = 0; i < 4; i++) assert.equal(evaluator.evaluate(at(a, 1010 + i)).length, 0, 'the tally restarted');
  assert.equal(evaluator.evaluate(at(a, 3000)).length, 0, 'older matches left the window');
  assert.equal(evaluator.evaluate(at(a, 3001, 10))[0]!.count, 11, 'an aggregated warning counts as its count');
});

test('sequence: fires when the steps happen in order within the window, per group', () => {
  const evaluator = new Evaluator(loadRuleset(`
rules:
  - rule: dropper
    desc: d
    condition: kind in (file.write, process.exec)
    priority: critical
    output: "%proc.exe"
    sequence: { steps: ["kind = file.write and file.path startswith /tmp/", "kind = process.exec and proc.exe startswith /tmp/"], window: 10s }
`));
  const write = event('file.write', { 'file.path': '/tmp/x' });
  const exec = event('process.exec', { 'proc.exe': '/tmp/x' });
  assert.equal(evaluator.evaluate(at(exec, 0)).length, 0, 'second step first: nothing');
  assert.equal(evaluator.evaluate(at(write, 1)).length, 0);
  assert.equal(evaluator.evaluate(at({ ...exec, instanceId: 'other' }, 2)).length, 0, 'another instance is another sequence');
  assert.equal(evaluator.evaluate(at(exec, 3))[0]!.output, '/tmp/x');
  assert.equal(evaluator.evaluate(at(exec, 4)).length, 0, 'completed sequences restart');
  assert.equal(evaluator.evaluate(at(write, 100)).length, 0);
  assert.equal(evaluator.evaluate(at(exec, 20_000)).length, 0, 'too late: the window passed');
});
