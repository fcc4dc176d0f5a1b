/**
 * The front door through the daemon: a site whose instance is paused, frozen
 * by the guard or stopped answers 503 with Retry-After and the neutral page
 * (never 404, never another tenant's wildcard); a site follows its instance by
 * id; hostnames have owners — a wildcard over another tenant's name and a name
 * inside another tenant's domain are refused with 409.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { errorPage } from '../../src/gateway/pages.js';
import type { ObservedInstance } from '../../src/levels/driver.js';
import { FakeDriver } from '../support/fake-driver.js';
import { TestDaemon } from '../support/harness.js';
import { viaGateway } from '../support/net.js';
import { until } from '../support/until.js';

/** The fake driver, with a real backend behind every running instance. */
class FakeDriverWithBackend extends FakeDriver {
  override async inspect(id: string): Promise<ObservedInstance | null> {
    const seen = await super.inspect(id);
    return seen && { ...seen, info: { ...seen.info, address: '127.0.0.1' } };
  }
}

interface Backend { server: Server; port: number; hosts: string[] }

async function backend(name: string): Promise<Backend> {
  const hosts: string[] = [];
  const server = createServer((req, res) => {
    hosts.push(String(req.headers.host));
    res.end(`${name} saw ${req.headers.host}`);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as AddressInfo).port, hosts };
}

let d: TestDaemon;
let victim: Backend;
let intruder: Backend;
let gatewayPort: number;
let ta: string;
let ty: string;

const visit = (host: string) => viaGateway(gatewayPort, host, '/', { withHeaders: true });
const servedBy = async (host: string, status: number) => until(async () => {
  const r = await visit(host);
  return r.status === status ? r : null;
}, { what: `${host} answering ${status}`, ms: 5_000 });

before(async () => {
  [victim, intruder] = await Promise.all([backend('victim'), backend('intruder')]);
  d = await TestDaemon.start({
    drivers: [new FakeDriverWithBackend({ level: 'os' })],
    gateway: { listeners: [{ id: 'http', address: '127.0.0.1', port: 0, protocol: 'http' }], options: { workers: 1 } },
  });
  gatewayPort = d.daemon.services.gateway!.addresses()[0]!.port;
  ta = await d.tenantWithUser('ta');
  ty = await d.tenantWithUser('ty');
});
after(async () => {
  await d.close();
  victim.server.close();
  intruder.server.close();
});

const launch = async (token: string, tenant: string, name: string): Promise<string> => {
  const r = await d.request('POST', `/v1/tenants/${tenant}/instances?wait=10`, { token, body: { name, level: 'os' } });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.instance.id as string;
};
const addSite = (token: string, tenant: string, hostname: string, instance: string, port: number) =>
  d.request('POST', `/v1/tenants/${tenant}/sites`, { token, body: { hostname, target: { kind: 'instance', instance, port } } });
const act = async (token: string, tenant: string, name: string, action: string): Promise<void> => {
  const r = await d.request('POST', `/v1/tenants/${tenant}/instances/${name}/${action}?wait=10`, { token });
  assert.ok(r.status < 300, `${action}: ${r.status} ${JSON.stringify(r.body)}`);
};

test('a paused, a frozen and a stopped instance\'s site answer 503 with Retry-After and the neutral page; resumed, it serves again', async () => {
  const id = await launch(ta, 'ta', 'web');
  assert.equal((await addSite(ta, 'ta', 'app.ta.test', 'web', victim.port)).status, 201);
  await servedBy('app.ta.test', 200);

  await act(ta, 'ta', 'web', 'pause');
  const paused = await servedBy('app.ta.test', 503);
  assert.equal(paused.headers?.['retry-after'], '30');
  assert.equal(paused.body, errorPage(503).toString('latin1'), 'the neutral page: it names no tenant, site or software');
  await act(ta, 'ta', 'web', 'resume');
  assert.equal((await servedBy('app.ta.test', 200)).body, 'victim saw app.ta.test');

  // Frozen by the guard's actuator (a pause as the system principal).
  await d.daemon.integrity.target.freeze(id);
  assert.equal((await servedBy('app.ta.test', 503)).headers?.['retry-after'], '30');
  await act(ta, 'ta', 'web', 'resume');
  await servedBy('app.ta.test', 200);

  await act(ta, 'ta', 'web', 'stop');
  const stopped = await servedBy('app.ta.test', 503);
  assert.equal(stopped.headers?.['retry-after'], '30');
  await act(ta, 'ta', 'web', 'start');
  await servedBy('app.ta.test', 200);
});

test("another tenant's wildcard never receives the visitors of a paused, stopped or deleted instance's site", async () => {
  await launch(ty, 'ty', 'trap');
  // A wildcard from before hostnames had owners (the API refuses it now: next test), written to the store directly.
  const tyId = d.daemon.services.store.getTenantByName('ty')!.id;
  d.daemon.services.store.createSite({ tenantId: tyId, hostname: '*.ta.test', target: { kind: 'instance', instance: 'trap', port: intruder.port } });
  await d.daemon.services.frontDoor!.flush();
  assert.equal((await servedBy('other.ta.test', 200)).body, 'intruder saw other.ta.test', 'the wildcard is live');
  intruder.hosts.length = 0;

  await act(ta, 'ta', 'web', 'pause');
  for (let i = 0; i < 5; i++) assert.equal((await visit('app.ta.test')).status, 503);
  await act(ta, 'ta', 'web', 'stop');
  for (let i = 0; i < 5; i++) assert.equal((await visit('app.ta.test')).status, 503);
  assert.deepEqual(intruder.hosts.filter((h) => h === 'app.ta.test'), []);

  // Deleted: the neutral 404, still not the wildcard; a new instance of the same name is another instance.
  const del = await d.request('DELETE', '/v1/tenants/ta/instances/web?wait=10', { token: ta });
  assert.ok(del.status < 300, JSON.stringify(del.body));
  assert.equal((await servedBy('app.ta.test', 404)).body, errorPage(404).toString('latin1'));
  await launch(ta, 'ta', 'web');
  await d.daemon.services.frontDoor!.flush();
  assert.equal((await visit('app.ta.test')).status, 404, 'the site followed the deleted instance, not its name');
  assert.deepEqual(intruder.hosts.filter((h) => h === 'app.ta.test'), []);
  const shown = await d.request('GET', '/v1/tenants/ta/sites/app.ta.test', { token: ta });
  assert.equal(typeof shown.body.instanceId, 'string');
  assert.equal((await d.request('DELETE', '/v1/tenants/ty/sites/*.ta.test', { token: ty })).status, 204);
});

test("a wildcard over another tenant's name is refused with 409, and so is a name under another tenant's wildcard", async () => {
  assert.equal((await addSite(ta, 'ta', 'compat.ta.test', 'web', victim.port)).status, 201);
  for (const hostname of ['*.compat.ta.test', '*.ta.test', '*.test']) {
    const r = await addSite(ty, 'ty', hostname, 'trap', intruder.port);
    assert.equal(r.status, 409, `${hostname}: ${JSON.stringify(r.body)}`);
    assert.equal(r.body.error.code, 'STRATA_ERR_HOSTNAME_OVERLAP');
    assert.match(r.body.error.message, /another tenant/);
  }
  assert.equal((await addSite(ty, 'ty', '*.ty.test', 'trap', intruder.port)).status, 201, 'a wildcard over nobody else\'s names');
  const under = await addSite(ta, 'ta', 'x.ty.test', 'web', victim.port);
  assert.equal(under.status, 409);
  assert.equal(under.body.error.code, 'STRATA_ERR_HOSTNAME_OVERLAP');
});

test('domains: the provider assigns them; nobody else adds a name inside one, exact or wildcard', async () => {
  const refused = await d.request('POST', '/v1/tenants/ta/domains', { token: ta, body: { name: 'ta.example' } });
  assert.equal(refused.status, 403, 'a tenant does not assign itself domains');
  const assigned = await d.request('POST', '/v1/tenants/ta/domains', { body: { name: 'TA.example.' } });
  assert.equal(assigned.status, 201, JSON.stringify(assigned.body));
  assert.deepEqual([assigned.body.name, assigned.body.tenant, assigned.body.source], ['ta.example', 'ta', 'assigned']);

  for (const hostname of ['ta.example', 'www.ta.example', 'a.b.ta.example', '*.ta.example']) {
    const r = await addSite(ty, 'ty', hostname, 'trap', intruder.port);
    assert.equal(r.status, 409, hostname);
    assert.equal(r.body.error.code, 'STRATA_ERR_HOSTNAME_NOT_YOURS');
    assert.equal(r.body.error.details.domain, 'ta.example');
  }
  const over = await addSite(ty, 'ty', '*.example', 'trap', intruder.port);
  assert.equal(over.body.error.code, 'STRATA_ERR_HOSTNAME_OVERLAP');
  assert.equal((await addSite(ta, 'ta', '*.ta.example', 'web', victim.port)).status, 201, 'its holder may');

  const inside = await d.request('POST', '/v1/tenants/ty/domains', { body: { name: 'shop.ta.example' } });
  assert.equal(inside.body.error.code, 'STRATA_ERR_DOMAIN_TAKEN');
  const inUse = await d.request('POST', '/v1/tenants/ta/domains', { body: { name: 'ty.test' } });
  assert.equal(inUse.status, 409);
  assert.equal(inUse.body.error.code, 'STRATA_ERR_DOMAIN_IN_USE');
  assert.deepEqual(inUse.body.error.details.sites, ['*.ty.test']);

  assert.deepEqual((await d.request('GET', '/v1/tenants/ta/domains', { token: ta })).body.items.map((x: { name: string }) => x.name), ['ta.example']);
  assert.deepEqual((await d.request('GET', '/v1/tenants/ty/domains', { token: ty })).body.items, []);
  assert.equal((await d.request('GET', '/v1/tenants/ta/domains', { token: ty })).status, 404, "another tenant's domains are not shown");
  assert.equal((await d.request('DELETE', '/v1/tenants/ta/domains/ta.example')).status, 204);
});
