import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { MIGRATIONS } from '../../src/store/migrations.js';
import { SqliteStore } from '../../src/store/sqlite.js';
import { tempDir } from '../support/temp.js';

const quota = { instances: 2, vcpus: 4, memoryMiB: 1024, diskMiB: 2048, sites: 3 };

function withStore(fn: (s: SqliteStore, path: string) => void): void {
  const dir = tempDir('store');
  const path = join(dir, 'strata.db');
  const s = new SqliteStore(path);
  try {
    fn(s, path);
  } finally {
    s.close();
  }
}

test('migrations bring a new file to the latest version, and reopening applies none twice', () => {
  withStore((s, path) => {
    assert.equal(s.schemaVersion(), MIGRATIONS.at(-1)!.version);
    assert.equal(s.db.pragma('journal_mode', { simple: true }), 'wal');
    s.createTenant({ name: 'acme', quota });
    s.close();
    const again = new SqliteStore(path);
    assert.equal(again.getTenantByName('acme')?.quota.sites, 3);
    again.close();
  });
});

test('names are unique: a second tenant, user or site of the same name is a 409 conflict', () => {
  withStore((s) => {
    const t = s.createTenant({ name: 'acme', quota });
    assert.throws(() => s.createTenant({ name: 'acme', quota }), { code: 'STRATA_ERR_CONFLICT' });
    s.createSite({ tenantId: t.id, hostname: 'a.example', target: { kind: 'static', root: 'www' } });
    assert.throws(() => s.createSite({ tenantId: t.id, hostname: 'a.example', target: { kind: 'static', root: 'x' } }), { code: 'STRATA_ERR_CONFLICT' });
    s.createUser({ name: 'al', role: 'tenant-admin', tenantId: t.id });
    assert.throws(() => s.createUser({ name: 'al', role: 'auditor', tenantId: null }), { code: 'STRATA_ERR_CONFLICT' });
  });
});

test('usage counts instances, their limits, snapshot bytes and sites', () => {
  withStore((s) => {
    const t = s.createTenant({ name: 'acme', quota });
    const i = s.createInstance({ tenantId: t.id, name: 'web', level: 'os', source: null, limits: { vcpus: 1.5, memoryMiB: 256, diskMiB: 100 }, config: {}, desiredState: 'running' });
    const snap = s.createSnapshot({ tenantId: t.id, instanceId: i.id, name: 's1' });
    s.updateSnapshot(snap.id, { status: 'ready', sizeBytes: 3 * 1024 * 1024 + 1 });
    s.createSite({ tenantId: t.id, hostname: 'a.example', target: { kind: 'instance', instance: 'web', port: 80 } });
    assert.deepEqual(s.usage(t.id), { instances: 1, vcpus: 1.5, memoryMiB: 256, diskMiB: 104, sites: 1 });
    s.deleteInstance(i.id);
    assert.equal(s.usage(t.id).instances, 0);
    assert.equal(s.listSnapshots({ tenantId: t.id }).length, 0, 'snapshots go with their instance');
  });
});

test("system (guard) snapshots: listed apart, never counted in the tenant's usage", () => {
  withStore((s) => {
    const t = s.createTenant({ name: 'acme', quota });
    const i = s.createInstance({ tenantId: t.id, name: 'web', level: 'os', source: null, limits: { vcpus: 1, memoryMiB: 256, diskMiB: 100 }, config: {}, desiredState: 'running' });
    const own = s.createSnapshot({ tenantId: t.id, instanceId: i.id, name: 'mine' });
    const guard = s.createSnapshot({ tenantId: t.id, instanceId: i.id, name: 'guard-good-x', system: true });
    s.updateSnapshot(own.id, { status: 'ready', sizeBytes: 2 * 1024 * 1024 });
    s.updateSnapshot(guard.id, { status: 'ready', sizeBytes: 50 * 1024 * 1024 });
    assert.equal(s.usage(t.id).diskMiB, 102, 'only the tenant\'s own snapshot counts');
    assert.deepEqual(s.listSnapshots({ instanceId: i.id, system: false }).map((x) => x.name), ['mine']);
    assert.deepEqual(s.listSnapshots({ tenantId: t.id, system: true }).map((x) => [x.name, x.system]), [['guard-good-x', true]]);
    assert.equal(s.listSnapshots({ instanceId: i.id }).length, 2, 'no filter: both (an instance\'s deletion removes both)');
    assert.equal(s.getSnapshotById(guard.id)?.system, true);
  });
});

test("a clone's source is kept with the instance until the clone is made", () => {
  withStore((s) => {
    const t = s.createTenant({ name: 'acme', quota });
    const limits = { vcpus: 1, memoryMiB: 256, diskMiB: 100 };
    const c = s.createInstance({ tenantId: t.id, name: 'copy', level: 'os', source: null, limits, config: {}, desiredState: 'running', cloneFrom: { instanceId: 'in_a', snapshotId: 'sn_b' } });
    assert.deepEqual(s.getInstanceById(c.id)?.cloneFrom, { instanceId: 'in_a', snapshotId: 'sn_b' });
    assert.deepEqual(s.getInstanceForReconcile(c.id)?.cloneFrom, { instanceId: 'in_a', snapshotId: 'sn_b' });
    s.updateInstance(c.id, { desiredState: 'stopped' });
    assert.deepEqual(s.getInstanceById(c.id)?.cloneFrom, { instanceId: 'in_a', snapshotId: 'sn_b' }, 'other updates keep it');
    s.cloneMade(c.id);
    assert.equal(s.getInstanceById(c.id)?.cloneFrom, undefined);
    assert.equal(s.getInstanceForReconcile(c.id)?.cloneFrom, undefined);
    const plain = s.createInstance({ tenantId: t.id, name: 'plain', level: 'os', source: null, limits, config: {}, desiredState: 'running' });
    assert.equal(plain.cloneFrom, undefined);
  });
});

test('migration 3 marks the guard snapshots a version-2 store already holds as the system\'s', () => {
  const dir = tempDir('store');
  const path = join(dir, 'strata.db');
  // A version-2 file: migrations 1 and 2 only, with a tenant's and a guard's snapshot.
  const old = new Database(path);
  for (const m of MIGRATIONS.filter((x) => x.version <= 2)) old.exec(m.sql);
  old.pragma('user_version = 2');
  const t = '2026-01-01T00:00:00Z';
  old.prepare('INSERT INTO tenants VALUES (?, ?, ?, ?)').run('te_1', 'acme', JSON.stringify(quota), t);
  old.prepare(`INSERT INTO instances (id, tenant_id, name, level, source, vcpus, memory_mib, disk_mib, config, desired_state, actual_state, info, created_at, updated_at)
    VALUES ('in_1', 'te_1', 'web', 'os', NULL, 1, 256, 100, '{}', 'running', 'running', '{}', ?, ?)`).run(t, t);
  const snap = old.prepare(`INSERT INTO snapshots VALUES (?, 'te_1', 'in_1', ?, 'ready', 1048576, NULL, ?)`);
  snap.run('sn_1', 'mine', t);
  snap.run('sn_2', 'guard-forensic-abc', t);
  old.close();
  const s = new SqliteStore(path);
  try {
    assert.equal(s.schemaVersion(), MIGRATIONS.at(-1)!.version);
    assert.deepEqual(s.listSnapshots({ tenantId: 'te_1', system: true }).map((x) => x.name), ['guard-forensic-abc']);
    assert.deepEqual(s.listSnapshots({ tenantId: 'te_1', system: false }).map((x) => x.name), ['mine']);
    assert.equal(s.getInstanceById('in_1')?.cloneFrom, undefined);
  } finally {
    s.close();
  }
});

test('a transaction that throws leaves nothing behind', () => {
  withStore((s) => {
    assert.throws(() => s.transaction(() => {
      s.createTenant({ name: 'ghost', quota });
      throw new Error('boom');
    }), /boom/);
    assert.equal(s.getTenantByName('ghost'), null);
  });
});

test('operations keep status, progress, error and result', () => {
  withStore((s) => {
    const op = s.createOperation({ tenantId: null, kind: 'instance.start', target: 'acme/web' });
    s.updateOperation(op.id, { status: 'failed', error: { code: 'STRATA_ERR_DRIVER', message: 'no' } });
    const got = s.getOperation(op.id)!;
    assert.equal(got.status, 'failed');
    assert.deepEqual(got.error, { code: 'STRATA_ERR_DRIVER', message: 'no' });
    assert.deepEqual(s.listOperations({ status: 'failed' }).map((o) => o.id), [op.id]);
  });
});

test('revisions: a change of what users change bumps them (limits, config, source, target, role, quota); states and facts do not', () => {
  withStore((s) => {
    const t = s.createTenant({ name: 'acme', quota });
    assert.equal(t.revision, 1);
    assert.equal(s.setTenantQuota(t.id, { ...quota, sites: 4 }).revision, 2);
    const i = s.createInstance({ tenantId: t.id, name: 'web', level: 'os', source: 'alpine', limits: { vcpus: 1, memoryMiB: 64, diskMiB: 0 }, config: {}, desiredState: 'running' });
    assert.equal(i.revision, 1);
    s.setActualState(i.id, 'running', { pid: 4 });
    assert.equal(s.updateInstance(i.id, { desiredState: 'stopped', actualState: 'stopped' }).revision, 1, 'states are not edits');
    const changed = s.updateInstance(i.id, { limits: { vcpus: 2, memoryMiB: 128, diskMiB: 0 }, config: { port: 80 } });
    assert.equal(changed.revision, 2);
    assert.deepEqual(changed.limits, { vcpus: 2, memoryMiB: 128, diskMiB: 0 });
    assert.equal(s.usage(t.id).memoryMiB, 128, 'the new limits count against the quota');

    const site = s.createSite({ tenantId: t.id, hostname: 'a.example', target: { kind: 'static', root: 'www' } });
    const retargeted = s.updateSite(site.id, { target: { kind: 'instance', instance: 'web', port: 80 } });
    assert.equal(retargeted.revision, 2);
    assert.equal(retargeted.instanceId, i.id, 'an instance target resolves to its instance as at create');
    assert.deepEqual(s.updateSite(site.id, { listeners: ['main'] }).listeners, ['main']);
    assert.throws(() => s.updateSite(site.id, { target: { kind: 'instance', instance: 'nope', port: 80 } }), { code: 'STRATA_ERR_NOT_FOUND' });
    assert.equal(s.getSite('a.example')!.revision, 3, 'a refused change leaves the site as it was');

    const u = s.createUser({ name: 'al', role: 'tenant-member', tenantId: t.id });
    const promoted = s.setUserRole(u.id, 'tenant-admin', t.id);
    assert.equal(promoted.role, 'tenant-admin');
    assert.equal(promoted.revision, 2);
  });
});
