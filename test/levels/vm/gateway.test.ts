/**
 * A VM launched through the API serves its site through the daemon's gateway by
 * name: the driver reports the guest's own address on its tenant bridge, and the
 * front door routes the site to that address and the guest port (no loopback
 * forward in between). Also the clone route, where the control plane offers it.
 */
import assert from 'node:assert/strict';
import { chmodSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { VmDriver } from '../../../src/levels/vm/index.js';
import { TestDaemon } from '../../support/harness.js';
import { viaGateway } from '../../support/net.js';
import { imageMissing, testNetwork } from './support.js';
import { tempDir } from '../../support/temp.js';
import { until } from '../../support/until.js';

const missing = imageMissing('x86_64');
let d: TestDaemon | null = null;
let gatewayPort = 0;
let dataDir = '';
const reason = { 'x-strata-reason': 'vm gateway test' };
/** The page names the guest's hostname now (rewritten every 0.3 s, so a clone's page follows its new identity). */
const SERVICE = '(while true; do echo "served by $(hostname)" > /www/i.tmp; mv /www/i.tmp /www/index.html; sleep 0.3; done) & exec httpd -f -p 80 -h /www';

const visit = (host: string, path = '/') => viaGateway(gatewayPort, host, path);

/** Visits `host` until it answers 200 with `body` (trimmed); throws with the last answer otherwise. */
async function visitUntil(host: string, body: string, timeoutMs: number): Promise<void> {
  let last = { status: 0, body: '' };
  await until(async () => {
    last = await visit(host);
    return last.status === 200 && last.body.trim() === body;
  }, { ms: timeoutMs, every: 200, what: () => `${host} to answer 200 '${body}' (last ${last.status} ${last.body.slice(0, 80)})` });
}

before(async () => {
  if (missing) return;
  dataDir = tempDir('vm-gw');
  chmodSync(dataDir, 0o711); // QEMU (the VM user) traverses to its run directory
  d = await TestDaemon.start({
    dataDir,
    drivers: [new VmDriver({ stateDir: join(dataDir, 'vm'), network: testNetwork(5) })],
    gateway: { listeners: [{ id: 'http', address: '127.0.0.1', port: 0, protocol: 'http' }], options: { workers: 1 } },
  });
  gatewayPort = d.daemon.services.gateway!.addresses()[0]!.port;
  await d.request('POST', '/v1/tenants', { body: { name: 'acme' } });
});

after(async () => {
  if (!d) return;
  for (const name of ['web', 'web-copy']) await d.request('DELETE', `/v1/tenants/acme/instances/${name}?wait=60`, { headers: reason }).catch(() => undefined);
  await d.close();
});

test('a vm instance serves its site through the gateway at the guest address', { timeout: 180_000, skip: missing ?? false }, async () => {
  const l = await d!.request('POST', '/v1/tenants/acme/instances?wait=120', {
    body: { name: 'web', level: 'vm', config: { command: SERVICE }, limits: { vcpus: 1, memoryMiB: 128, diskMiB: 64 } },
    headers: reason,
  });
  assert.equal(l.status, 200, JSON.stringify(l.body));
  const s = await d!.request('POST', '/v1/tenants/acme/sites', { body: { hostname: 'vm.acme.test', target: { kind: 'instance', instance: 'web', port: 80 } }, headers: reason });
  assert.equal(s.status, 201, JSON.stringify(s.body));
  await visitUntil('vm.acme.test', 'served by web', 90_000);
});

test('a clone made through the API serves its own site with its own identity', { timeout: 240_000, skip: missing ?? false }, async () => {
  const snap = await d!.request('POST', '/v1/tenants/acme/instances/web/snapshots?wait=120', { body: { name: 'gold' }, headers: reason });
  assert.equal(snap.status, 200, JSON.stringify(snap.body));
  const c = await d!.request('POST', '/v1/tenants/acme/instances/web/snapshots/gold/clone?wait=120', { body: { name: 'web-copy' }, headers: reason });
  assert.ok(c.status === 200 || c.status === 202, JSON.stringify(c.body));
  const s = await d!.request('POST', '/v1/tenants/acme/sites', { body: { hostname: 'copy.acme.test', target: { kind: 'instance', instance: 'web-copy', port: 80 } }, headers: reason });
  assert.equal(s.status, 201, JSON.stringify(s.body));
  await visitUntil('copy.acme.test', 'served by web-copy', 120_000);
  await visitUntil('vm.acme.test', 'served by web', 30_000); // the source serves on
});
