/**
 * The API is a contract: the OpenAPI document lists every route, and every answer
 * of a walk over every route matches the response schema the route declares for
 * its status (the same zod objects the document is generated from).
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { AnyRoute } from '../../src/api/route.js';
import { API_ROUTES } from '../../src/api/server.js';
import { FakeDriver } from '../support/fake-driver.js';
import { TestDaemon } from '../support/harness.js';
import { tempDir } from '../support/temp.js';

let d: TestDaemon;
before(async () => {
  d = await TestDaemon.start({ drivers: [new FakeDriver({ level: 'os' })] });
});
after(() => d.close());

const toRegex = (url: string): RegExp => new RegExp(`^${url.replace(/:[a-z]+/g, '[^/]+')}$`);
/** As fastify does: of the routes that match, static segments beat parameters. */
const routeFor = (method: string, path: string): AnyRoute | undefined =>
  API_ROUTES.filter((r) => r.method === method && toRegex(r.url).test(path.split('?')[0]!))
    .sort((a, b) => a.url.split(':').length - b.url.split(':').length)[0];

test('the OpenAPI document lists every route with its parameters and schemas', async () => {
  const doc = (await d.request('GET', '/v1/openapi.json', { token: null })).body;
  assert.equal(doc.openapi, '3.0.3');
  for (const r of API_ROUTES) {
    const op = doc.paths[r.url.replace(/:([a-z]+)/g, '{$1}')]?.[r.method.toLowerCase()];
    assert.ok(op, `${r.method} ${r.url} documented`);
    if (r.body) assert.ok(op.requestBody.content['application/json'].schema, `${r.url} body schema`);
    for (const status of Object.keys(r.responses)) assert.ok(op.responses[status], `${r.url} ${status}`);
  }
  const create = doc.paths['/v1/tenants'].post.requestBody.content['application/json'].schema;
  assert.equal(create.additionalProperties, false, 'strict schemas say so in the document');
});

test('a walk over every route answers what each route declares', async () => {
  const reason = { 'x-strata-reason': 'contract walk' };
  const walk: Array<[string, string, unknown?, number?]> = [
    ['GET', '/healthz'], ['GET', '/v1/whoami'], ['GET', '/v1/info'],
    ['POST', '/v1/tenants', { name: 'walk' }], ['GET', '/v1/tenants'], ['GET', '/v1/tenants/walk'],
    ['PATCH', '/v1/tenants/walk', { quota: { sites: 30 } }],
    ['POST', '/v1/users', { name: 'walker', role: 'tenant-admin', tenant: 'walk' }], ['GET', '/v1/users'], ['GET', '/v1/users/walker'],
    ['PATCH', '/v1/users/walker', { role: 'tenant-member' }],
    ['POST', '/v1/tokens', { user: 'walker', name: 'ci' }], ['GET', '/v1/tokens?user=walker'],
    ['POST', '/v1/tenants/walk/instances?wait=10', { name: 'web', level: 'os' }], ['GET', '/v1/tenants/walk/instances'],
    ['GET', '/v1/tenants/walk/instances/web'], ['GET', '/v1/tenants/walk/instances/web/stats'], ['GET', '/v1/tenants/walk/stats'], ['GET', '/v1/stats'],
    ['POST', '/v1/tenants/walk/instances/web/stop?wait=10'],
    // The fake driver cannot reconfigure: the restart policy (the control plane's) changes, limits are the declared 422.
    ['PATCH', '/v1/tenants/walk/instances/web', { config: { restart: 'always' } }], ['PATCH', '/v1/tenants/walk/instances/web', { limits: { vcpus: 2 } }, 422],
    // The fake driver cannot move: the declared 422s; a finish for no receive in progress, the declared 404.
    ['POST', '/v1/tenants/walk/instances/web/move', { target: { url: 'http://127.0.0.1:1', token: 'x' } }, 422],
    ['POST', '/v1/tenants/walk/instances/arriving/receive', { level: 'os', source: null, limits: { vcpus: 1, memoryMiB: 64, diskMiB: 0 }, config: {}, sites: [], from: 'walk' }, 422],
    ['POST', '/v1/tenants/walk/instances/arriving/receive/finish', { ok: false }, 404],
    ['GET', '/v1/forwards'], ['DELETE', '/v1/forwards/none.example', undefined, 404],
    // The fake driver cannot redeploy: the declared 422.
    ['POST', '/v1/tenants/walk/instances/web/redeploy', { code: 'x' }, 422],
    ['POST', '/v1/tenants/walk/instances/web/snapshots?wait=10', { name: 'snap' }],
    ['GET', '/v1/tenants/walk/instances/web/snapshots'], ['GET', '/v1/tenants/walk/snapshots'],
    ['POST', '/v1/tenants/walk/instances/web/snapshots/snap/restore?wait=10'],
    // The fake driver cannot clone: the declared 422.
    ['POST', '/v1/tenants/walk/instances/web/snapshots/snap/clone', { name: 'copy' }, 422],
    // The fake driver has no images and cannot import: an empty list, the declared 422.
    ['GET', '/v1/images'], ['POST', '/v1/images', { name: 'walked', path: '/nonexistent' }, 422],
    ['DELETE', '/v1/tenants/walk/instances/web/snapshots/snap'],
    ['POST', '/v1/tenants/walk/domains', { name: 'walk.example' }], ['GET', '/v1/tenants/walk/domains'], ['GET', '/v1/tenants/walk/domains/walk.example'],
    ['POST', '/v1/tenants/walk/sites', { hostname: 'walk.example', target: { kind: 'instance', instance: 'web', port: 8080 } }],
    ['GET', '/v1/tenants/walk/sites'], ['GET', '/v1/tenants/walk/sites/walk.example'],
    ['PATCH', '/v1/tenants/walk/sites/walk.example', { target: { kind: 'instance', instance: 'web', port: 8081 } }],
    ['GET', '/v1/tenants/walk/export'],
    ['POST', '/v1/apply', { documents: [{ kind: 'Site', tenant: 'walk', hostname: 'walk.example', target: { kind: 'instance', instance: 'web', port: 8082 } }], dryRun: true }],
    ['POST', '/v1/apply', { documents: [{ kind: 'Site', tenant: 'walk', hostname: 'walk.example', bogus: 1 }] }, 400],
    ['GET', '/v1/certificates/ca'], ['POST', '/v1/tenants/walk/certificates/local-ca', { hostnames: ['walk.example'] }],
    ['GET', '/v1/tenants/walk/certificates'], ['POST', '/v1/tenants/walk/certificates', { certificate: 'x', key: 'y' }, 422],
    // This daemon has no ACME directory and no gateway: the declared 422s.
    ['POST', '/v1/tenants/walk/certificates/acme', { hostnames: ['walk.example'] }, 422],
    ['GET', '/v1/listeners'], ['POST', '/v1/listeners', { name: 'extra', address: '127.0.0.1', port: 1, protocol: 'http' }, 422],
    ['DELETE', '/v1/listeners/extra', undefined, 404],
    ['DELETE', '/v1/tenants/walk/sites/walk.example'], ['DELETE', '/v1/tenants/walk/domains/walk.example'],
    ['GET', '/v1/operations'], ['GET', '/v1/audit/head'], ['GET', '/v1/audit/entries'], ['GET', '/v1/audit/proof/inclusion?index=0'],
    ['GET', '/v1/audit/proof/consistency?from=1'], ['GET', '/v1/audit/export?tenant=walk'], ['GET', '/v1/audit/verify'], ['GET', '/v1/alerts?tenant=walk&priority=warning'],
    ['POST', '/v1/admin/backups?wait=60', { dir: tempDir('walk-backup') }],
    // Outputs: a provider webhook nobody listens to, a tenant's that times out — `test` answers 200 with delivered: false.
    ['POST', '/v1/outputs', { name: 'walk', type: 'webhook', url: 'http://127.0.0.1:1/', retries: 0 }, 201], ['GET', '/v1/outputs'],
    ['GET', '/v1/outputs/walk'], ['POST', '/v1/outputs/walk/test'], ['DELETE', '/v1/outputs/walk'],
    ['POST', '/v1/tenants/walk/outputs', { name: 'walk', type: 'webhook', url: 'http://192.0.2.1/', timeoutMs: 200, retries: 0 }, 201],
    ['GET', '/v1/tenants/walk/outputs'], ['GET', '/v1/tenants/walk/outputs/walk'], ['POST', '/v1/tenants/walk/outputs/walk/test'],
    ['DELETE', '/v1/tenants/walk/outputs/walk'],
    ['DELETE', '/v1/tenants/walk/instances/web?wait=10'], ['DELETE', '/v1/users/walker'], ['DELETE', '/v1/tenants/walk'],
  ];
  const covered = new Set<AnyRoute>();
  let lastOp = '';
  for (const [method, path, body, expected] of walk) {
    const res = await d.request(method, path, { body, headers: reason });
    const route = routeFor(method, path);
    assert.ok(route, `${method} ${path} has a route`);
    covered.add(route);
    assert.ok(expected ? res.status === expected : res.status < 300, `${method} ${path} → ${res.status} ${JSON.stringify(res.body)}`);
    const schema = route.responses[res.status];
    assert.ok(schema !== undefined, `${method} ${path} answered ${res.status}, which it does not declare`);
    if (schema) {
      const check = schema.safeParse(res.body);
      assert.ok(check.success, `${method} ${path}: ${check.success ? '' : JSON.stringify(check.error.issues)}`);
    }
    if (res.body?.operation?.id && !lastOp) {
      lastOp = res.body.operation.id;
      const op = await d.request('GET', `/v1/operations/${lastOp}`);
      const opCheck = routeFor('GET', `/v1/operations/${lastOp}`)!.responses[200]!.safeParse(op.body);
      assert.ok(opCheck.success, JSON.stringify([op.body, opCheck.error?.issues]));
      covered.add(routeFor('GET', `/v1/operations/${lastOp}`)!);
    }
    if (method === 'POST' && path === '/v1/tenants/walk/certificates/local-ca') {
      for (const [m, status] of [['GET', 200], ['DELETE', 204]] as const) {
        const p = `/v1/tenants/walk/certificates/${res.body.id}`;
        const r = await d.request(m, p, { headers: reason });
        assert.equal(r.status, status);
        const declared = routeFor(m, p)!.responses[status];
        if (declared) assert.ok(declared.safeParse(r.body).success, JSON.stringify(r.body));
        covered.add(routeFor(m, p)!);
      }
    }
    if (method === 'POST' && path === '/v1/tokens') {
      const del = await d.request('DELETE', `/v1/tokens/${res.body.token.id}`);
      assert.equal(del.status, 204);
      covered.add(routeFor('DELETE', `/v1/tokens/${res.body.token.id}`)!);
    }
  }
  // File copies take a tar body: an empty archive; the fake driver cannot copy, and walk.example is no static site — the declared 422s.
  const tenantFor2 = await d.request('POST', '/v1/tenants', { body: { name: 'walk2' } });
  assert.equal(tenantFor2.status, 201);
  await d.request('POST', '/v1/tenants/walk2/instances?wait=10', { body: { name: 'web', level: 'os' }, headers: reason });
  await d.request('POST', '/v1/tenants/walk2/sites', { body: { hostname: 'walk2.example', target: { kind: 'redirect', to: 'https://example.com/' } }, headers: reason });
  for (const path of ['/v1/tenants/walk2/instances/web/files?path=/', '/v1/tenants/walk2/sites/walk2.example/files?path=/']) {
    const res = await d.request('PUT', path, { rawBody: '\0'.repeat(1024), headers: { ...reason, 'content-type': 'application/x-tar' } });
    const route = routeFor('PUT', path)!;
    assert.equal(res.status, 422, `PUT ${path} → ${res.status} ${JSON.stringify(res.body)}`);
    assert.ok(route.responses[422]!.safeParse(res.body).success);
    covered.add(route);
  }
  for (const raw of API_ROUTES.filter((r) => r.raw)) covered.add(raw);
  const missing = API_ROUTES.filter((r) => !covered.has(r)).map((r) => `${r.method} ${r.url}`);
  assert.deepEqual(missing, [], 'every route walked');
});

test('/metrics speaks Prometheus and counts API requests', async () => {
  assert.equal((await fetch(`${d.url}/metrics`)).status, 401, 'a scrape needs a token');
  const res = await fetch(`${d.url}/metrics`, { headers: { authorization: `Bearer ${d.adminToken}` } });
  const text = await res.text();
  assert.match(res.headers.get('content-type') ?? '', /text\/plain/);
  assert.match(text, /strata_api_requests_total\{method="GET",route="\/v1\/tenants"/);
  assert.match(text, /strata_audit_entries \d+/);
});
