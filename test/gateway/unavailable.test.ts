/**
 * A held name that is not served right now (its instance paused, stopped …)
 * answers 503 with Retry-After and the neutral page — on HTTP/1.1, HTTP/2 and
 * (by closing the stream) tls-passthrough — and never falls through to a
 * wildcard or the listener's default site, another tenant's in these cases.
 */
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { GatewayConfig, SiteRoute } from '../../src/gateway/index.js';
import { errorPage } from '../../src/gateway/pages.js';
import { makeEcCert, request, startBackend, upstream, withGateway, type Backend } from './helpers.js';
import { buildHello, inRecords, rawSession } from './passthrough-fixtures.js';
import { tempDir } from '../support/temp.js';

let dir: string;
let victim: Backend;
let intruder: Backend;
let pem: { certPem: string; keyPem: string };
before(async () => {
  dir = tempDir('unavailable');
  pem = makeEcCert(dir, 'neutral', ['gateway.invalid']);
  [victim, intruder] = await Promise.all([startBackend('victim'), startBackend('intruder')]);
});
after(async () => {
  await Promise.all([victim.close(), intruder.close()]);
});

const paused: SiteRoute['target'] = { kind: 'unavailable', status: 503, retryAfter: 30 };

/** `app.ta.test` (tenant ta) under ty's `*.ta.test`, and ty's site the listeners' default. */
function config(appTarget: SiteRoute['target']): GatewayConfig {
  return {
    listeners: [
      { id: 'web', address: '127.0.0.1', port: 0, protocol: 'http', defaultSite: 'catch.ty.test' },
      { id: 'tls', address: '127.0.0.1', port: 0, protocol: 'https', defaultCertificate: 'neutral' },
      { id: 'pass', address: '127.0.0.1', port: 0, protocol: 'tls-passthrough' },
    ],
    sites: [
      { hostname: 'app.ta.test', tenantId: 'ta', target: appTarget },
      { hostname: '*.ta.test', tenantId: 'ty', target: upstream(intruder) },
      { hostname: 'catch.ty.test', tenantId: 'ty', listeners: ['web', 'tls'], target: upstream(intruder) },
    ],
    certificates: [{ id: 'neutral', hostnames: [], tenantId: null, ...pem }],
  };
}

function h2get(port: number, authority: string): Promise<{ status: number; headers: http2.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`https://127.0.0.1:${port}`, { servername: authority, rejectUnauthorized: false });
    session.on('error', reject);
    const req = session.request({ ':method': 'GET', ':path': '/', ':authority': authority, ':scheme': 'https' });
    let headers: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    req.on('response', (h) => { headers = h; });
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      session.close();
      resolve({ status: Number(headers[':status']), headers, body: Buffer.concat(chunks).toString('latin1') });
    });
    req.on('error', reject);
  });
}

test('HTTP/1.1 and HTTP/2: 503 + Retry-After + the neutral page, never the wildcard or default site of another tenant', async () => {
  await withGateway(config(paused), {}, async (_gw, port) => {
    const before = intruder.seen.length;
    const h1 = await request(port('web'), { host: 'app.ta.test' });
    assert.equal(h1.status, 503);
    assert.equal(h1.headers['retry-after'], '30');
    assert.equal(h1.headers['cache-control'], 'no-store');
    assert.equal(h1.body, errorPage(503).toString('latin1'), 'the neutral page: no tenant, no site, no software named');
    const h2 = await h2get(port('tls'), 'app.ta.test');
    assert.equal(h2.status, 503);
    assert.equal(h2.headers['retry-after'], '30');
    assert.equal(h2.body, errorPage(503).toString('latin1'));
    assert.equal(intruder.seen.length, before, "ty's wildcard and default site received nothing of ta's visitors");
    // Other names under the wildcard still reach it: only the held name is kept from it.
    assert.equal((await request(port('web'), { host: 'other.ta.test' })).json().backend, 'intruder');
  });
});

test('a gone instance keeps its name: 404 without Retry-After, still not the wildcard', async () => {
  await withGateway(config({ kind: 'unavailable', status: 404 }), {}, async (_gw, port) => {
    const r = await request(port('web'), { host: 'app.ta.test' });
    assert.equal(r.status, 404);
    assert.equal(r.headers['retry-after'], undefined);
    assert.equal(r.body, errorPage(404).toString('latin1'));
  });
});

test('tls-passthrough: the stream of an unavailable site is closed without a byte, never handed to the wildcard', async () => {
  await withGateway(config(paused), {}, async (_gw, port) => {
    const before = intruder.seen.length;
    const r = await rawSession(port('pass'), [inRecords(buildHello({ sni: 'app.ta.test' }))], { idleMs: 2_000 });
    assert.equal(r.closed, true);
    assert.equal(r.received.length, 0);
    assert.equal(intruder.seen.length, before);
  });
});

test('an update takes a site from served to unavailable and back in place', async () => {
  await withGateway(config(upstream(victim)), {}, async (gw, port) => {
    assert.equal((await request(port('web'), { host: 'app.ta.test' })).json().backend, 'victim');
    await gw.update(config(paused));
    assert.equal((await request(port('web'), { host: 'app.ta.test' })).status, 503);
    await gw.update(config(upstream(victim)));
    assert.equal((await request(port('web'), { host: 'app.ta.test' })).json().backend, 'victim');
  });
});

test('validation: 503 or 404 only; Retry-After a whole number of seconds on a 503', async () => {
  const bad: Array<SiteRoute['target']> = [
    { kind: 'unavailable', status: 500 as 503 },
    { kind: 'unavailable', status: 404, retryAfter: 5 },
    { kind: 'unavailable', status: 503, retryAfter: 1.5 },
  ];
  for (const target of bad) {
    await assert.rejects(withGateway(config(target), {}, async () => {}), /STRATA_ERR_CONFIG|unavailable|retryAfter/);
  }
});
