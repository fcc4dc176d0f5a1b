/**
 * The restart policy with real containers: a container whose process exits is
 * started again by the reconciler under "always" (a new process, its restarts
 * counted, the events said), and left dead — and meant to be stopped — under "no".
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { KeyedMutex } from '../../../src/core/keyed-mutex.js';
import { Reconciler, type ReconcileEvent } from '../../../src/control/lifecycle/reconciler.js';
import type { ReconcileRecord, ReconcileStore } from '../../../src/store/store.js';
import type { InstanceSpec } from '../../../src/levels/driver.js';
import type { DesiredState, InstanceState } from '../../../src/levels/lifecycle.js';
import { OsDriver } from '../../../src/levels/os/driver.js';
import { DriverRegistry } from '../../../src/levels/registry.js';
import { builtinImages, claimSlot, leftovers, nothingLeft, spec, testDriverOptions } from './helpers.js';

const options = testDriverOptions(await claimSlot());

class Rows implements ReconcileStore {
  readonly rows = new Map<string, ReconcileRecord & { info: Record<string, unknown> }>();
  listInstancesForReconcile(): ReconcileRecord[] {
    return [...this.rows.values()].map(({ spec: s, desiredState, actualState }) => ({ spec: s, desiredState, actualState }));
  }
  getInstanceForReconcile(id: string): ReconcileRecord | null {
    const r = this.rows.get(id);
    return r ? { spec: r.spec, desiredState: r.desiredState, actualState: r.actualState } : null;
  }
  setActualState(id: string, state: InstanceState, info?: Record<string, unknown>): void {
    const r = this.rows.get(id)!;
    r.actualState = state;
    if (info) r.info = info;
  }
}

describe('os.runc restart policy', () => {
  let driver: OsDriver;
  const rows = new Rows();
  const events: ReconcileEvent[] = [];
  let reconciler: Reconciler;
  const made: string[] = [];

  /** A container that prints a line and exits with 3 after a short while. */
  const exiting = (id: string, restart: string): InstanceSpec => spec(id, 'acme', { config: { args: ['sh', '-c', 'echo up; sleep 0.3; exit 3'], restart } });

  const launch = async (s: InstanceSpec): Promise<number> => {
    made.push(s.id);
    rows.rows.set(s.id, { spec: s, desiredState: 'running', actualState: 'creating', info: {} });
    await reconciler.reconcileOnce(); // a creating instance is left to its launch for one pass,
    await reconciler.reconcileOnce(); // then created and started
    assert.equal(rows.rows.get(s.id)!.actualState, 'running');
    return rows.rows.get(s.id)!.info.pid as number;
  };
  /** Passes until `until` holds or 10 s are up. */
  const passUntil = async (until: () => boolean): Promise<void> => {
    for (let i = 0; i < 200 && !until(); i++) {
      await reconciler.reconcileOnce();
      await sleep(50);
    }
  };

  before(async () => {
    await builtinImages();
    driver = new OsDriver(options);
    const registry = new DriverRegistry();
    registry.register(driver);
    await registry.provisionAll();
    reconciler = new Reconciler({
      store: rows, registry, locks: new KeyedMutex(), onEvent: (e) => events.push(e), stopGraceMs: 200,
      restartBackoff: { baseMs: 100 },
      setDesiredState: (id: string, desired: DesiredState) => { rows.rows.get(id)!.desiredState = desired; },
    });
  });

  after(async () => {
    for (const id of made) {
      await driver.stop(id, { graceMs: 200 }).catch(() => undefined);
      await driver.delete(id).catch(() => undefined);
    }
    await driver.cleanup();
    const found = await leftovers(options);
    assert.ok(nothingLeft(found), JSON.stringify(found));
  });

  test('"always": the exited container is started again, as a new process, and its restarts are counted', async () => {
    const id = `rs-${process.pid}-always`;
    const firstPid = await launch(exiting(id, 'always'));
    await passUntil(() => Number(rows.rows.get(id)!.info.restarts ?? 0) >= 2);
    const row = rows.rows.get(id)!;
    assert.ok(Number(row.info.restarts) >= 2, JSON.stringify(row));
    assert.equal(row.desiredState, 'running');
    assert.ok(events.some((e) => e.instanceId === id && e.type === 'instance.exited' && e.restart === true && e.policy === 'always'));
    const restarted = events.filter((e) => e.instanceId === id && e.type === 'instance.restarted' && e.restarts !== undefined);
    assert.ok(restarted.length >= 2);
    assert.notEqual(row.info.pid, firstPid);
    const log = readFileSync(driver.logPath(id), 'utf8');
    assert.ok(log.split('\n').filter((l) => l === 'up').length >= 3, log);
    // A stop now (the user's) is not undone.
    row.desiredState = 'stopped';
    await reconciler.reconcileOnce();
    await sleep(500);
    await reconciler.reconcileOnce();
    assert.notEqual((await driver.inspect(id))?.state, 'running');
    assert.notEqual(row.actualState, 'running');
  });

  test('"no": the exited container stays dead and is meant to be stopped', async () => {
    const id = `rs-${process.pid}-no`;
    await launch(exiting(id, 'no'));
    await passUntil(() => rows.rows.get(id)!.actualState === 'failed');
    for (let i = 0; i < 5; i++) {
      await reconciler.reconcileOnce();
      await sleep(50);
    }
    const row = rows.rows.get(id)!;
    assert.equal(row.actualState, 'failed');
    assert.equal(row.desiredState, 'stopped');
    assert.equal((await driver.inspect(id))?.state, 'failed');
    assert.ok(events.some((e) => e.instanceId === id && e.type === 'instance.exited' && e.restart === false));
    assert.ok(!events.some((e) => e.instanceId === id && e.type === 'instance.restarted' && e.restarts !== undefined));
    assert.equal(row.info.restarts, undefined);
  });
});
