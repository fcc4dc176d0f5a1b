/** Drivers that enforce quotas on real usage get every tenant's quota: on create, on change, at start. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Quota } from '../../src/store/types.js';
import { FakeDriver } from '../support/fake-driver.js';
import { TestDaemon } from '../support/harness.js';

class EnforcingDriver extends FakeDriver {
  readonly quotas = new Map<string, Quota>();
  async setTenantQuota(tenantId: string, quota: Quota): Promise<void> {
    this.quotas.set(tenantId, quota);
  }
}

const settle = () => new Promise((r) => setTimeout(r, 50));

test('a tenant quota reaches the drivers that enforce it, and again after a restart', async () => {
  const driver = new EnforcingDriver({ level: 'os' });
  const d = await TestDaemon.start({ drivers: [driver] });
  const created = await d.request('POST', '/v1/tenants', { body: { name: 'acme', quota: { vcpus: 3 } } });
  await settle();
  assert.equal(driver.quotas.get(created.body.id)?.vcpus, 3);
  await d.request('PATCH', '/v1/tenants/acme', { body: { quota: { vcpus: 5, memoryMiB: 1024 } } });
  await settle();
  assert.deepEqual({ ...driver.quotas.get(created.body.id) }, { ...created.body.quota, vcpus: 5, memoryMiB: 1024 });
  const dataDir = d.daemon.dataDir;
  await d.daemon.close();
  const again = new EnforcingDriver({ level: 'os' });
  const d2 = await TestDaemon.start({ drivers: [again], dataDir });
  assert.equal(again.quotas.get(created.body.id)?.vcpus, 5, 'applied at start');
  await d2.close();
  (await import('node:fs')).rmSync(dataDir, { recursive: true, force: true });
});
