/**
 * Operator sessions in the guard, without a kernel: the registry (bind, origin,
 * refusals), the default rules (an operator session is recorded, never frozen,
 * stopped or cut; the same activity from the workload still is) and the
 * actuator (an operator session's alerts neither escalate nor count as strikes).
 * The kernel side is test/attacks/os/operator-sessions.test.ts.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Actuator } from '../../src/guard/actuator.js';
import { Evaluator } from '../../src/guard/evaluator.js';
import type { GuardEvent } from '../../src/core/guard-event.js';
import { Guard } from '../../src/guard/guard.js';
import { fixtureEvents, loadDefaultRuleset } from '../../src/guard/rules.js';
import { OperatorSessions, UNSET_SESSION } from '../../src/guard/sessions.js';
import { event, FakeTarget, MemoryAudit, recordingBus } from './fakes.js';

test('a session is registered before it runs; its exec id maps to api only for its own instance, and is never bound twice', () => {
  const emitted: GuardEvent[] = [];
  const sessions = new OperatorSessions((e) => emitted.push(e));
  const s = sessions.open({ kind: 'exec', tenantId: 't1', instanceId: 'i1', level: 'os', user: 'alice', argv: ['sh', '-c', 'ls /www'] });
  assert.deepEqual(sessions.origin(41, 'i1'), { 'proc.origin': 'workload' }, 'not bound yet');
  s.bind({ execId: 41, runnerPid: 1234 });
  assert.deepEqual(sessions.origin(41, 'i1'), { 'proc.origin': 'api', 'session.id': s.id, 'session.kind': 'exec', 'session.user': 'alice', 'session.exec_id': 41 });
  assert.deepEqual(sessions.origin(41, 'i2'), { 'proc.origin': 'workload' }, "another instance's task with that id is not the session's");
  assert.deepEqual(sessions.origin(UNSET_SESSION, 'i1'), { 'proc.origin': 'workload' }, 'a task that never opened an audit session is workload');
  assert.deepEqual(sessions.origin(42, 'i1'), { 'proc.origin': 'workload' });

  const other = sessions.open({ kind: 'exec', tenantId: 't1', instanceId: 'i1', level: 'os', user: 'mallory' });
  assert.throws(() => other.bind({ execId: 41, runnerPid: 99 }), /already bound/);
  assert.throws(() => other.bind({ execId: UNSET_SESSION, runnerPid: 99 }), /not an audit session id/);
  assert.equal(sessions.byExecId(41)?.user, 'alice');

  assert.equal(emitted.length, 0, 'recorded once it runs, not before');
  s.started();
  assert.equal(emitted.length, 1);
  assert.equal(emitted[0]!.kind, 'session.open');
  assert.equal(emitted[0]!.fields['proc.origin'], 'api');
  assert.equal(emitted[0]!.fields['session.exec_id'], 41);
  assert.equal(emitted[0]!.fields['proc.cmdline'], 'sh -c ls /www');

  // Ended, its lineage stays: what it left running is still the operator's.
  s.close();
  assert.equal(sessions.origin(41, 'i1')['proc.origin'], 'api');
  assert.equal(sessions.list().length, 1, 'only the other one is open');
});

test('an exec id lower than one bound before (the kernel counter wrapped) is said loudly', () => {
  const emitted: GuardEvent[] = [];
  const sessions = new OperatorSessions((e) => emitted.push(e));
  sessions.open({ kind: 'exec', tenantId: 't1', instanceId: 'i1', level: 'os', user: 'u' }).bind({ execId: 4_000_000_000, runnerPid: 1 });
  sessions.open({ kind: 'exec', tenantId: 't1', instanceId: 'i1', level: 'os', user: 'u' }).bind({ execId: 4_000_000_001, runnerPid: 2 });
  assert.equal(emitted.length, 0);
  sessions.open({ kind: 'exec', tenantId: 't1', instanceId: 'i1', level: 'os', user: 'u' }).bind({ execId: 5, runnerPid: 3 });
  assert.equal(emitted.length, 1);
  assert.equal(emitted[0]!.kind, 'guard.sessions');
  assert.equal(emitted[0]!.priority, 'critical');
  assert.equal(emitted[0]!.fields['session.highest_exec_id'], 4_000_000_001);
});

test('ended sessions are kept up to a bound, oldest forgotten first', () => {
  const sessions = new OperatorSessions(() => undefined, { keepEnded: 2 });
  for (let i = 1; i <= 3; i++) {
    const s = sessions.open({ kind: 'exec', tenantId: 't1', instanceId: 'i1', level: 'os', user: 'u' });
    s.bind({ execId: i, runnerPid: i });
    s.close();
  }
  assert.equal(sessions.byExecId(1), undefined);
  assert.ok(sessions.byExecId(2) && sessions.byExecId(3));
});

const ACTING = new Set(['freeze', 'stop', 'cut', 'throttle']);

test('no default rule freezes, stops or cuts an operator session; the same events from the workload still do', async () => {
  const set = await loadDefaultRuleset();
  const acting = set.rules.filter((r) => ACTING.has(r.action));
  assert.ok(acting.length >= 8, `${acting.length} acting rules`);
  let checked = 0;
  for (const rule of acting) {
    for (const fixture of rule.fixtures?.fires ?? []) {
      const events = fixtureEvents(fixture);
      // Only events made by processes carry an origin (the os interceptor's); an integrity or VM event has none.
      if (!events.every((e) => e.level === 'os' && !e.kind.startsWith('integrity.') && !e.kind.startsWith('resource.') && !e.kind.startsWith('guard.'))) continue;
      const run = (origin: 'api' | 'workload'): string[] => {
        const evaluator = new Evaluator(set);
        return events.flatMap((e) => evaluator.evaluate({ event: { ...e, fields: { ...e.fields, 'proc.origin': origin } }, count: 1, firstTime: e.time, lastTime: e.time })
          .filter((m) => ACTING.has(m.action)).map((m) => m.rule));
      };
      assert.ok(run('workload').includes(rule.name), `${rule.name} still acts on the workload`);
      assert.deepEqual(run('api'), [], `${rule.name}: nothing acts on an operator session`);
      checked++;
    }
  }
  assert.ok(checked >= 10, `${checked} fixtures checked`);
});

test('a shell in a web instance: frozen from the workload, recorded from an operator session', async () => {
  const target = new FakeTarget();
  const { bus } = recordingBus();
  const guard = new Guard({ ruleset: await loadDefaultRuleset(), target, audit: new MemoryAudit(), events: bus });
  await guard.start();
  const s = guard.sessions.open({ kind: 'exec', tenantId: 't1', instanceId: 'web1', level: 'os', user: 'alice', argv: ['sh', '-c', 'ls /www'] });
  s.bind({ execId: 7, runnerPid: 100 });
  s.started();
  const shell = (execId: number): GuardEvent => event('process.exec', {
    'proc.name': 'sh', 'proc.pname': 'runc', 'proc.cmdline': 'sh -c ls /www', 'instance.role': 'web', ...guard.sessions.origin(execId, 'web1'),
  }, { instanceId: 'web1', time: Date.now() });
  // More than the escalation threshold: an operator's alerts never climb the ladder.
  for (let i = 0; i < 5; i++) guard.ingest({ ...shell(7), fields: { ...shell(7).fields, 'proc.pid': 200 + i } });
  await guard.drained();
  assert.deepEqual(target.calls, [], 'nothing was done to the instance');
  const recorded = guard.alerts().map((a) => `${a.rule}:${a.action}`);
  assert.ok(recorded.includes('Operator session:notify'), JSON.stringify(recorded));
  assert.equal(recorded.filter((r) => r === 'Shell in operator session:notify').length, 5, JSON.stringify(recorded));
  assert.equal(guard.alerts().find((a) => a.rule === 'Shell in operator session')!.fields['session.user'], 'alice');

  guard.ingest(shell(UNSET_SESSION));
  await guard.drained();
  assert.deepEqual(target.calls, ['freeze web1'], 'the workload shell is frozen, and not escalated by the operator alerts before it');
  await guard.stop();
});

test('the actuator: alerts of an operator session neither escalate nor count as strikes', () => {
  const target = new FakeTarget();
  const actuator = new Actuator({ target, audit: new MemoryAudit(), events: recordingBus().bus, escalateAfter: 2 });
  const match = (origin: string) => ({
    rule: 'r', priority: 'notice' as const, action: 'notify' as const, output: 'o', count: 1, tags: [],
    event: event('process.exec', { 'proc.origin': origin }, { instanceId: 'i1' }),
  });
  for (let i = 0; i < 6; i++) assert.equal(actuator.handle(match('api')).action, 'notify');
  assert.equal(actuator.handle(match('workload')).action, 'notify', 'the first workload strike is the first strike');
  assert.equal(actuator.handle(match('workload')).action, 'notify');
  assert.equal(actuator.handle(match('workload')).action, 'freeze', 'workload alerts still escalate');
});
