import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { MIGRATIONS } from '../../src/store/migrations.js';
import { SqliteStore } from '../../src/store/sqlite.js';

const quota = { instances: 2, vcpus: 4, memoryMiB: 1024, diskMiB: 2048, sites: 3 };

function withStore(fn: (s: SqliteStore, path: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), 'strata-store-'));
  const path = join(dir, 'strata.db');
  const s = new SqliteStore(path);
  try {
    fn(s, path);
  } finally {
    s.close();
    rmSync(dir, { recursive: true, force: true });
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
