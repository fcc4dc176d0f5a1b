/**
 * The isolate-boundary interceptor on a real env driver: host calls arrive as
 * `isolate.call` events, limit hits (CPU, KV quota, …) as `isolate.limit`,
 * refused calls (a fetch outside the allowlist, a call no runtime makes) as
 * `isolate.denied`, and a handler that keeps hitting its limit trips the
 * default "Isolate limit abuse" rule — all without the tenant's responses
 * changing.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Guard } from '../../src/guard/guard.js';
import type { GuardEvent } from '../../src/core/guard-event.js';
import { IsolateInterceptor, toGuardEvent } from '../../src/levels/env/interceptor.js';
import { HostCalls, type CallerContext, type HostCallEvent } from '../../src/levels/env/host-calls.js';
import { KvStores } from '../../src/levels/env/kv.js';
import { loopbackOnly } from '../../src/levels/env/outbound.js';
import { loadDefaultRuleset } from '../../src/guard/rules.js';
import { http, launch, startEnv, type TestEnv } from '../levels/env/helpers.js';
import { FakeTarget, MemoryAudit, recordingBus } from './fakes.js';
import { until } from '../support/until.js';
import { tempDir } from '../support/temp.js';

let env: TestEnv;
let guard: Guard;
const target = new FakeTarget();
const seen: GuardEvent[] = [];

before(async () => {
  env = await startEnv({ hosts: 1 });
  guard = new Guard({ ruleset: await loadDefaultRuleset(), target, audit: new MemoryAudit(), events: recordingBus().bus });
  const interceptor = new IsolateInterceptor({ observe: (fn) => env.driver.observe(fn && ((e) => { fn(e); seen.push(toSeen(e)); })) });
  await guard.addInterceptor(interceptor);
  await guard.start();
});
after(async () => {
  await guard.stop();
  await env.close();
});

const toSeen = (e: { kind: string; instanceId: string; fields: Record<string, unknown> }): GuardEvent => ({
  time: 0, tenantId: null, instanceId: e.instanceId, level: 'env', kind: e.kind, fields: { ...(e.fields as Record<string, string>) },
});

test('host calls and limit hits reach the guard; repeated limit hits fire "Isolate limit abuse"', async () => {
  const kv = await launch(env, 'tenant-a', `export default { async fetch(r, env) { console.log('hi'); await env.KV.put('k', 'v'); return new Response('ok') } }`);
  assert.equal((await http(kv.url)).body, 'ok');
  await until(() => seen.some((e) => e.instanceId === kv.id && e.kind === 'kv.put') && seen.some((e) => e.instanceId === kv.id && e.kind === 'console'));
  await guard.drained();
  assert.ok(guard.stats().received >= 2, 'the boundary events were filed in the pool');

  const spin = await launch(env, 'tenant-b', `export default { async fetch() { for (;;) {} } }`);
  for (let i = 0; i < 11; i++) assert.equal((await http(spin.url)).status, 503, 'the tenant sees its limit, not the guard');
  await until(() => target.alerts.some((a) => a.rule === 'Isolate limit abuse'));
  const alert = target.alerts.find((a) => a.rule === 'Isolate limit abuse')!;
  assert.equal(alert.instanceId, spin.id);
  assert.equal(alert.fields['isolate.limit'], 'cpu');
  assert.equal(alert.level, 'env');
});

test('refusals map to isolate.denied and every limit to isolate.limit, with flat fields and no bodies', () => {
  const at = { time: 1, tenantId: 't', instanceId: 'i' };
  const denied = toGuardEvent({ ...at, kind: 'isolate.denied', fields: { call: 'fetch', url: 'http://127.0.0.1:9/x', host: '127.0.0.1:9', reason: 'not allowed', headers: [['a', 'b']] } });
  assert.equal(denied.kind, 'isolate.denied');
  assert.equal(denied.priority, 'warning');
  assert.deepEqual(denied.fields, { 'isolate.denied': 'fetch', 'call.url': 'http://127.0.0.1:9/x', 'call.host': '127.0.0.1:9', 'call.reason': 'not allowed' });
  for (const limit of ['cpu', 'memory', 'wall', 'timers', 'kv']) {
    const e = toGuardEvent({ ...at, kind: 'isolate.limit', fields: { limit, detail: 'd' } });
    assert.deepEqual([e.kind, e.fields['isolate.limit'], e.fields['isolate.detail'], e.level], ['isolate.limit', limit, 'd', 'env']);
  }
  const call = toGuardEvent({ ...at, kind: 'kv.put', fields: { namespace: 'n', key: 'k', bytes: 3 } });
  assert.deepEqual(call.fields, { 'isolate.call': 'kv.put', 'call.namespace': 'n', 'call.key': 'k', 'call.bytes': 3 });
});

test('a fetch outside the allowlist and a KV write past the quota reach the guard; tenant code sees the same refusals', async () => {
  const before = seen.length;
  const port = (await env.driver.inspect((await launch(env, 'tenant-c', `export default { fetch() { return new Response('x') } }`)).id))!.info!.port;
  const probe = await launch(env, 'tenant-d', `export default { async fetch(r, env) {
    const out = [];
    try { await fetch('http://127.0.0.1:${port}/'); out.push('reached') } catch (e) { out.push('refused') }
    try { await env.KV.put('big', 'x'.repeat(1048576)); await env.KV.put('big2', 'x'.repeat(1048576)); out.push('stored') } catch (e) { out.push('quota') }
    return new Response(out.join(' ')) } }`);
  assert.equal((await http(probe.url)).body, 'refused quota', 'tenant code sees the refusals as before');
  await until(() => seen.slice(before).some((e) => e.instanceId === probe.id && e.kind === 'isolate.denied')
    && seen.slice(before).some((e) => e.instanceId === probe.id && e.kind === 'isolate.limit' && e.fields.limit === 'kv'));
  const denied = seen.slice(before).find((e) => e.kind === 'isolate.denied')!;
  assert.equal(denied.fields.call, 'fetch');
  assert.equal(denied.fields.host, `127.0.0.1:${port}`);
});

test('a boundary call no runtime makes is refused and reported as isolate.denied (the raw bridge reached)', async () => {
  const dir = tempDir('hostcalls');
  const kv = new KvStores(dir);
  try {
    const reported: HostCallEvent[] = [];
    const calls = new HostCalls(kv, loopbackOnly, (e) => reported.push(e));
    const ctx = { tenantId: 't', instanceId: 'i', kv: { tenantId: 't', namespace: 'n', quotaBytes: 1024 }, outbound: [] } as unknown as CallerContext;
    const answer = await calls.call(ctx, 'fs.readFile', { path: '/etc/shadow' }, null);
    assert.equal(answer.ok, false);
    assert.deepEqual(reported.map((e) => [e.kind, e.fields.call]), [['isolate.denied', 'fs.readFile']]);
    assert.equal(toGuardEvent(reported[0]!).fields['isolate.denied'], 'fs.readFile');
  } finally {
    kv.close();
  }
});
