/**
 * The daemon's front door: sites made through the API are served by the gateway
 * — a static docroot and an instance's port — and removing a site takes it off
 * the gateway at once.
 */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { ObservedInstance } from '../../src/levels/driver.js';
import { FakeDriver } from '../support/fake-driver.js';
import { TestDaemon } from '../support/harness.js';
import { viaGateway } from '../support/net.js';

/** The fake driver, with a real backend behind every running instance. */
class FakeDriverWithBackend extends FakeDriver {
  override async inspect(id: string): Promise<ObservedInstance | null> {
    const seen = await super.inspect(id);
    return seen && { ...seen, info: { ...seen.info, address: '127.0.0.1' } };
  }
}

let d: TestDaemon;
let backend: Server;
let backendPort: number;
let gatewayPort: number;

const visit = (host: string, path = '/') => viaGateway(gatewayPort, host, path);

before(async () => {
  backend = createServer((req, res) => res.end(`backend saw ${req.headers.host} ${req.url}`));
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
  backendPort = (backend.address() as AddressInfo).port;
  d = await TestDaemon.start({
    drivers: [new FakeDriverWithBackend({ level: 'os' })],
    gateway: { listeners: [{ id: 'http', address: '127.0.0.1', port: 0, protocol: 'http' }], options: { workers: 1 } },
  });
  gatewayPort = d.daemon.services.gateway!.addresses()[0]!.port;
  await d.request('POST', '/v1/tenants', { body: { name: 'acme' } });
});
after(async () => {
  await d.close();
  backend.close();
});

const reason = { 'x-strata-reason': 'front door test' };

test('a static site is served from the tenant docroot by name', async () => {
  const root = d.docroot('acme', 'www');
  mkdirSync(root, { recursive: true });
  writeFileSync(join(root, 'index.html'), '<h1>acme</h1>');
  const r = await d.request('POST', '/v1/tenants/acme/sites', { body: { hostname: 'www.acme.test', target: { kind: 'static', root: 'www' } }, headers: reason });
  assert.equal(r.status, 201);
  let seen = { status: 0, body: '' };
  for (let i = 0; i < 50 && seen.status !== 200; i++) {
    seen = await visit('www.acme.test');
    if (seen.status !== 200) await new Promise((res) => setTimeout(res, 20));
  }
  assert.equal(seen.status, 200);
  assert.equal(seen.body, '<h1>acme</h1>');
  const unknown = await visit('nobody.test');
  assert.equal(unknown.status, 404);
  assert.ok(!unknown.body.includes('acme'), 'the 404 page names no tenant');
});

test('an instance site proxies to the address the driver reports; deleting the site stops it', async () => {
  const l = await d.request('POST', '/v1/tenants/acme/instances?wait=10', { body: { name: 'web', level: 'os' }, headers: reason });
  assert.equal(l.status, 200);
  const s = await d.request('POST', '/v1/tenants/acme/sites', { body: { hostname: 'app.acme.test', target: { kind: 'instance', instance: 'web', port: backendPort } }, headers: reason });
  assert.equal(s.status, 201);
  let seen = { status: 0, body: '' };
  for (let i = 0; i < 50 && seen.status !== 200; i++) {
    seen = await visit('app.acme.test', '/hello');
    if (seen.status !== 200) await new Promise((res) => setTimeout(res, 20));
  }
  assert.equal(seen.body, 'backend saw app.acme.test /hello');
  const started = Date.now();
  assert.equal((await d.request('DELETE', '/v1/tenants/acme/sites/app.acme.test', { headers: reason })).status, 204);
  while ((await visit('app.acme.test')).status !== 404) {
    assert.ok(Date.now() - started < 2000, 'the site left the gateway');
    await new Promise((res) => setTimeout(res, 5));
  }
});
