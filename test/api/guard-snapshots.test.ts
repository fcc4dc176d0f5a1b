/**
 * The guard's snapshots (known-good and forensic) are the system's: a tenant
 * neither lists them, nor reaches them by name, nor pays for them, nor sees
 * their operations or bookkeeping in its audit log; the provider lists them
 * with `?system=true`, and the alert's audit entry names the forensic one.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { FakeDriver } from '../support/fake-driver.js';
import { TestDaemon } from '../support/harness.js';

let d: TestDaemon;
let acme: string;
const base = '/v1/tenants/acme';
// Room for exactly two 1000 MiB instances and nothing more.
const quota = { instances: 3, vcpus: 4, memoryMiB: 4096, diskMiB: 2000, sites: 3 };

before(async () => {
  d = await TestDaemon.start({ drivers: [new FakeDriver({ level: 'os' })] });
  acme = await d.tenantWithUser('acme', 'tenant-admin', quota);
});
after(() => d.close());

const as = (method: string, path: string, body?: unknown) => d.request(method, path, { token: acme, ...(body !== undefined ? { body } : {}) });
const admin = (method: string, path: string) => d.request(method, path);
const names = (r: { body: { items: Array<{ name: string }> } }) => r.body.items.map((x) => x.name).sort();

test('guard snapshots are invisible to the tenant and free; the provider lists them', async () => {
  const launched = await as('POST', `${base}/instances?wait=10`, { name: 'web', level: 'os', limits: { vcpus: 1, memoryMiB: 256, diskMiB: 1000 } });
  assert.equal(launched.status, 200, JSON.stringify(launched.body));
  assert.equal((await as('POST', `${base}/instances/web/snapshots?wait=10`, { name: 'mine' })).status, 200);
  const usageBefore = (await as('GET', base)).body.usage;

  const store = d.daemon.services.store;
  const tenant = store.getTenantByName('acme')!;
  const instance = store.getInstance(tenant.id, 'web')!;
  const target = d.daemon.integrity.target;
  const good = await target.takeSnapshot(tenant, instance, 'guard-good');
  const forensic = await target.snapshot(instance.id) as { snapshot: string; snapshotId: string };
  assert.match(good.name, /^guard-good-/);
  assert.match(forensic.snapshot, /^guard-forensic-/);
  assert.equal(store.getSnapshotById(good.id)?.status, 'ready', 'the known-good snapshot was really taken');

  // The tenant: its own snapshot only, by instance and tenant-wide; a guard snapshot by name is a 404; no usage.
  assert.deepEqual(names(await as('GET', `${base}/instances/web/snapshots`)), ['mine']);
  assert.deepEqual(names(await as('GET', `${base}/snapshots`)), ['mine']);
  for (const path of [`${base}/instances/web/snapshots/${good.name}/restore`, `${base}/instances/web/snapshots/${forensic.snapshot}/clone`]) {
    const r = await as('POST', path, path.endsWith('clone') ? { name: 'peek' } : undefined);
    assert.equal(r.status, 404, `${path}: ${JSON.stringify(r.body)}`);
  }
  const del = await as('DELETE', `${base}/instances/web/snapshots/${good.name}`);
  assert.equal(del.status, 404);
  assert.deepEqual((await as('GET', base)).body.usage, usageBefore, 'the guard snapshots consume no quota');
  const asked = await as('GET', `${base}/snapshots?system=true`);
  assert.equal(asked.status, 403);
  assert.equal(asked.body.error.code, 'STRATA_ERR_FORBIDDEN');

  // No trace in the tenant's operations or audit log but the guard's own reaction (which names its evidence).
  const ops = (await as('GET', '/v1/operations')).body.items as Array<{ kind: string; target: string }>;
  assert.equal(ops.filter((o) => o.kind === 'snapshot.create').length, 1, JSON.stringify(ops));
  const entries = (await as('GET', '/v1/audit/entries?limit=1000')).body.items as Array<{ entry: { action: string; target: string } } | { action: string; target: string }>;
  const flat = entries.map((e) => ('entry' in e ? e.entry : e));
  assert.ok(flat.some((e) => e.action === 'snapshot.create' && e.target === 'acme/web@mine'), 'the tenant sees its own snapshot audited');
  assert.ok(!flat.some((e) => e.action.startsWith('snapshot.create') && /guard-/.test(e.target)), JSON.stringify(flat.filter((e) => /guard-/.test(e.target))));

  // The quota the guard did not take is still the tenant's: a second 1000 MiB instance fits exactly.
  const second = await as('POST', `${base}/instances?wait=10`, { name: 'api', level: 'os', limits: { vcpus: 1, memoryMiB: 256, diskMiB: 999 } });
  assert.equal(second.status, 200, JSON.stringify(second.body));

  // The provider: the system's snapshots on request, and it may restore from them.
  assert.deepEqual(names(await admin('GET', `${base}/instances/web/snapshots?system=true`)), [good.name, forensic.snapshot].sort());
  assert.deepEqual(names(await admin('GET', `${base}/snapshots?system=true`)), [good.name, forensic.snapshot].sort());
  assert.deepEqual(names(await admin('GET', `${base}/snapshots`)), ['mine']);
  assert.equal((await d.request('POST', `${base}/instances/web/stop?wait=10`, { headers: { 'x-strata-reason': 'test' } })).status, 200);
  const restored = await d.request('POST', `${base}/instances/web/snapshots/${good.name}/restore?wait=10`, { headers: { 'x-strata-reason': 'recover by hand' } });
  assert.equal(restored.status, 200, JSON.stringify(restored.body));
});
