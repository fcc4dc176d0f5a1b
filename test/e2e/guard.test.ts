/**
 * The guard inside the daemon: a rule match freezes the instance through the
 * lifecycle service, the alert reaches /v1/alerts for the tenant, the auditor and
 * the provider — never another tenant — and the reaction is in the audit log.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { FakeDriver } from '../support/fake-driver.js';
import { TestDaemon } from '../support/harness.js';

let d: TestDaemon;
let acme: string;
let other: string;
let auditor: string;

before(async () => {
  d = await TestDaemon.start({ drivers: [new FakeDriver({ level: 'os' })] });
  acme = await d.tenantWithUser('acme');
  other = await d.tenantWithUser('other');
  auditor = await d.userToken('watcher', 'auditor');
});
after(() => d.close());

test('a shell in a web instance freezes it, and the alert is seen only where it may be', async () => {
  const launched = await d.request('POST', '/v1/tenants/acme/instances?wait=10', { token: acme, body: { name: 'web', level: 'os' } });
  assert.equal(launched.status, 200);
  const { id, tenant } = launched.body.instance;
  assert.equal(tenant, 'acme');
  const tenantId = (await d.request('GET', '/v1/tenants/acme')).body.id;
  d.daemon.services.guard.ingest({
    time: Date.now(), tenantId, instanceId: id, level: 'os', kind: 'process.exec',
    fields: { 'proc.name': 'sh', 'proc.pname': 'php-fpm', 'proc.cmdline': 'sh -c id', 'instance.role': 'web', 'instance.id': id },
  });
  let state = '';
  for (let i = 0; i < 100 && state !== 'paused'; i++) {
    await new Promise((r) => setTimeout(r, 20));
    state = (await d.request('GET', '/v1/tenants/acme/instances/web', { token: acme })).body.state;
  }
  assert.equal(state, 'paused', 'the guard froze the instance');

  const mine = await d.request('GET', '/v1/alerts', { token: acme });
  assert.equal(mine.status, 200);
  assert.equal(mine.body.items.length, 1);
  assert.equal(mine.body.items[0].rule, 'Shell in web instance');
  assert.equal((await d.request('GET', '/v1/alerts', { token: other })).body.items.length, 0, 'another tenant sees nothing');
  assert.equal((await d.request('GET', '/v1/alerts?tenant=acme', { token: other })).status, 404);
  assert.equal((await d.request('GET', '/v1/alerts', { token: auditor })).body.items.length, 1);

  const entries = (await d.request('GET', '/v1/audit/entries?limit=1000', { token: acme })).body.items.map((x: any) => x.entry);
  assert.ok(entries.some((e: any) => e.actor.name === 'guard' && e.action === 'instance.pause'), 'the freeze is in the tenant audit log');
});

test('benign activity raises no alert', async () => {
  const before = (await d.request('GET', '/v1/alerts')).body.items.length;
  const tenantId = (await d.request('GET', '/v1/tenants/acme')).body.id;
  d.daemon.services.guard.ingest({
    time: Date.now(), tenantId, instanceId: null, level: 'os', kind: 'process.exec',
    fields: { 'proc.name': 'php-fpm', 'proc.pname': 'php-fpm', 'instance.role': 'web' },
  });
  await new Promise((r) => setTimeout(r, 100));
  assert.equal((await d.request('GET', '/v1/alerts')).body.items.length, before);
});
