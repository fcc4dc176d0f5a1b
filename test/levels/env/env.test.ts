/**
 * The env level end to end through an instance's loopback port: hello world,
 * Request/Response fidelity, errors as 500 with the stack in the tenant's log,
 * KV with its quota, pause, snapshot/restore, validation at create, outbound
 * fetch behind its allowlist, the host-call hook, and redeploy under load.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isStrataError } from '../../../src/core/errors.js';
import type { HostCallEvent } from '../../../src/levels/env/index.js';
import { HELLO, http, launch, loadWhile, logOf, specFor, startEnv, type TestEnv } from './helpers.js';
import { until } from '../../support/until.js';
import { tempDir } from '../../support/temp.js';

describe('env level', () => {
  let env: TestEnv;
  const events: HostCallEvent[] = [];
  before(async () => { env = await startEnv({ onHostCall: (e) => events.push(e) }); });
  after(async () => { await env.close(); });

  test('hello handler answers over its loopback port', async () => {
    const { url } = await launch(env, 'acme', HELLO);
    const r = await http(`${url}/world`);
    assert.equal(r.status, 200);
    assert.equal(r.body, 'hello /world');
    assert.match(String(r.headers['content-type']), /text\/plain/);
  });

  test('stats: CPU time its code burns and the heap it holds, against its heap limit', async () => {
    // Each request spins ~100 ms of CPU and keeps 4 MiB more in the isolate's heap.
    const { id, url } = await launch(env, 'acme', `const kept = []; export default { fetch() {
      const end = Date.now() + 100; let x = 0; while (Date.now() < end) x++;
      kept.push(new Array(512 * 1024).fill(kept.length));
      return new Response(String(kept.length));
    } }`, { cpuMs: 1000 });
    const before = await env.driver.stats(id);
    assert.equal(before?.memoryLimitBytes, 64 * 1024 * 1024);
    for (let i = 0; i < 4; i++) assert.equal((await http(url)).status, 200);
    // The host reports once a second.
    const after = await until(async () => {
      const u = await env.driver.stats(id);
      return u && u.cpuSeconds! >= 0.3 && u.memoryBytes! >= 12 * 1024 * 1024 ? u : null;
    }, { ms: 10_000, every: 200, what: 'CPU time >= 0.3 s and heap >= 12 MiB in its stats' });
    assert.ok(after.memoryBytes! <= 64 * 1024 * 1024, 'within its heap limit');
    assert.equal(after.netRxBytes, null, 'no interface of its own');
    await env.driver.stop(id, { graceMs: 0 });
    assert.equal((await env.driver.stats(id))?.cpuSeconds, null, 'a stopped isolate uses nothing');
  });

  test('Request and Response carry method, headers, query, JSON body and binary body', async () => {
    const { url } = await launch(env, 'acme', `export default { async fetch(req) {
      const u = new URL(req.url);
      if (u.pathname === '/bin') return new Response(new Uint8Array([0, 1, 2, 255]), { headers: { 'content-type': 'application/octet-stream' } });
      const body = await req.json();
      return Response.json({ method: req.method, q: u.searchParams.get('q'), h: req.headers.get('x-test'), sum: body.a + body.b }, { status: 201, headers: { 'x-out': 'yes' } });
    } }`);
    const r = await http(`${url}/calc?q=%C3%A9t%C3%A9`, { method: 'POST', body: JSON.stringify({ a: 2, b: 3 }), headers: { 'x-test': 'ok', 'content-type': 'application/json' } });
    assert.equal(r.status, 201);
    assert.equal(r.headers['x-out'], 'yes');
    assert.deepEqual(JSON.parse(r.body), { method: 'POST', q: 'été', h: 'ok', sum: 5 });
    const bin = await env.driver.handle((await launch(env, 'acme', `export default { fetch() { return new Response(new Uint8Array([0, 1, 2, 255])) } }`)).id,
      { method: 'GET', url: 'http://x/bin', headers: [], body: Buffer.alloc(0) });
    assert.deepEqual([...bin.body], [0, 1, 2, 255]);
  });

  test('an exception becomes a bare 500; the stack goes to the tenant log only', async () => {
    const { id, url } = await launch(env, 'acme', `export default { fetch() { secretHelper(); } }; function secretHelper() { throw new Error('database password is hunter2') }`);
    const r = await http(`${url}/`);
    assert.equal(r.status, 500);
    assert.doesNotMatch(r.body, /hunter2|secretHelper|at /);
    await until(() => logOf(env, id).some((e) => e.source === 'error' && /hunter2/.test(e.message) && /secretHelper/.test(e.message)));
  });

  test('console output lands in the instance log', async () => {
    const { id, url } = await launch(env, 'acme', `export default { fetch() { console.log('visited', { n: 1 }); console.error('oops'); return new Response('ok') } }`);
    assert.equal((await http(url)).status, 200);
    await until(() => logOf(env, id).some((e) => e.source === 'console' && e.message === 'visited {"n":1}'));
    assert.ok(logOf(env, id).some((e) => e.level === 'error' && e.message === 'oops'));
  });

  test('KV: put, get, list, delete; the quota refuses what does not fit', async () => {
    const { url } = await launch(env, 'kvt', `export default { async fetch(req, env) {
      const u = new URL(req.url);
      const k = u.searchParams.get('k'), v = u.searchParams.get('v');
      if (u.pathname === '/put') { try { await env.KV.put(k, v); return new Response('stored') } catch (e) { return new Response(e.message, { status: 507 }) } }
      if (u.pathname === '/del') { await env.KV.delete(k); return new Response('deleted') }
      if (u.pathname === '/list') return Response.json(await env.KV.list({ prefix: 'a' }));
      return new Response(String(await env.KV.get(k)));
    } }`, {}, { diskMiB: 1 });
    assert.equal((await http(`${url}/put?k=a1&v=one`)).body, 'stored');
    assert.equal((await http(`${url}/put?k=a2&v=two`)).body, 'stored');
    assert.equal((await http(`${url}/put?k=b1&v=three`)).body, 'stored');
    assert.equal((await http(`${url}/get?k=a1`)).body, 'one');
    assert.deepEqual(JSON.parse((await http(`${url}/list`)).body), { keys: [{ name: 'a1' }, { name: 'a2' }], list_complete: true });
    assert.equal((await http(`${url}/del?k=a1`)).body, 'deleted');
    assert.equal((await http(`${url}/get?k=a1`)).body, 'null');
    const quota = await launch(env, 'kvq', `export default { async fetch(req, env) {
      try { await env.KV.put('k1', 'x'.repeat(700 * 1024)); await env.KV.put('k2', 'x'.repeat(700 * 1024)); return new Response('no quota') }
      catch (e) { return new Response(e.message) } } }`, {}, { diskMiB: 1 });
    assert.match((await http(quota.url)).body, /KV quota exceeded/);
  });

  test('pause answers 503 with Retry-After; resume serves again', async () => {
    const { id, url } = await launch(env, 'acme', HELLO);
    await env.driver.pause(id);
    const paused = await http(url);
    assert.equal(paused.status, 503);
    assert.equal(paused.headers['retry-after'], '1');
    await env.driver.resume(id);
    assert.equal((await http(url)).status, 200);
  });

  test('snapshot and restore bring back code and KV', async () => {
    const v1 = `export default { async fetch(req, env) { if (new URL(req.url).pathname === '/set') await env.KV.put('k', 'before'); return new Response('v1 ' + await env.KV.get('k')) } }`;
    const { id, url } = await launch(env, 'snap', v1);
    assert.equal((await http(`${url}/set`)).body, 'v1 before');
    const snap = await env.driver.snapshot(id, 'snap1');
    assert.ok(snap.sizeBytes > 0);
    await env.driver.redeploy(id, { code: `export default { async fetch(req, env) { await env.KV.put('k', 'after'); return new Response('v2 ' + await env.KV.get('k')) } }` });
    assert.equal((await http(url)).body, 'v2 after');
    await env.driver.stop(id, { graceMs: 1000 });
    await env.driver.restore(id, 'snap1');
    await env.driver.start(id);
    assert.equal((await http(url)).body, 'v1 before');
  });

  test('create refuses bad modules, imports, missing code and relative paths with STRATA_ERR_VALIDATION', async () => {
    const bad = async (spec: ReturnType<typeof specFor>, pattern: RegExp): Promise<void> => {
      await assert.rejects(env.driver.create(spec), (e: unknown) => isStrataError(e) && e.code === 'STRATA_ERR_VALIDATION' && pattern.test(e.message));
      assert.equal(await env.driver.inspect(spec.id), null);
    };
    await bad(specFor('bad-syntax', 'acme', 'export default {'), /not a valid module/);
    await bad(specFor('bad-import', 'acme', `import fs from 'node:fs'; export default { fetch() {} }`), /imports are not available/);
    await bad({ ...specFor('bad-none', 'acme', ''), config: {} }, /exactly one/);
    await bad({ ...specFor('bad-rel', 'acme', ''), config: {}, source: 'handler.js' }, /absolute path/);
    await bad(specFor('bad-config', 'acme', HELLO, { cpuMs: -1 }), /config\.cpuMs/);
    await bad(specFor('bad-key', 'acme', HELLO, { nope: 1 }), /config/);
  });

  test('source may be a handler file; a module without a default fetch fails to start', async () => {
    const dir = tempDir('env-src');
    const file = join(dir, 'handler.js');
    writeFileSync(file, HELLO);
    await env.driver.create({ ...specFor('from-file', 'acme', ''), config: {}, source: file });
    await env.driver.start('from-file');
    const port = (await env.driver.inspect('from-file'))!.info!.port;
    assert.equal((await http(`http://127.0.0.1:${port}/f`)).body, 'hello /f');
    await env.driver.create(specFor('no-fetch', 'acme', 'export default { hello: 1 }'));
    await assert.rejects(env.driver.start('no-fetch'), (e: unknown) => isStrataError(e) && e.code === 'STRATA_ERR_DRIVER');
    const seen = await env.driver.inspect('no-fetch');
    assert.equal(seen?.state, 'failed');
    assert.match(String(seen?.info?.error), /export default/);
  });

  describe('outbound fetch', () => {
    let upstream: Server;
    let port = 0;
    before(async () => {
      upstream = createServer((req, res) => res.end(`upstream saw ${req.method} ${req.url}`));
      await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', () => r()));
      port = (upstream.address() as AddressInfo).port;
    });
    after(() => new Promise<void>((r) => upstream.close(() => r())));

    const fetcher = (target: () => string): string => `export default { async fetch() {
      try { const r = await fetch('${target()}'); return new Response('got ' + r.status + ': ' + await r.text()) }
      catch (e) { return new Response('refused: ' + e.message) } } }`;

    test('is off by default', async () => {
      const { url } = await launch(env, 'net', fetcher(() => `http://127.0.0.1:${port}/x`));
      assert.match((await http(url)).body, /^refused: .*allowlist/);
    });

    test('reaches an allowed loopback host, and nothing else', async () => {
      const { url } = await launch(env, 'net', fetcher(() => `http://127.0.0.1:${port}/x`), { outbound: [`127.0.0.1:${port}`] });
      assert.equal((await http(url)).body, 'got 200: upstream saw GET /x');
      const other = await launch(env, 'net', fetcher(() => 'http://10.1.2.3/'), { outbound: ['10.1.2.3'] });
      assert.match((await http(other.url)).body, /^refused/);
    });
  });

  test('every boundary call reaches the host-call hook with tenant, instance and kind', async () => {
    const { id, url } = await launch(env, 'hooked', `export default { async fetch(req, env) {
      console.log('x'); crypto.getRandomValues(new Uint8Array(8)); setTimeout(() => {}, 1);
      await env.KV.put('a', 'b'); await env.KV.get('a'); return new Response('ok') } }`);
    assert.equal((await http(url)).status, 200);
    await until(() => ['console', 'crypto.random', 'timer.set', 'kv.put', 'kv.get'].every((k) => events.some((e) => e.instanceId === id && e.kind === k)));
    const put = events.find((e) => e.instanceId === id && e.kind === 'kv.put')!;
    assert.equal(put.tenantId, 'hooked');
    assert.deepEqual(put.fields, { namespace: id, key: 'a', bytes: 1 });
  });

  test('redeploy under load drops nothing and switches code', async () => {
    const v = (n: number): string => `export default { async fetch() { await new Promise((r) => setTimeout(r, 5)); return new Response('v${n}') } }`;
    const { id, url } = await launch(env, 'deploy', v(0));
    const result = await loadWhile(url, 8, async () => {
      for (let n = 1; n <= 5; n++) {
        await new Promise((r) => setTimeout(r, 60));
        await env.driver.redeploy(id, { code: v(n) });
      }
      await new Promise((r) => setTimeout(r, 60));
    });
    assert.deepEqual(result.failed, []);
    assert.ok(result.ok > 50, `only ${result.ok} requests`);
    assert.equal((await http(url)).body, 'v5');
  });

  test('redeploy with broken code is refused and the old code keeps serving', async () => {
    const { id, url } = await launch(env, 'deploy', HELLO);
    await assert.rejects(env.driver.redeploy(id, { code: 'export default { fetch() { return new Response("x") } }; throw new Error("boom at start")' }),
      (e: unknown) => isStrataError(e) && e.code === 'STRATA_ERR_VALIDATION' && /boom at start/.test(e.message));
    assert.equal((await http(`${url}/still`)).body, 'hello /still');
  });

  test('stop waits for requests in flight, then answers 503', async () => {
    const { id, url } = await launch(env, 'acme', `export default { async fetch() { await new Promise((r) => setTimeout(r, 300)); return new Response('slow done') } }`);
    const inflight = http(url);
    await new Promise((r) => setTimeout(r, 50));
    await env.driver.stop(id, { graceMs: 5000 });
    assert.equal((await inflight).body, 'slow done');
    assert.equal((await http(url)).status, 503);
  });
});

describe('env host recycling', () => {
  let env: TestEnv;
  before(async () => { env = await startEnv({ hosts: 1, recycleAfterRequests: 40 }); });
  after(async () => { await env.close(); });

  test('a host past its request budget is replaced without dropping requests', async () => {
    const { id, url } = await launch(env, 'recycle', HELLO);
    const firstHost = (await env.driver.inspect(id))!.info!.host;
    const result = await loadWhile(url, 4, async () => void (await until(async () => (await env.driver.inspect(id))!.info!.host !== firstHost)));
    assert.deepEqual(result.failed, []);
    await until(() => env.driver.hosts().every((h) => h.name !== firstHost));
    assert.equal((await http(url)).status, 200);
  });
});
