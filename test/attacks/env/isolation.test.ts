/**
 * Breakout attempts between env tenants sharing one isolate host: another
 * tenant's globals, KV data and logs stay out of reach; prototype tampering
 * stays inside the isolate that did it; no Node.js API is reachable; the
 * runtime's randomness is not shared through the snapshot.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { http, launch, logOf, startEnv, type TestEnv } from '../../levels/env/helpers.js';
import { until } from '../../support/until.js';

describe('env isolation between tenants on one host', () => {
  let env: TestEnv;
  before(async () => { env = await startEnv({ hosts: 1 }); });
  after(async () => { await env.close(); });

  test('a global set by one tenant is invisible to another on the same host', async () => {
    const victim = await launch(env, 'victim', `globalThis.SECRET = 'victim-secret'; export default { fetch() { return new Response(String(globalThis.SECRET)) } }`);
    const attacker = await launch(env, 'attacker', `export default { fetch() { return new Response(typeof SECRET + ' ' + Object.keys(globalThis).join(',')) } }`);
    assert.equal((await env.driver.inspect(victim.id))!.info!.host, (await env.driver.inspect(attacker.id))!.info!.host);
    assert.equal((await http(victim.url)).body, 'victim-secret');
    const seen = (await http(attacker.url)).body;
    assert.ok(seen.startsWith('undefined'), seen);
    assert.doesNotMatch(seen, /victim/);
  });

  test('prototype tampering stays inside its isolate', async () => {
    const tamper = await launch(env, 'attacker', `
      Object.prototype.polluted = 'yes'; Array.prototype.join = () => 'hijacked'; JSON.stringify = () => '"hijacked"';
      String.prototype.toUpperCase = () => 'HIJACKED';
      export default { fetch() { return new Response(({}).polluted + ' ' + [1, 2].join('-')) } }`);
    const neighbour = await launch(env, 'victim', `export default { fetch() {
      return Response.json({ polluted: ({}).polluted ?? null, join: [1, 2].join('-'), upper: 'a'.toUpperCase() }) } }`);
    assert.equal((await http(tamper.url)).body, 'yes hijacked');
    assert.deepEqual(JSON.parse((await http(neighbour.url)).body), { polluted: null, join: '1-2', upper: 'A' });
  });

  test('no Node.js API is reachable: process, require, import(), Buffer, constructor escapes', async () => {
    const probe = await launch(env, 'attacker', `export default { async fetch() {
      const out = {
        process: typeof process, require: typeof require, Buffer: typeof Buffer, module: typeof module,
        escape: (() => { try { return typeof (function () {}).constructor('return process')() } catch (e) { return 'threw' } })(),
        ivm: typeof globalThis.__strata_install,
      };
      try { await import('node:fs'); out.import = 'loaded' } catch (e) { out.import = 'refused' }
      return Response.json(out) } }`);
    assert.deepEqual(JSON.parse((await http(probe.url)).body), {
      process: 'undefined', require: 'undefined', Buffer: 'undefined', module: 'undefined', escape: 'threw', ivm: 'undefined', import: 'refused',
    });
  });

  test('KV data: the same key in two tenants holds two values; a tenant cannot name another namespace', async () => {
    const code = (value: string): string => `export default { async fetch(req, env) {
      if (new URL(req.url).pathname === '/write') await env.KV.put('shared-key', '${value}');
      return new Response(String(await env.KV.get('shared-key'))) } }`;
    const a = await launch(env, 'tenant-a', code('a-private'), { kvNamespace: 'common' });
    const b = await launch(env, 'tenant-b', code('b-private'), { kvNamespace: 'common' });
    assert.equal((await http(`${a.url}/write`)).body, 'a-private');
    assert.equal((await http(b.url)).body, 'null');
    assert.equal((await http(`${b.url}/write`)).body, 'b-private');
    assert.equal((await http(a.url)).body, 'a-private');
  });

  test('logs: one tenant\'s console output and errors appear only in its own log', async () => {
    const a = await launch(env, 'tenant-a', `export default { fetch() { console.log('a-log-line'); throw new Error('a-error-detail') } }`);
    const b = await launch(env, 'tenant-b', `export default { fetch() { console.log('b-log-line'); return new Response('b') } }`);
    assert.equal((await http(a.url)).status, 500);
    const bReply = await http(b.url);
    assert.equal(bReply.body, 'b');
    await until(() => logOf(env, a.id).some((e) => /a-error-detail/.test(e.message)) && logOf(env, b.id).some((e) => e.message === 'b-log-line'));
    assert.ok(!logOf(env, b.id).some((e) => /a-log-line|a-error-detail/.test(e.message)));
    assert.ok(!logOf(env, a.id).some((e) => /b-log-line/.test(e.message)));
  });

  test('Math.random and crypto differ between isolates made from the same snapshot', async () => {
    const code = `export default { fetch() { return new Response(Math.random() + ' ' + crypto.randomUUID()) } }`;
    const one = await launch(env, 'tenant-a', code);
    const two = await launch(env, 'tenant-b', code);
    const [r1, u1] = (await http(one.url)).body.split(' ');
    const [r2, u2] = (await http(two.url)).body.split(' ');
    assert.notEqual(r1, r2);
    assert.notEqual(u1, u2);
    assert.match(u1!, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });
});
