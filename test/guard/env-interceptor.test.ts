/**
 * The isolate-boundary interceptor on a real env driver: host calls arrive as
 * `isolate.call` events, CPU limit hits as `isolate.limit`, and a handler that
 * keeps hitting its limit trips the default "Isolate limit abuse" rule — all
 * without the tenant's responses changing.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Guard } from '../../src/guard/guard.js';
import type { GuardEvent } from '../../src/guard/event.js';
import { IsolateInterceptor } from '../../src/guard/interceptors/env.js';
import { loadDefaultRuleset } from '../../src/guard/rules.js';
import { http, launch, startEnv, until, type TestEnv } from '../levels/env/helpers.js';
import { FakeTarget, MemoryAudit, recordingBus } from './fakes.js';

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
