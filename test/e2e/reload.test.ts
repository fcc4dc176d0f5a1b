/**
 * `Daemon.reload` (what `strata up` does on SIGHUP): changes made behind the
 * API's back — a listener written to the store directly, the gateway's neutral
 * certificate removed from the data dir for rotation — are served only once the
 * daemon reloads, and then at once.
 */
import assert from 'node:assert/strict';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { connect } from 'node:tls';
import { TestDaemon } from '../support/harness.js';
import { freePort, viaGateway } from '../support/net.js';

let d: TestDaemon;
let httpsPort: number;

/** The SHA-256 fingerprint of the certificate the https listener shows a client naming no site. */
const neutralFingerprint = (): Promise<string> => new Promise((resolve, reject) => {
  const socket = connect({ host: '127.0.0.1', port: httpsPort, servername: 'nobody.test', rejectUnauthorized: false }, () => {
    resolve(socket.getPeerCertificate().fingerprint256);
    socket.end();
  });
  socket.on('error', reject);
});

before(async () => {
  httpsPort = await freePort();
  d = await TestDaemon.start({
    gateway: {
      listeners: [{ id: 'http', address: '127.0.0.1', port: 0, protocol: 'http' }, { id: 'https', address: '127.0.0.1', port: httpsPort, protocol: 'https' }],
      options: { workers: 1 },
    },
  });
  await d.request('POST', '/v1/tenants', { body: { name: 'shop' } });
  mkdirSync(d.docroot('shop', 'www'), { recursive: true });
  writeFileSync(d.docroot('shop', 'www', 'index.html'), 'shop');
  const site = await d.request('POST', '/v1/tenants/shop/sites', { body: { hostname: 'www.shop.test', target: { kind: 'static', root: 'www' } }, headers: { 'x-strata-reason': 'reload test' } });
  assert.equal(site.status, 201);
});

after(async () => {
  await d?.close();
});

test('a listener stored behind the API\'s back is opened by a reload, not before', async () => {
  const port = await freePort();
  d.daemon.services.store.createListener({ name: 'late', address: '127.0.0.1', port, protocol: 'http', defaultSite: null, strictSni: false });
  assert.equal((await viaGateway(port, 'www.shop.test')).status, 0, 'nothing listens there before the reload');
  const serves = await d.daemon.reload();
  assert.deepEqual(serves, { listeners: 3, sites: 1, certificates: 1 });
  const page = await viaGateway(port, 'www.shop.test');
  assert.equal(page.status, 200);
  assert.equal(page.body, 'shop');
});

test("the neutral certificate removed for rotation is made anew by a reload and served at once", async () => {
  const before = await neutralFingerprint();
  rmSync(join(d.daemon.dataDir, 'gateway', 'neutral.pem'));
  rmSync(join(d.daemon.dataDir, 'gateway', 'neutral-key.pem'));
  assert.equal(await neutralFingerprint(), before, 'the gateway keeps serving what it loaded');
  await d.daemon.reload();
  assert.notEqual(await neutralFingerprint(), before);
});
