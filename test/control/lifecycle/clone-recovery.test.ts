/**
 * A clone cut short by a daemon crash is finished from its snapshot after the
 * restart — never re-created empty from its image (silent data loss) — and,
 * where it cannot be, is marked failed with the reason.
 *
 * The crash: the lifecycle service starts the clone over a real SQLite store, the
 * fake driver makes half of it and never answers (the daemon died mid-copy);
 * a new reconciler with fresh locks (the next daemon) then runs over the same
 * store and the same driver holdings (what survives on disk).
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { AuditLog } from '../../../src/audit/log.js';
import type { Principal } from '../../../src/auth/policy.js';
import { EventBus } from '../../../src/core/events.js';
import { InstanceService, type AuditFn } from '../../../src/control/lifecycle/instances.js';
import { KeyedMutex } from '../../../src/core/keyed-mutex.js';
import { OperationRunner } from '../../../src/control/lifecycle/operations.js';
import { Reconciler } from '../../../src/control/lifecycle/reconciler.js';
import type { DriverOperation, InstanceSpec, SnapshotResult } from '../../../src/levels/driver.js';
import { DriverRegistry } from '../../../src/levels/registry.js';
import { SqliteStore } from '../../../src/store/sqlite.js';
import { FakeDriver } from '../../support/fake-driver.js';
import { tempDir } from '../../support/temp.js';

/** A fake that clones (without calling `create`, so a create from the image shows), and can die halfway through one. */
class CloningFake extends FakeDriver {
  readonly clones: Array<{ id: string; from: { instanceId: string; snapshotId: string } }> = [];
  readonly snapshots = new Set<string>();
  /** The next clone leaves a half-made instance and never returns. */
  crashNextClone = false;
  constructor(supports: DriverOperation[] = ['pause', 'resume', 'snapshot', 'restore', 'clone']) {
    super({ level: 'os', supports });
  }
  override async snapshot(id: string, snapshotId: string): Promise<SnapshotResult> {
    const r = await super.snapshot(id, snapshotId);
    this.snapshots.add(snapshotId);
    return r;
  }
  async clone(spec: InstanceSpec, from: { instanceId: string; snapshotId: string }): Promise<void> {
    this.clones.push({ id: spec.id, from });
    if (!this.snapshots.has(from.snapshotId)) throw new Error(`snapshot '${from.snapshotId}' not found`);
    this.seed(spec, 'stopped');
    if (this.crashNextClone) {
      this.crashNextClone = false;
      await new Promise<never>(() => undefined);
    }
  }
}

const principal: Principal = { userId: 'u', name: 'tester', role: 'provider-admin', tenantId: null, tokenId: 't', reason: 'test' };
const noAudit: AuditFn = () => undefined;

async function world(driver: CloningFake) {
  const dir = tempDir('clone-crash');
  const store = new SqliteStore(join(dir, 'strata.db'));
  const audit = new AuditLog(store.db, generateKeyPairSync('ed25519'));
  const events = new EventBus();
  const operations = new OperationRunner(store, events);
  const registry = new DriverRegistry();
  registry.register(driver);
  await registry.provisionAll();
  const service = new InstanceService({ store, audit, events, operations, registry, locks: new KeyedMutex() });
  const tenant = store.createTenant({ name: 'acme', quota: { instances: 5, vcpus: 8, memoryMiB: 8192, diskMiB: 100_000, sites: 5 } });
  const launched = service.launch(principal, tenant, {
    name: 'orig', level: 'os', source: 'debian', limits: { vcpus: 1, memoryMiB: 256, diskMiB: 512 }, config: {}, desiredState: 'running',
  }, noAudit);
  assert.equal((await operations.wait(launched.operation.id, 10)).status, 'succeeded');
  const taken = service.snapshot(principal, tenant, store.getInstanceById(launched.instance.id)!, 'data', noAudit);
  assert.equal((await operations.wait(taken.operation.id, 10)).status, 'succeeded');
  /** The next daemon: a reconciler over the same store and driver holdings, with fresh locks. */
  const restart = () => new Reconciler({ store, registry, locks: new KeyedMutex(), stopGraceMs: 0 });
  const cleanup = () => { audit.close(); store.close(); };
  return { store, service, operations, tenant, source: store.getInstanceById(launched.instance.id)!, snapshot: store.getSnapshotById(taken.snapshot.id)!, restart, cleanup };
}

test('a clone cut short by a crash is made again from its snapshot after the restart, then started', async () => {
  const driver = new CloningFake();
  const w = await world(driver);
  try {
    driver.crashNextClone = true;
    const { instance } = w.service.clone(principal, w.tenant, w.source, w.snapshot, { name: 'copy', start: true }, noAudit);
    assert.deepEqual(w.store.getInstanceById(instance.id)?.cloneFrom, { instanceId: w.source.id, snapshotId: w.snapshot.id }, 'the source is recorded with the instance');
    while (driver.clones.length === 0) await sleep(5);
    assert.equal(driver.stateOf(instance.id), 'stopped', 'half a clone is on disk');

    const report = await w.restart().reconcileOnce();
    assert.equal(report.failed, 0, JSON.stringify(report));
    assert.deepEqual(driver.clones.map((c) => c.id), [instance.id, instance.id], 'cloned again');
    assert.deepEqual(driver.clones[1]!.from, { instanceId: w.source.id, snapshotId: w.snapshot.id });
    assert.deepEqual(driver.callsOf('create').filter((id) => id === instance.id), [], 'never created from the image');
    assert.ok(driver.callsOf('delete').includes(instance.id), 'the half-made copy was removed first');
    const now = w.store.getInstanceById(instance.id)!;
    assert.equal(now.actualState, 'running');
    assert.equal(driver.stateOf(instance.id), 'running');
    assert.equal(now.cloneFrom, undefined, 'made: the source is forgotten');

    // Later the instance vanishes (a reboot): now it is an ordinary instance, created from its image.
    driver.simulateVanish(instance.id);
    await w.restart().reconcileOnce();
    assert.deepEqual(driver.callsOf('create').filter((id) => id === instance.id), [instance.id]);
    assert.equal(driver.clones.length, 2);
  } finally {
    w.cleanup();
  }
});

test('a clone that completes normally forgets its source, so the reconciler leaves it alone', async () => {
  const driver = new CloningFake();
  const w = await world(driver);
  try {
    const { instance, operation } = w.service.clone(principal, w.tenant, w.source, w.snapshot, { name: 'copy', start: true }, noAudit);
    assert.equal((await w.operations.wait(operation.id, 10)).status, 'succeeded');
    assert.equal(w.store.getInstanceById(instance.id)?.cloneFrom, undefined);
    const report = await w.restart().reconcileOnce();
    assert.equal(report.created + report.started + report.failed, 0, JSON.stringify(report));
    assert.equal(driver.clones.length, 1);
    assert.ok(!driver.callsOf('delete').includes(instance.id));
  } finally {
    w.cleanup();
  }
});

test('an unfinished clone whose snapshot is gone is marked failed with the reason, not created empty', async () => {
  const driver = new CloningFake();
  const w = await world(driver);
  try {
    driver.crashNextClone = true;
    const { instance } = w.service.clone(principal, w.tenant, w.source, w.snapshot, { name: 'copy', start: true }, noAudit);
    while (driver.clones.length === 0) await sleep(5);
    driver.snapshots.delete(w.snapshot.id); // its data went while the daemon was down

    const reconciler = w.restart();
    for (let pass = 0; pass < 2; pass++) await reconciler.reconcileOnce();
    const now = w.store.getInstanceById(instance.id)!;
    assert.equal(now.actualState, 'failed');
    assert.match(String(now.info.error), new RegExp(`unfinished clone of snapshot ${w.snapshot.id}.*not found`));
    assert.deepEqual(now.cloneFrom, { instanceId: w.source.id, snapshotId: w.snapshot.id }, 'kept: a later pass tries again');
    assert.deepEqual(driver.callsOf('create').filter((id) => id === instance.id), [], 'never created from the image');
    assert.equal(driver.stateOf(instance.id), null, 'no half-made copy left');
  } finally {
    w.cleanup();
  }
});
