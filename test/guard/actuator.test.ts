import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { Actuator } from '../../src/guard/actuator.js';
import type { Match } from '../../src/guard/evaluator.js';
import { event, FakeTarget, MemoryAudit, recordingBus } from './fakes.js';

const match = (action: Match['action'], instanceId: string | null = 'i1'): Match => ({
  rule: 'r', priority: 'critical', action, output: 'bad thing', event: event('process.exec', { 'proc.name': 'sh' }, { instanceId }), count: 1, tags: [],
});

test('every alert and action goes to the target, the audit log (as the guard) and the event bus', async () => {
  const target = new FakeTarget(), audit = new MemoryAudit(), { bus, published } = recordingBus();
  const actuator = new Actuator({ target, audit, events: bus });
  const alert = actuator.handle(match('snapshot'));
  await actuator.settled();
  assert.equal(target.alerts[0], alert);
  assert.deepEqual(target.calls, ['snapshot i1']);
  assert.deepEqual(audit.entries.map((e) => [e.action, e.result, e.target]), [['guard.alert', 'ok', 'i1'], ['guard.snapshot', 'ok', 'i1']]);
  assert.deepEqual(audit.entries[0]!.actor, { userId: null, name: 'guard', role: 'system' });
  assert.deepEqual((audit.entries[0]!.details as { evidence: unknown }).evidence, { 'proc.name': 'sh' });
  assert.equal(alert.auditIndex, 0);
  assert.deepEqual(published.map((e) => [e.category, e.type, e.tenantId]), [['alert', 'guard.alert', 't1'], ['alert', 'guard.snapshot', 't1']]);
  await actuator.stop();
});

test('without an instance an alert is notify-only', async () => {
  const target = new FakeTarget();
  const actuator = new Actuator({ target, audit: new MemoryAudit(), events: recordingBus().bus });
  assert.equal(actuator.handle(match('stop', null)).action, 'notify');
  await actuator.settled();
  assert.deepEqual(target.calls, []);
});

test('freeze undoes itself after freezeMs; stop cancels the undo', async () => {
  const target = new FakeTarget(), audit = new MemoryAudit();
  const actuator = new Actuator({ target, audit, events: recordingBus().bus, freezeMs: 30 });
  actuator.handle(match('freeze', 'a'));
  actuator.handle(match('freeze', 'b'));
  await actuator.settled();
  actuator.handle(match('stop', 'b'));
  await sleep(80);
  await actuator.settled();
  assert.deepEqual(target.calls, ['freeze a', 'freeze b', 'stop b', 'resume a']);
  assert.ok(audit.entries.some((e) => e.action === 'guard.resume' && e.target === 'a'));
  await actuator.stop();
});

test('stopping the actuator resumes what it froze', async () => {
  const target = new FakeTarget();
  const actuator = new Actuator({ target, audit: new MemoryAudit(), events: recordingBus().bus, freezeMs: 60_000 });
  actuator.handle(match('freeze'));
  await actuator.settled();
  await actuator.stop();
  assert.deepEqual(target.calls, ['freeze i1', 'resume i1']);
});

test('repeat offenders escalate notify → freeze → stop', async () => {
  const target = new FakeTarget();
  const actuator = new Actuator({ target, audit: new MemoryAudit(), events: recordingBus().bus, escalateAfter: 2, freezeMs: 60_000 });
  const actions = Array.from({ length: 7 }, () => actuator.handle(match('notify')).action);
  assert.deepEqual(actions, ['notify', 'notify', 'freeze', 'freeze', 'stop', 'stop', 'stop']);
  assert.equal(actuator.handle(match('notify', 'other')).action, 'notify', 'strikes are per instance');
  await actuator.settled();
  assert.deepEqual(target.calls, ['freeze i1', 'freeze i1', 'stop i1', 'stop i1', 'stop i1']);
  await actuator.stop();
  assert.ok(!target.calls.includes('resume i1'), 'a stopped instance is not resumed');
});

test('a failed action is audited as an error and raises its own alert', async () => {
  const target = new FakeTarget(), audit = new MemoryAudit();
  target.failing.add('freeze');
  const actuator = new Actuator({ target, audit, events: recordingBus().bus });
  actuator.handle(match('freeze'));
  await actuator.settled();
  assert.deepEqual(audit.entries.map((e) => [e.action, e.result]), [['guard.alert', 'ok'], ['guard.freeze', 'error'], ['guard.alert', 'ok']]);
  assert.equal(target.alerts[1]!.rule, 'guard.action.failed');
  await actuator.stop();
  assert.ok(!target.calls.includes('resume i1'), 'nothing to undo');
});

test('throttle and cut undo themselves after their timeouts, each audited with the alert it answers', async () => {
  const target = new FakeTarget(), audit = new MemoryAudit();
  const actuator = new Actuator({ target, audit, events: recordingBus().bus, throttleMs: 30, cutMs: 60 });
  const throttled = actuator.handle(match('throttle', 'a'));
  actuator.handle(match('cut', 'b'));
  await actuator.settled();
  assert.deepEqual(target.calls, ['throttle a', 'cut b']);
  await sleep(100);
  await actuator.settled();
  assert.deepEqual(target.calls, ['throttle a', 'cut b', 'unthrottle a', 'reconnect b']);
  const undo = audit.entries.find((e) => e.action === 'guard.unthrottle')!;
  assert.equal((undo.details as { alertId: string }).alertId, throttled.id);
  assert.equal((undo.details as { alertAuditIndex: number }).alertAuditIndex, throttled.auditIndex);
  await actuator.stop();
});

test('stopping the actuator lifts throttles and cuts still pending; a stop cancels them', async () => {
  const target = new FakeTarget();
  const actuator = new Actuator({ target, audit: new MemoryAudit(), events: recordingBus().bus, throttleMs: 60_000, cutMs: 60_000 });
  actuator.handle(match('throttle', 'a'));
  actuator.handle(match('cut', 'b'));
  actuator.handle(match('cut', 'c'));
  await actuator.settled();
  actuator.handle(match('stop', 'c'));
  await actuator.settled();
  await actuator.stop();
  assert.deepEqual(target.calls.sort(), ['cut b', 'cut c', 'reconnect b', 'stop c', 'throttle a', 'unthrottle a']);
});

test('recover is never escalated away, and its outcome lands in its audit entry', async () => {
  const target = new FakeTarget(), audit = new MemoryAudit();
  const actuator = new Actuator({ target, audit, events: recordingBus().bus, escalateAfter: 1, freezeMs: 60_000 });
  assert.deepEqual([0, 1, 2].map(() => actuator.handle(match('recover')).action), ['recover', 'recover', 'recover']);
  await actuator.settled();
  const entry = audit.entries.find((e) => e.action === 'guard.recover')!;
  assert.equal((entry.details as { recovered: string }).recovered, 'i1');
  await actuator.stop();
});

test('an action the target cannot take is a failed action, alerted', async () => {
  const audit = new MemoryAudit();
  const target = { alerts: [] as string[], alert(a: { rule: string }) { this.alerts.push(a.rule); }, freeze: async () => {}, resume: async () => {}, stop: async () => {}, snapshot: async () => {} };
  const actuator = new Actuator({ target, audit, events: recordingBus().bus });
  actuator.handle(match('throttle'));
  await actuator.settled();
  assert.deepEqual(target.alerts, ['r', 'guard.action.failed']);
  assert.match(String((audit.entries[1]!.details as { error: string }).error), /cannot throttle/);
});

test('an action on an instance that is no longer the start the event came from is refused, and audited as refused', async () => {
  const target = new FakeTarget(), audit = new MemoryAudit(), { bus, published } = recordingBus();
  const generations = new Map<string, string | null>([['i1', 'g2'], ['i2', 'g7'], ['i3', null]]);
  Object.assign(target, { generation: async (id: string) => generations.get(id) });
  const actuator = new Actuator({ target, audit, events: bus, freezeMs: 60_000 });
  const at = (instanceId: string, generation: string, action: Match['action'] = 'freeze'): Match => ({
    ...match(action, instanceId), event: event('syscall.denied', { 'instance.generation': generation }, { instanceId }),
  });
  actuator.handle(at('i1', 'g1')); // i1 restarted since (g2): its new start is not frozen
  actuator.handle(at('i1', 'g1', 'stop'));
  actuator.handle(at('i3', 'g3', 'stop')); // i3 no longer runs
  actuator.handle(at('i2', 'g7')); // the same start: acted on
  await actuator.settled();
  assert.deepEqual(target.calls, ['freeze i2']);
  const refused = audit.entries.filter((e) => (e.details as { refused?: string }).refused === 'generation');
  assert.deepEqual(refused.map((e) => [e.action, e.target, e.result]), [['guard.freeze', 'i1', 'error'], ['guard.stop', 'i1', 'error'], ['guard.stop', 'i3', 'error']]);
  assert.deepEqual(refused.map((e) => (e.details as { currentGeneration: unknown }).currentGeneration), ['g2', 'g2', null]);
  assert.ok(published.some((p) => p.type === 'guard.freeze' && (p.data as { ok?: boolean }).ok === false));
  await actuator.stop();
  assert.deepEqual(target.calls, ['freeze i2', 'resume i2'], 'what it did freeze is undone');
});
