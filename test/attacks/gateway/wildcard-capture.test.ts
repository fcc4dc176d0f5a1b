/**
 * Tenant ty tries to capture tenant ta's visitors — cookies, credentials and
 * all — at the front door, the way issue 13 found it could: a wildcard over
 * ta's name (`*.ta.test`, `*.test`), a name under or above it, ta's exact name,
 * a domain of its own over ta's; then waits for ta's instance to be frozen,
 * when ta's name used to fall through to ty's wildcard. Every attempt is
 * refused (409 naming the reason, 403 for domains), and ta's visitors meet
 * the neutral 503 with Retry-After while ta's instance is frozen, never ty's
 * site.
 */
import assert from 'node:assert/strict';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { errorPage } from '../../../src/gateway/pages.js';
import type { ObservedInstance } from '../../../src/levels/driver.js';
import { FakeDriver } from '../../support/fake-driver.js';
import { TestDaemon } from '../../support/harness.js';
import { until } from '../../support/until.js';

class FakeDriverWithBackend extends FakeDriver {
  override async inspect(id: string): Promise<ObservedInstance | null> {
    const seen = await super.inspect(id);
    return seen && { ...seen, info: { ...seen.info, address: '127.0.0.1' } };
  }
}

interface Seen { host: string; cookie: string | undefined; authorization: string | undefined }
interface Backend { server: Server; port: number; seen: Seen[] }

async function backend(name: string): Promise<Backend> {
  const seen: Seen[] = [];
  const server = createServer((req, res) => {
    seen.push({ host: String(req.headers.host), cookie: req.headers.cookie, authorization: req.headers.authorization });
    res.end(name);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as AddressInfo).port, seen };
}

/** A visitor of ta's site with its session cookie and credentials. */
function visitAsTaUser(port: number, host: string): Promise<{ status: number; retryAfter: string | undefined; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({
      host: '127.0.0.1', port, path: '/account', agent: false,
      headers: { host, cookie: 'session=ta-visitor-secret', authorization: 'Basic dGE6c2VjcmV0' },
    }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'] as string | undefined, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

let d: TestDaemon;
let victim: Backend;
let intruder: Backend;
let port: number;
let ta: string;
let ty: string;

before(async () => {
  [victim, intruder] = await Promise.all([backend('ta'), backend('ty')]);
  d = await TestDaemon.start({
    drivers: [new FakeDriverWithBackend({ level: 'os' })],
    gateway: { listeners: [{ id: 'http', address: '127.0.0.1', port: 0, protocol: 'http' }], options: { workers: 1 } },
  });
  port = d.daemon.services.gateway!.addresses()[0]!.port;
  ta = await d.tenantWithUser('ta');
  ty = await d.tenantWithUser('ty');
  for (const [token, tenant] of [[ta, 'ta'], [ty, 'ty']] as const) {
    const r = await d.request('POST', `/v1/tenants/${tenant}/instances?wait=10`, { token, body: { name: 'web', level: 'os' } });
    assert.equal(r.status, 200, JSON.stringify(r.body));
  }
  const site = await d.request('POST', '/v1/tenants/ta/sites', { token: ta, body: { hostname: 'compat.ta.test', target: { kind: 'instance', instance: 'web', port: victim.port } } });
  assert.equal(site.status, 201);
  await until(async () => (await visitAsTaUser(port, 'compat.ta.test')).status === 200, { what: "ta's site serving" });
});
after(async () => {
  await d.close();
  victim.server.close();
  intruder.server.close();
});

const claim = (hostname: string) =>
  d.request('POST', '/v1/tenants/ty/sites', { token: ty, body: { hostname, target: { kind: 'instance', instance: 'web', port: intruder.port } } });

test("ty cannot put a site over, under, above or on ta's name", async () => {
  for (const hostname of ['*.ta.test', '*.test', '*.compat.ta.test', 'x.compat.ta.test', 'ta.test']) {
    const r = await claim(hostname);
    assert.equal(r.status, 409, `${hostname}: ${r.status} ${JSON.stringify(r.body)}`);
    assert.equal(r.body.error.code, 'STRATA_ERR_HOSTNAME_OVERLAP', hostname);
  }
  const same = await claim('compat.ta.test');
  assert.equal(same.status, 409);
  assert.equal(same.body.error.code, 'STRATA_ERR_CONFLICT');
  // Nor hand itself a domain over ta's names.
  const domain = await d.request('POST', '/v1/tenants/ty/domains', { token: ty, body: { name: 'ta.test' } });
  assert.equal(domain.status, 403);
  const listed = await d.request('GET', '/v1/tenants/ty/sites', { token: ty });
  assert.deepEqual(listed.body.items, []);
});

test("while ta's instance is frozen its visitors get the neutral 503 with Retry-After, never ty's site", async () => {
  const id = d.daemon.services.store.getInstance(d.daemon.services.store.getTenantByName('ta')!.id, 'web')!.id;
  await d.daemon.integrity.target.freeze(id);
  const frozen = await until(async () => {
    const r = await visitAsTaUser(port, 'compat.ta.test');
    return r.status === 503 ? r : null;
  }, { what: '503 while frozen', ms: 5_000 });
  assert.equal(frozen.retryAfter, '30');
  assert.equal(frozen.body, errorPage(503).toString('latin1'), 'the neutral page');
  for (let i = 0; i < 10; i++) assert.equal((await visitAsTaUser(port, 'compat.ta.test')).status, 503);
  // ty keeps trying while ta is frozen: still refused.
  for (const hostname of ['*.ta.test', '*.test']) assert.equal((await claim(hostname)).status, 409);
  assert.deepEqual(intruder.seen, [], "ty's backend received nothing: no request, no cookie, no credentials");
  const resumed = await d.request('POST', '/v1/tenants/ta/instances/web/resume?wait=10', { token: ta });
  assert.ok(resumed.status < 300);
  await until(async () => (await visitAsTaUser(port, 'compat.ta.test')).status === 200, { what: 'served again' });
  assert.ok(victim.seen.every((s) => s.host === 'compat.ta.test' && s.cookie === 'session=ta-visitor-secret'));
});

test("a wildcard ty set first blocks ta's names there, and the provider cannot assign ta the domain until it is gone", async () => {
  assert.equal((await claim('*.ta2.test')).status, 201, 'unowned names: first come');
  const t2 = await d.tenantWithUser('ta2');
  await d.request('POST', '/v1/tenants/ta2/instances?wait=10', { token: t2, body: { name: 'web', level: 'os' } });
  const under = await d.request('POST', '/v1/tenants/ta2/sites', { token: t2, body: { hostname: 'www.ta2.test', target: { kind: 'instance', instance: 'web', port: victim.port } } });
  assert.equal(under.body.error.code, 'STRATA_ERR_HOSTNAME_OVERLAP');
  const assign = await d.request('POST', '/v1/tenants/ta2/domains', { body: { name: 'ta2.test' } });
  assert.equal(assign.body.error.code, 'STRATA_ERR_DOMAIN_IN_USE', 'assigning would leave ty catching the domain\'s other names');
  assert.equal((await d.request('DELETE', '/v1/tenants/ty/sites/*.ta2.test', { headers: { 'x-strata-reason': 'domain ta2.test goes to ta2' } })).status, 204);
  assert.equal((await d.request('POST', '/v1/tenants/ta2/domains', { body: { name: 'ta2.test' } })).status, 201);
  assert.equal((await claim('*.ta2.test')).body.error.code, 'STRATA_ERR_HOSTNAME_NOT_YOURS');
  const mine = await d.request('POST', '/v1/tenants/ta2/sites', { token: t2, body: { hostname: 'www.ta2.test', target: { kind: 'instance', instance: 'web', port: victim.port } } });
  assert.equal(mine.status, 201);
});
