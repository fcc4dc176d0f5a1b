import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { rawExchange, request, startBackend, upstream, withGateway, type Backend } from './helpers.js';

let alpha: Backend;
let beta: Backend;
let gamma: Backend;
before(async () => {
  [alpha, beta, gamma] = await Promise.all([startBackend('alpha'), startBackend('beta'), startBackend('gamma')]);
});
after(async () => {
  await Promise.all([alpha.close(), beta.close(), gamma.close()]);
});

test('name-based virtual hosts share one address and port', async () => {
  await withGateway({
    listeners: [{ id: 'web', address: '127.0.0.1', port: 0, protocol: 'http' }],
    sites: [
      { hostname: 'alpha.test', tenantId: 't-alpha', target: upstream(alpha) },
      { hostname: 'beta.test', tenantId: 't-beta', target: upstream(beta) },
    ],
  }, { workers: 2 }, async (_gw, port) => {
    for (let i = 0; i < 10; i++) {
      assert.equal((await request(port(), { host: 'alpha.test' })).json().backend, 'alpha');
      assert.equal((await request(port(), { host: 'BETA.test.:8080' })).json().backend, 'beta');
    }
  });
});

test('IP-based virtual hosts: a site bound to 127.0.0.2 does not answer on 127.0.0.3', async () => {
  await withGateway({
    listeners: [
      { id: 'ip2', address: '127.0.0.2', port: 0, protocol: 'http', defaultSite: 'shared.test' },
      { id: 'ip3', address: '127.0.0.3', port: 0, protocol: 'http' },
    ],
    sites: [
      { hostname: 'shared.test', tenantId: 't-alpha', listeners: ['ip2'], target: upstream(alpha) },
      { hostname: 'shared.test', tenantId: 't-beta', listeners: ['ip3'], target: upstream(beta) },
      { hostname: 'only2.test', tenantId: 't-alpha', listeners: ['ip2'], target: upstream(alpha) },
    ],
  }, {}, async (_gw, port) => {
    assert.equal((await request(port('ip2'), { address: '127.0.0.2', host: 'shared.test' })).json().backend, 'alpha');
    assert.equal((await request(port('ip3'), { address: '127.0.0.3', host: 'shared.test' })).json().backend, 'beta');
    assert.equal((await request(port('ip2'), { address: '127.0.0.2', host: 'only2.test' })).json().backend, 'alpha');
    const miss = await request(port('ip3'), { address: '127.0.0.3', host: 'only2.test' });
    assert.equal(miss.status, 404);
    // A bare IP goes to the listener's default site.
    assert.equal((await request(port('ip2'), { address: '127.0.0.2', host: '127.0.0.2' })).json().backend, 'alpha');
  });
});

test('port-based virtual hosts: one address, one site per port', async () => {
  await withGateway({
    listeners: [
      { id: 'p1', address: '127.0.0.1', port: 0, protocol: 'http', defaultSite: 'p1.test' },
      { id: 'p2', address: '127.0.0.1', port: 0, protocol: 'http', defaultSite: 'p2.test' },
    ],
    sites: [
      { hostname: 'p1.test', tenantId: 't-alpha', listeners: ['p1'], target: upstream(alpha) },
      { hostname: 'p2.test', tenantId: 't-beta', listeners: ['p2'], target: upstream(beta) },
    ],
  }, {}, async (gw, port) => {
    assert.notEqual(port('p1'), port('p2'));
    assert.equal(gw.addresses().length, 2);
    assert.equal((await request(port('p1'))).json().backend, 'alpha');
    assert.equal((await request(port('p2'))).json().backend, 'beta');
    assert.equal((await request(port('p2'), { host: 'p1.test' })).json().backend, 'beta', 'p1.test is not served on p2: default site');
  });
});

test('wildcards: the longest suffix wins, exact names beat both, the apex is not a subdomain', async () => {
  await withGateway({
    listeners: [{ id: 'web', address: '127.0.0.1', port: 0, protocol: 'http' }],
    sites: [
      { hostname: '*.example.com', tenantId: 't-alpha', target: upstream(alpha) },
      { hostname: '*.b.example.com', tenantId: 't-beta', target: upstream(beta) },
      { hostname: 'exact.b.example.com', tenantId: 't-gamma', target: upstream(gamma) },
    ],
  }, {}, async (_gw, port) => {
    assert.equal((await request(port(), { host: 'a.example.com' })).json().backend, 'alpha');
    assert.equal((await request(port(), { host: 'x.b.example.com' })).json().backend, 'beta');
    assert.equal((await request(port(), { host: 'y.x.b.example.com' })).json().backend, 'beta');
    assert.equal((await request(port(), { host: 'exact.b.example.com' })).json().backend, 'gamma');
    assert.equal((await request(port(), { host: 'example.com' })).status, 404);
  });
});

test('unknown names get a neutral 404 that names no tenant; no default means no guessing', async () => {
  await withGateway({
    listeners: [{ id: 'web', address: '127.0.0.1', port: 0, protocol: 'http' }],
    sites: [{ hostname: 'secret-tenant.test', tenantId: 'tenant-acme', target: upstream(alpha) }],
  }, {}, async (_gw, port) => {
    for (const host of ['unknown.test', '127.0.0.1', 'secret-tenant.test.evil']) {
      const r = await request(port(), { host });
      assert.equal(r.status, 404);
      assert.match(r.body, /404 Not Found/);
      for (const leak of ['acme', 'secret', 'alpha', 'strata', 'node']) assert.doesNotMatch(r.body.toLowerCase(), new RegExp(leak));
      assert.equal(r.headers.server, undefined);
    }
    // HTTP/1.0 without Host: the default site (none here → 404); HTTP/1.1 without Host: 400.
    assert.match((await rawExchange(port(), 'GET / HTTP/1.0\r\n\r\n')).text, /^HTTP\/1\.1 404/);
    assert.match((await rawExchange(port(), 'GET / HTTP/1.1\r\n\r\n')).text, /^HTTP\/1\.1 400/);
  });
});

test('absolute-form targets route by their authority, not the Host header', async () => {
  await withGateway({
    listeners: [{ id: 'web', address: '127.0.0.1', port: 0, protocol: 'http' }],
    sites: [
      { hostname: 'alpha.test', tenantId: 't-alpha', target: upstream(alpha) },
      { hostname: 'beta.test', tenantId: 't-beta', target: upstream(beta) },
    ],
  }, {}, async (_gw, port) => {
    const r = await rawExchange(port(), 'GET http://beta.test/x?y=1 HTTP/1.1\r\nHost: alpha.test\r\nConnection: close\r\n\r\n');
    assert.match(r.text, /"backend":"beta"/);
    assert.match(r.text, /"url":"\/x\?y=1"/);
    assert.match(r.text, /"host":"beta.test"/);
  });
});

test('redirect sites answer with Location and keep the path for origin targets', async () => {
  await withGateway({
    listeners: [{ id: 'web', address: '127.0.0.1', port: 0, protocol: 'http' }],
    sites: [{ hostname: 'old.test', tenantId: 't', target: { kind: 'redirect', to: 'https://new.test', status: 308 } }],
  }, {}, async (_gw, port) => {
    const r = await request(port(), { host: 'old.test', path: '/a/b?c=d' });
    assert.equal(r.status, 308);
    assert.equal(r.headers.location, 'https://new.test/a/b?c=d');
  });
});
