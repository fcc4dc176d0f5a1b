/**
 * Sites bound to gateway listeners through the API: IP-based (a site served on
 * 127.0.0.2 only) and port-based (a site on one port of 127.0.0.1 only) virtual
 * hosts, next to a site on every listener; the names validated (unknown
 * listener, a static site on a passthrough listener, duplicates); a listener
 * that sites are bound to cannot be removed under them.
 */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { TestDaemon } from '../support/harness.js';
import { freePort, viaGateway, type GatewayAnswer } from '../support/net.js';

let d: TestDaemon;
let token: string;
let mainPort: number;
let otherPort: number;
let ip2Port: number;
let passPort: number;

/** Status and body of GET / with Host `host` at address:port (status 0 and the error when nothing answered). */
const get = (address: string, port: number, host: string): Promise<GatewayAnswer> => viaGateway(port, host, '/', { address });

const addSite = (hostname: string, extra: Record<string, unknown> = {}) =>
  d.request('POST', '/v1/tenants/shop/sites', { token, body: { hostname, target: { kind: 'static', root: 'www' }, ...extra } });

before(async () => {
  [mainPort, otherPort] = [await freePort(), await freePort()];
  d = await TestDaemon.start({
    gateway: {
      listeners: [
        { id: 'main', address: '127.0.0.1', port: mainPort, protocol: 'http' },
        { id: 'other-port', address: '127.0.0.1', port: otherPort, protocol: 'http' },
      ],
      options: { workers: 1 },
    },
  });
  token = await d.tenantWithUser('shop', 'tenant-admin');
  const root = d.docroot('shop', 'www');
  mkdirSync(root, { recursive: true });
  writeFileSync(join(root, 'index.html'), 'shop\n');
  ip2Port = await freePort('127.0.0.2');
  passPort = await freePort('127.0.0.3');
  assert.equal((await d.request('POST', '/v1/listeners', { body: { name: 'ip2', address: '127.0.0.2', port: ip2Port, protocol: 'http' } })).status, 201);
  assert.equal((await d.request('POST', '/v1/listeners', { body: { name: 'pass', address: '127.0.0.3', port: passPort, protocol: 'tls-passthrough' } })).status, 201);
});
after(async () => {
  await d.close();
});

test('a site bound to one address or one port is served there only; an unbound site everywhere', async () => {
  const byIp = await addSite('ip.shop.test', { listeners: ['ip2'] });
  assert.equal(byIp.status, 201, JSON.stringify(byIp.body));
  assert.deepEqual(byIp.body.listeners, ['ip2']);
  assert.equal((await addSite('port.shop.test', { listeners: ['other-port'] })).status, 201);
  const everywhere = await addSite('all.shop.test');
  assert.equal(everywhere.status, 201);
  assert.equal(everywhere.body.listeners, null, 'no listeners given: every listener');
  await d.daemon.services.frontDoor!.flush();

  assert.deepEqual(await get('127.0.0.2', ip2Port, 'ip.shop.test'), { status: 200, body: 'shop\n' });
  assert.equal((await get('127.0.0.1', mainPort, 'ip.shop.test')).status, 404, 'not on the other address');
  assert.equal((await get('127.0.0.1', otherPort, 'ip.shop.test')).status, 404);

  assert.equal((await get('127.0.0.1', otherPort, 'port.shop.test')).status, 200);
  assert.equal((await get('127.0.0.1', mainPort, 'port.shop.test')).status, 404, 'not on the other port of the same address');
  assert.equal((await get('127.0.0.2', ip2Port, 'port.shop.test')).status, 404);

  for (const [address, port] of [['127.0.0.1', mainPort], ['127.0.0.1', otherPort], ['127.0.0.2', ip2Port]] as const) {
    assert.equal((await get(address, port, 'all.shop.test')).status, 200, `${address}:${port}`);
  }
  const shown = await d.request('GET', '/v1/tenants/shop/sites/port.shop.test', { token });
  assert.deepEqual(shown.body.listeners, ['other-port']);
});

test('listener names are validated: unknown, duplicated, empty, or a passthrough listener for a static site', async () => {
  const unknown = await addSite('x1.shop.test', { listeners: ['nope'] });
  assert.equal(unknown.status, 422);
  assert.equal(unknown.body.error.code, 'STRATA_ERR_SITE_LISTENER');
  assert.match(unknown.body.error.message, /no gateway listener is named 'nope'/);
  const passthrough = await addSite('x2.shop.test', { listeners: ['main', 'pass'] });
  assert.equal(passthrough.status, 422);
  assert.equal(passthrough.body.error.code, 'STRATA_ERR_SITE_LISTENER');
  assert.match(passthrough.body.error.message, /tls-passthrough/);
  assert.equal((await addSite('x3.shop.test', { listeners: ['main', 'main'] })).status, 400);
  assert.equal((await addSite('x4.shop.test', { listeners: [] })).status, 400);
  assert.equal((await addSite('x5.shop.test', { listeners: ['Main!'] })).status, 400);
  // Nothing refused was stored, and the gateway still serves what was.
  const names = (await d.request('GET', '/v1/tenants/shop/sites', { token })).body.items.map((s: { hostname: string }) => s.hostname);
  assert.ok(!names.some((n: string) => n.startsWith('x')), names.join(','));
  assert.equal((await get('127.0.0.2', ip2Port, 'ip.shop.test')).status, 200);
});

test('a listener with sites bound to it is not removed under them; once they are gone it is', async () => {
  const refused = await d.request('DELETE', '/v1/listeners/ip2');
  assert.equal(refused.status, 409);
  assert.equal(refused.body.error.code, 'STRATA_ERR_NOT_EMPTY');
  assert.deepEqual(refused.body.error.details.sites, ['ip.shop.test']);
  assert.equal((await get('127.0.0.2', ip2Port, 'ip.shop.test')).status, 200, 'still served');
  assert.equal((await d.request('DELETE', '/v1/tenants/shop/sites/ip.shop.test', { token })).status, 204);
  assert.equal((await d.request('DELETE', '/v1/listeners/ip2')).status, 204);
  assert.equal((await get('127.0.0.2', ip2Port, 'all.shop.test')).error, 'ECONNREFUSED');
  assert.equal((await get('127.0.0.1', mainPort, 'all.shop.test')).status, 200);
});
