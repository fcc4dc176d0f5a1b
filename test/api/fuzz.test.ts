/**
 * Throws random and malformed input at every route with several callers and
 * checks the two promises that matter: never a 5xx, and a tenant never sees a
 * trace of another tenant. The generator is seeded; a failure prints its seed.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { API_ROUTES } from '../../src/api/server.js';
import { FakeDriver } from '../support/fake-driver.js';
import { TestDaemon } from '../support/harness.js';

const SEED = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000);
const ROUNDS = Number(process.env.FUZZ_ROUNDS ?? 2500);

/** mulberry32: small, seedable. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

let d: TestDaemon;
let tokenA: string;
let memberA: string;
/**
 * Strings that exist only in tenant B and that no tenant-A request ever types (B's
 * hostname, snapshot, ids, users): none may ever reach a tenant-A caller. B's tenant
 * and instance names are typed by the fuzzer (guessing is the attack); for those,
 * a tenant-A request naming them must never succeed.
 */
const secretsOfB = ['zzhidden.example', 'zzhidden-snap'];
const guessableOfB = ['zzsecretb', 'zzsecretb-web'];

before(async () => {
  d = await TestDaemon.start({ drivers: [new FakeDriver({ level: 'os' })] });
  const big = { instances: 50, vcpus: 50, memoryMiB: 100_000, diskMiB: 100_000, sites: 50 };
  tokenA = await d.tenantWithUser('acme', 'tenant-admin', big);
  memberA = await d.userToken('acme-member', 'tenant-member', 'acme');
  await d.tenantWithUser('zzsecretb', 'tenant-admin', big);
  const reason = { 'x-strata-reason': 'fuzz setup' };
  for (const t of ['acme', 'zzsecretb']) {
    const name = t === 'acme' ? 'web' : 'zzsecretb-web';
    const r = await d.request('POST', `/v1/tenants/${t}/instances?wait=10`, { body: { name, level: 'os' }, headers: reason });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    await d.request('POST', `/v1/tenants/${t}/sites`, { body: { hostname: `${t === 'acme' ? 'acme' : 'zzhidden'}.example`, target: { kind: 'instance', instance: name, port: 80 } }, headers: reason });
    await d.request('POST', `/v1/tenants/${t}/instances/${name}/snapshots?wait=10`, { body: { name: t === 'acme' ? 'snap' : 'zzhidden-snap' }, headers: reason });
    const inst = await d.request('GET', `/v1/tenants/${t}/instances/${name}`);
    if (t !== 'acme') secretsOfB.push(inst.body.id, (await d.request('GET', '/v1/users?tenant=zzsecretb')).body.items[0].name);
  }
  const b = await d.request('GET', '/v1/tenants/zzsecretb');
  secretsOfB.push(b.body.id);
});

after(async () => {
  await d.close();
});

test(`random and malformed requests to every route: no 5xx, no cross-tenant leak (seed ${SEED})`, async () => {
  const r = rng(SEED);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const weird = ['', ' ', '..', '%2e%2e', '%00', 'a'.repeat(400), 'ACME', 'acme', 'zzsecretb', 'web', 'zzsecretb-web', 'snap', '😀', '__proto__', 'constructor', '-1', '1e999', 'tk0000000000000000', 'start', 'a/b', '%ff', '*.x'];
  const scalar = (): unknown => pick([null, true, false, 0, -1, 1.5, 1e308, -0, 'x', '', 'a'.repeat(5000), '\u0000', [], {}, pick(weird)]);
  const value = (depth: number): unknown => {
    if (depth > 3 || r() < 0.4) return scalar();
    if (r() < 0.3) return Array.from({ length: Math.floor(r() * 4) }, () => value(depth + 1));
    const keys = ['name', 'level', 'quota', 'role', 'tenant', 'user', 'hostname', 'target', 'kind', 'port', 'root', 'instance', 'limits', 'vcpus', 'memoryMiB', 'start', 'force', 'extra', '__proto__', 'constructor', 'sites'];
    const o: Record<string, unknown> = {};
    for (let i = Math.floor(r() * 5); i > 0; i--) o[pick(keys)] = value(depth + 1);
    return o;
  };
  const rawBodies = ['{', '{"a":', 'null', '[]', '"str"', '{"__proto__":{"x":1}}', '{"constructor":{"prototype":{}}}', '\u0000', 'a'.repeat(100), '{"name":"x"}'.repeat(3), '[' .repeat(5000)];
  const routes = API_ROUTES.filter((x) => !x.raw);
  const callers = [() => d.adminToken, () => tokenA, () => memberA, () => null, () => 'strata_tk0123456789abcdef_' + 'x'.repeat(43), () => 'garbage'];

  for (let i = 0; i < ROUNDS; i++) {
    const route = pick(routes);
    const path = route.url.replace(/:([a-z]+)/g, () => encodeURIComponent(pick(weird)).replace(/%25/g, r() < 0.5 ? '%' : '%25'));
    const query = r() < 0.3 ? `?${pick(['wait', 'tenant', 'from', 'limit', 'index', 'size', 'x', 'status', 'user'])}=${encodeURIComponent(String(scalar()))}` : '';
    const callerIx = Math.floor(r() * callers.length);
    const token = callers[callerIx]!();
    const headers: Record<string, string> = {};
    if (r() < 0.3) headers['x-strata-reason'] = 'fuzz';
    if (r() < 0.1) headers['idempotency-key'] = pick(['k1', 'k2', '']);
    let res;
    const method = r() < 0.9 ? route.method : pick(['GET', 'POST', 'PUT', 'PATCH', 'DELETE']);
    if (method === 'GET' || method === 'DELETE' || r() < 0.1) {
      res = await d.request(method, path + query, { token });
    } else if (r() < 0.25) {
      headers['content-type'] = pick(['application/json', 'text/plain', 'application/x-www-form-urlencoded', 'application/json; charset=utf-8']);
      res = await d.request(method, path + query, { token, rawBody: pick(rawBodies), headers });
    } else {
      res = await d.request(method, path + query, { token, body: value(0), headers });
    }
    const where = `seed ${SEED} round ${i}: ${method} ${path}${query} as caller ${callerIx} → ${res.status} ${JSON.stringify(res.body).slice(0, 300)}`;
    assert.ok(res.status < 500, where);
    if (res.status >= 400) assert.match(String(res.body?.error?.code), /^STRATA_ERR_/, where);
    if (callerIx === 1 || callerIx === 2) {
      const text = JSON.stringify(res.body);
      for (const s of secretsOfB) {
        if (text.includes(s)) assert.fail(`leak of ${s}: ${where} … ${text.slice(Math.max(0, text.indexOf(s) - 400), text.indexOf(s) + 100)}`);
      }
      if (guessableOfB.some((g) => path.split('/').includes(g) || query.includes(g))) {
        assert.ok(res.status >= 400, `a tenant-A caller reached tenant B: ${where}`);
      }
    }
  }
});

test('oversize bodies get 413, bad JSON 400, unknown routes 404, missing token 401', async () => {
  const big = await d.request('POST', '/v1/tenants', { rawBody: JSON.stringify({ name: 'x', pad: 'a'.repeat(2 * 1024 * 1024) }), headers: { 'content-type': 'application/json' } });
  assert.equal(big.status, 413);
  assert.equal(big.body.error.code, 'STRATA_ERR_PAYLOAD_TOO_LARGE');
  const bad = await d.request('POST', '/v1/tenants', { rawBody: '{"name":', headers: { 'content-type': 'application/json' } });
  assert.equal(bad.status, 400);
  assert.equal(bad.body.error.code, 'STRATA_ERR_BAD_JSON');
  const none = await d.request('GET', '/v1/nothing-here');
  assert.equal(none.status, 404);
  assert.equal(none.body.error.code, 'STRATA_ERR_ROUTE_NOT_FOUND');
  const anon = await d.request('GET', '/v1/tenants', { token: null });
  assert.equal(anon.status, 401);
  const field = await d.request('POST', '/v1/tenants', { body: { name: 'Bad Name!' } });
  assert.equal(field.status, 400);
  assert.equal(field.body.error.details.issues[0].field, 'body.name');
  const unknown = await d.request('POST', '/v1/tenants', { body: { name: 'okname', colour: 'blue' } });
  assert.equal(unknown.status, 400, 'unknown fields are refused (strict schemas)');
});
