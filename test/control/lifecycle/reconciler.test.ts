import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { KeyedMutex } from '../../../src/core/keyed-mutex.js';
import { Reconciler, type ReconcileEvent } from '../../../src/control/lifecycle/reconciler.js';
import { isReachable, nextStep } from '../../../src/control/lifecycle/steps.js';
import type { ReconcileRecord, ReconcileStore } from '../../../src/store/store.js';
import type { InstanceSpec, ObservedInstance } from '../../../src/levels/driver.js';
import type { DesiredState, InstanceState } from '../../../src/levels/lifecycle.js';
import { DriverRegistry } from '../../../src/levels/registry.js';
import type { Level } from '../../../src/levels/ids.js';
import { FakeDriver } from '../../support/fake-driver.js';

const spec = (id: string, level: Level = 'os'): InstanceSpec => ({
  id, tenantId: 't-1', name: `name-${id}`, level, source: 'debian:12', limits: { vcpus: 1, memoryMiB: 64, diskMiB: 64 }, config: {},
});

/** The store as the reconciler sees it; refuses a recorded change the state machine could not lead to. */
class MemoryStore implements ReconcileStore {
  readonly rows = new Map<string, ReconcileRecord & { info: Record<string, unknown> }>();

  add(id: string, desiredState: DesiredState, actualState: InstanceState, level: Level = 'os'): this {
    this.rows.set(id, { spec: spec(id, level), desiredState, actualState, info: {} });
    return this;
  }
  row(id: string) {
    const row = this.rows.get(id);
    assert.ok(row, `no row ${id}`);
    return row;
  }
  listInstancesForReconcile(): ReconcileRecord[] {
    return [...this.rows.values()].map(({ spec, desiredState, actualState }) => ({ spec, desiredState, actualState }));
  }
  getInstanceForReconcile(id: string): ReconcileRecord | null {
    const row = this.rows.get(id);
    return row ? { spec: row.spec, desiredState: row.desiredState, actualState: row.actualState } : null;
  }
  setActualState(id: string, state: InstanceState, info?: Record<string, unknown>): void {
    const row = this.row(id);
    assert.ok(state === row.actualState || isReachable(row.actualState, state), `store: ${row.actualState} → ${state}`);
    row.actualState = state;
    if (info) row.info = info;
  }
}

/** A fake that knows its processes' exit codes, as some drivers do. */
class ExitCodeDriver extends FakeDriver {
  readonly exitCodes = new Map<string, number>();
  override async inspect(id: string): Promise<ObservedInstance | null> {
    const seen = await super.inspect(id);
    const code = this.exitCodes.get(id);
    return seen && code !== undefined && seen.state !== 'running' ? { ...seen, info: { ...seen.info, exitCode: code } } : seen;
  }
}

interface SetupOptions {
  drivers?: FakeDriver[];
  store?: ReconcileStore & MemoryStore;
  intervalMs?: number;
  backoffMs?: number;
  resetAfterMs?: number;
  setDesiredState?: (id: string, desired: DesiredState) => void;
  now?: () => number;
}

function setup(opts: SetupOptions = {}) {
  const drivers = opts.drivers ?? [new FakeDriver({ level: 'os' })];
  const registry = new DriverRegistry();
  for (const d of drivers) registry.register(d);
  const store = opts.store ?? new MemoryStore();
  const locks = new KeyedMutex();
  const events: ReconcileEvent[] = [];
  const reconciler = new Reconciler({
    store, registry, locks, onEvent: (e) => events.push(e), stopGraceMs: 10, ...(opts.intervalMs ? { intervalMs: opts.intervalMs } : {}),
    restartBackoff: { baseMs: opts.backoffMs ?? 1_000, ...(opts.resetAfterMs ? { resetAfterMs: opts.resetAfterMs } : {}) },
    ...(opts.setDesiredState ? { setDesiredState: opts.setDesiredState } : {}),
    ...(opts.now ? { now: opts.now } : {}),
  });
  return { driver: drivers[0]!, drivers, registry, store, locks, events, reconciler, ready: registry.provisionAll() };
}

const typesOf = (events: ReconcileEvent[], id: string) => events.filter((e) => e.instanceId === id).map((e) => `${e.type} ${e.from}→${e.to}`);

test('adopts what runs and is known: records its state and live facts, restarts nothing', async () => {
  const { driver, store, events, reconciler, ready } = setup();
  await ready;
  store.add('i-1', 'running', 'running').add('i-2', 'running', 'creating');
  driver.seed(spec('i-1'), 'running');
  driver.seed(spec('i-2'), 'running');

  const report = await reconciler.reconcileOnce();
  assert.equal(report.adopted, 2);
  assert.equal(report.started + report.created + report.stopped, 0);
  assert.deepEqual(driver.callsOf('start'), []);
  assert.deepEqual(driver.callsOf('create'), []);
  assert.equal(store.row('i-1').actualState, 'running');
  assert.equal(typeof store.row('i-1').info.pid, 'number');
  assert.equal(store.row('i-2').actualState, 'running');
  assert.deepEqual(typesOf(events, 'i-1'), ['instance.adopted running→running']);
  assert.deepEqual(typesOf(events, 'i-2'), ['instance.state creating→running', 'instance.adopted creating→running']);

  const inspectsBefore = driver.callsOf('inspect').length;
  const again = await reconciler.reconcileOnce();
  assert.equal(again.adopted, 0);
  assert.equal(again.unchanged, 2);
  assert.equal(driver.callsOf('inspect').length, inspectsBefore, 'a settled instance costs no inspect');
});

test('removes orphans: ids the store does not know, knows as deleted, or knows at another level', async () => {
  const { driver, store, events, reconciler, ready } = setup();
  await ready;
  driver.seedOrphan('ghost-running', 'running');
  driver.seedOrphan('ghost-paused', 'paused');
  driver.seedOrphan('ghost-stopped', 'stopped');
  driver.seedOrphan('was-deleted', 'stopped');
  driver.seedOrphan('other-level', 'running');
  store.add('was-deleted', 'stopped', 'deleted').add('other-level', 'running', 'running', 'vm');

  const report = await reconciler.reconcileOnce();
  assert.equal(report.orphansRemoved, 5);
  assert.deepEqual(await driver.list(), []);
  assert.deepEqual(driver.callsOf('stop').sort(), ['ghost-paused', 'ghost-running', 'other-level']);
  assert.equal(driver.callsOf('delete').length, 5);
  const removed = events.filter((e) => e.type === 'instance.orphan-removed');
  assert.equal(removed.length, 5);
  assert.ok(removed.every((e) => e.tenantId === undefined && e.to === 'deleted' && e.level === 'os'));
  assert.equal(store.row('other-level').actualState, 'running', 'the vm row is no business of the os driver');
});

test('restart "always": restarts what should run and died, and records the death first', async () => {
  const { driver, store, events, reconciler, ready } = setup({ backoffMs: 0 });
  await ready;
  store.add('crashed', 'running', 'running').add('exited', 'running', 'running');
  store.row('crashed').spec.config = { restart: 'always' };
  store.row('exited').spec.config = { restart: 'always' };
  driver.seed(spec('crashed'), 'running');
  driver.seed(spec('exited'), 'running');
  await reconciler.reconcileOnce();
  driver.simulateExit('crashed', 'failed');
  driver.simulateExit('exited', 'stopped');

  const report = await reconciler.reconcileOnce();
  assert.equal(report.started, 2);
  assert.equal(report.adopted, 0);
  for (const id of ['crashed', 'exited']) {
    assert.equal(driver.stateOf(id), 'running');
    assert.equal(store.row(id).actualState, 'running');
    assert.equal(typeof store.row(id).info.pid, 'number');
  }
  assert.deepEqual(typesOf(events, 'crashed').slice(1), [
    'instance.state running→failed', 'instance.exited running→failed', 'instance.state failed→running', 'instance.restarted failed→running',
  ]);
  assert.equal(store.row('crashed').info.restarts, 1, 'restarts are counted in the live facts');
  assert.equal(events.find((e) => e.type === 'instance.restarted' && e.instanceId === 'crashed')?.restarts, 1);
  assert.ok(driver.callsOf('create').length === 0);
});

test('restart "no" (the default): a process that died stays dead and is then meant to be stopped', async () => {
  const desired: Array<[string, string]> = [];
  const { driver, store, events, reconciler, ready } = setup({ setDesiredState: (id, d) => desired.push([id, d]) });
  await ready;
  store.add('plain', 'running', 'running').add('said-no', 'running', 'running');
  store.row('said-no').spec.config = { restart: 'no' };
  driver.seed(spec('plain'), 'running');
  driver.seed(spec('said-no'), 'running');
  await reconciler.reconcileOnce();
  driver.simulateExit('plain', 'failed');
  driver.simulateExit('said-no', 'stopped');

  const report = await reconciler.reconcileOnce();
  assert.equal(report.started, 0);
  assert.equal(store.row('plain').actualState, 'failed');
  assert.equal(store.row('said-no').actualState, 'stopped');
  assert.deepEqual(desired.sort(), [['plain', 'stopped'], ['said-no', 'stopped']]);
  const exited = events.filter((e) => e.type === 'instance.exited');
  assert.deepEqual(exited.map((e) => [e.instanceId, e.policy, e.restart]).sort(), [['plain', 'no', false], ['said-no', 'no', false]]);
  assert.deepEqual(driver.callsOf('start'), []);
});

test('restart "no" without a store that takes desired states: remembered for the daemon\'s life', async () => {
  const { driver, store, reconciler, ready } = setup();
  await ready;
  store.add('a', 'running', 'running');
  driver.seed(spec('a'), 'running');
  await reconciler.reconcileOnce();
  driver.simulateExit('a', 'failed');
  await reconciler.reconcileOnce();
  await reconciler.reconcileOnce();
  assert.deepEqual(driver.callsOf('start'), []);
  assert.equal(store.row('a').actualState, 'failed');
});

test('restart "on-failure": restarts unless the process is known to have exited with 0', async () => {
  const driver = new ExitCodeDriver({ level: 'os' });
  const { store, reconciler, ready } = setup({ drivers: [driver], backoffMs: 0 });
  await ready;
  for (const id of ['zero', 'one', 'unknown']) {
    store.add(id, 'running', 'running');
    store.row(id).spec.config = { restart: 'on-failure' };
    driver.seed(spec(id), 'running');
  }
  await reconciler.reconcileOnce();
  driver.exitCodes.set('zero', 0);
  driver.exitCodes.set('one', 1);
  for (const id of ['zero', 'one', 'unknown']) driver.simulateExit(id, 'failed');
  await reconciler.reconcileOnce();
  assert.deepEqual(driver.callsOf('start').sort(), ['one', 'unknown']);
  assert.equal(store.row('zero').actualState, 'failed');
  assert.equal(store.row('one').actualState, 'running');
});

test('restarts back off exponentially, and the back-off starts over once the instance stayed up', async () => {
  let now = 1_000_000;
  const { driver, store, reconciler, ready } = setup({ backoffMs: 80, resetAfterMs: 400, now: () => now });
  await ready;
  store.add('loop', 'running', 'running');
  store.row('loop').spec.config = { restart: 'always' };
  driver.seed(spec('loop'), 'running');
  await reconciler.reconcileOnce();
  /** Kills the process; checks it stays down until `delay` ms later, and is restarted then. */
  const dieAndExpectDelay = async (delay: number): Promise<void> => {
    driver.simulateExit('loop', 'failed');
    await reconciler.reconcileOnce();
    assert.equal(store.row('loop').actualState, 'failed');
    now += delay - 1;
    await reconciler.reconcileOnce();
    assert.equal(driver.stateOf('loop'), 'failed', `held down for ${delay} ms`);
    now += 1;
    await reconciler.reconcileOnce();
    assert.equal(driver.stateOf('loop'), 'running', `restarted after ${delay} ms`);
    now += 10;
  };
  await dieAndExpectDelay(80);
  await dieAndExpectDelay(160);
  await dieAndExpectDelay(320);
  now += 400; // up long enough: the back-off starts over
  await dieAndExpectDelay(80);
  assert.equal(store.row('loop').info.restarts, 4);
});

test('a user\'s stop is never undone, whatever the policy', async () => {
  const { driver, store, reconciler, ready } = setup({ backoffMs: 0 });
  await ready;
  store.add('s', 'running', 'running');
  store.row('s').spec.config = { restart: 'always' };
  driver.seed(spec('s'), 'running');
  await reconciler.reconcileOnce();
  // The API records the desired state before it asks the driver to stop.
  store.row('s').desiredState = 'stopped';
  driver.simulateExit('s', 'stopped');
  await reconciler.reconcileOnce();
  await reconciler.reconcileOnce();
  assert.deepEqual(driver.callsOf('start'), []);
  assert.equal(store.row('s').actualState, 'stopped');
});

test('the control plane\'s config keys never reach the driver', async () => {
  const { driver, store, reconciler, ready } = setup();
  await ready;
  store.add('new', 'running', 'creating');
  store.row('new').spec.config = { restart: 'always', port: 8080 };
  await reconciler.reconcileOnce();
  await reconciler.reconcileOnce();
  assert.deepEqual(driver.specOf('new')?.config, { port: 8080 });
});

test('creates what the driver does not hold: a launch cut short, or an instance that vanished', async () => {
  const { driver, store, events, reconciler, ready } = setup();
  await ready;
  store
    .add('cut-short', 'running', 'creating')
    .add('never-started', 'stopped', 'creating')
    .add('vanished', 'running', 'running')
    .add('vanished-stopped', 'stopped', 'stopped')
    .add('want-paused', 'paused', 'creating');

  const report = await reconciler.reconcileOnce();
  assert.equal(report.created, 5);
  assert.equal(report.started, 3);
  assert.equal(report.paused, 1);
  assert.deepEqual(driver.specOf('cut-short'), spec('cut-short'));
  assert.equal(driver.stateOf('cut-short'), 'running');
  assert.equal(driver.stateOf('never-started'), 'stopped');
  assert.equal(driver.stateOf('vanished'), 'running');
  assert.equal(driver.stateOf('vanished-stopped'), 'stopped');
  assert.equal(driver.stateOf('want-paused'), 'paused');
  for (const [id, state] of [['cut-short', 'running'], ['never-started', 'stopped'], ['vanished', 'running'], ['want-paused', 'paused']] as const) {
    assert.equal(store.row(id).actualState, state, id);
  }
  assert.deepEqual(typesOf(events, 'vanished'), [
    'instance.state running→stopped', 'instance.state stopped→running', 'instance.restarted running→running',
  ]);
});

test('after start-up, a creating instance is left to its launch for one pass, then created', async () => {
  const { driver, store, locks, reconciler, ready } = setup();
  await ready;
  await reconciler.reconcileOnce();
  store.add('launching', 'running', 'creating').add('abandoned', 'running', 'creating');

  // Within a microtask of writing the row, the API's launch takes the lock.
  const launch = locks.run('launching', async () => {
    await driver.create(spec('launching'));
    store.setActualState('launching', 'stopped');
  });
  const report = await reconciler.reconcileOnce();
  await launch;
  assert.equal(report.created, 0);
  assert.deepEqual(driver.callsOf('create'), ['launching']);

  const next = await reconciler.reconcileOnce();
  assert.equal(next.created, 1, 'the abandoned one');
  assert.deepEqual(driver.callsOf('create'), ['launching', 'abandoned']);
  assert.equal(store.row('abandoned').actualState, 'running');
  assert.equal(store.row('launching').actualState, 'running', 'should run: started by the reconciler');
});

test('stops what should be stopped; pauses and resumes toward the desired state', async () => {
  const { driver, store, reconciler, ready } = setup();
  await ready;
  store.add('to-stop', 'stopped', 'running').add('paused-to-stop', 'stopped', 'paused')
    .add('to-pause', 'paused', 'running').add('to-resume', 'running', 'paused');
  driver.seed(spec('to-stop'), 'running');
  driver.seed(spec('paused-to-stop'), 'paused');
  driver.seed(spec('to-pause'), 'running');
  driver.seed(spec('to-resume'), 'paused');

  const report = await reconciler.reconcileOnce();
  assert.equal(report.stopped, 2);
  assert.equal(report.paused, 1);
  assert.equal(report.resumed, 1);
  assert.equal(report.started, 0);
  assert.deepEqual(
    ['to-stop', 'paused-to-stop', 'to-pause', 'to-resume'].map((id) => [driver.stateOf(id), store.row(id).actualState]),
    [['stopped', 'stopped'], ['stopped', 'stopped'], ['paused', 'paused'], ['running', 'running']],
  );
});

test('a stopped or failed instance that should be stopped is left alone', async () => {
  const { driver, store, reconciler, ready } = setup();
  await ready;
  store.add('s', 'stopped', 'stopped').add('f', 'stopped', 'failed');
  driver.seed(spec('s'), 'stopped');
  driver.seed(spec('f'), 'failed');
  const report = await reconciler.reconcileOnce();
  assert.equal(report.unchanged, 2);
  assert.deepEqual(driver.calls.map((c) => c.op), ['provision', 'list']);
});

test('a driver without pause leaves an instance that should be paused running', async () => {
  const driver = new FakeDriver({ level: 'env', supports: [] });
  const { store, reconciler, ready } = setup({ drivers: [driver] });
  await ready;
  store.add('e', 'paused', 'running', 'env');
  driver.seed(spec('e', 'env'), 'running');
  await reconciler.reconcileOnce();
  const report = await reconciler.reconcileOnce();
  assert.equal(report.unchanged, 1);
  assert.deepEqual(driver.callsOf('pause'), []);
});

test('one failing instance is marked failed with its error; the others go on; the next pass retries it', async () => {
  const { driver, store, events, reconciler, ready } = setup();
  await ready;
  for (const id of ['a', 'b', 'c']) {
    store.add(id, 'running', 'stopped');
    driver.seed(spec(id), 'stopped');
  }
  driver.failOn('start', { id: 'b', error: new Error('runc: exec format error') });
  driver.failOn('create', { id: 'd', error: new Error('image not found') });
  store.add('d', 'running', 'creating');

  const report = await reconciler.reconcileOnce();
  assert.equal(report.started, 2);
  assert.equal(report.failed, 2);
  assert.equal(store.row('a').actualState, 'running');
  assert.equal(store.row('c').actualState, 'running');
  assert.equal(store.row('b').actualState, 'failed');
  assert.deepEqual(store.row('b').info, { error: 'runc: exec format error' });
  assert.equal(store.row('d').actualState, 'failed');
  assert.deepEqual(store.row('d').info, { error: 'image not found' });
  assert.deepEqual(
    events.filter((e) => e.instanceId === 'b').map((e) => [e.type, e.from, e.to, e.error]),
    [['instance.state', 'stopped', 'failed', 'runc: exec format error']],
  );

  const retry = await reconciler.reconcileOnce();
  assert.equal(retry.started, 2);
  assert.equal(retry.created, 1);
  assert.equal(retry.failed, 0);
  for (const id of ['b', 'd']) {
    assert.equal(store.row(id).actualState, 'running');
    assert.equal(store.row(id).info.error, undefined, 'the old error is cleared');
  }
});

test('an inspect that throws marks only that instance failed', async () => {
  const { driver, store, reconciler, ready } = setup();
  await ready;
  store.add('x', 'running', 'stopped').add('y', 'running', 'stopped');
  driver.seed(spec('x'), 'stopped');
  driver.seed(spec('y'), 'stopped');
  driver.failOn('inspect', { id: 'x', error: new Error('state.json unreadable') });
  const report = await reconciler.reconcileOnce();
  assert.equal(report.failed, 1);
  assert.equal(store.row('x').actualState, 'failed');
  assert.equal(store.row('y').actualState, 'running');
});

test('a failing orphan removal or driver listing is reported, never thrown', async () => {
  const os = new FakeDriver({ level: 'os' });
  const vm = new FakeDriver({ level: 'vm' });
  const { store, reconciler, ready } = setup({ drivers: [os, vm] });
  await ready;
  os.failOn('list', { error: new Error('runc list: permission denied') });
  vm.seedOrphan('ghost', 'stopped');
  vm.failOn('delete', { error: new Error('disk image busy') });
  store.add('os-1', 'running', 'running').add('vm-1', 'running', 'creating', 'vm');

  const report = await reconciler.reconcileOnce();
  assert.deepEqual(report.errors.map((e) => [e.driver, e.instanceId, e.message]), [
    ['os.fake', undefined, 'runc list: permission denied'],
    ['vm.fake', 'ghost', 'disk image busy'],
  ]);
  assert.equal(report.skipped, 1, 'os-1: its driver could not be listed');
  assert.equal(store.row('vm-1').actualState, 'running', 'the vm driver still did its work');
  assert.equal((await reconciler.reconcileOnce()).orphansRemoved, 1);
});

test('instances of a level with no available driver are skipped, and that driver is never called', async () => {
  const vm = new FakeDriver({ level: 'vm', availability: { available: false, reason: 'no kvm' } });
  const { store, reconciler, ready } = setup({ drivers: [new FakeDriver({ level: 'os' }), vm] });
  await ready;
  store.add('v', 'running', 'running', 'vm').add('e', 'running', 'running', 'env');
  const report = await reconciler.reconcileOnce();
  assert.equal(report.skipped, 2);
  assert.deepEqual(vm.calls.map((c) => c.op), ['provision']);
  assert.equal(store.row('v').actualState, 'running');
});

test('takes the instance lock and decides on what the store says once it holds it', async () => {
  const { driver, store, locks, reconciler, ready } = setup();
  await ready;
  store.add('i', 'running', 'stopped');
  driver.seed(spec('i'), 'stopped');

  // The API holds the lock and, meanwhile, the user asks for the instance to stay stopped.
  let release!: () => void;
  const api = locks.run('i', () => new Promise<void>((r) => (release = r)));
  const pass = reconciler.reconcileOnce();
  await sleep(10);
  assert.deepEqual(driver.callsOf('start'), [], 'the reconciler waits for the lock');
  store.row('i').desiredState = 'stopped';
  release();
  await api;
  const report = await pass;
  assert.deepEqual(driver.callsOf('start'), []);
  assert.equal(report.unchanged, 1);
  assert.equal(locks.size, 0);
});

test('a known instance that is deleted while the pass waits for its lock becomes an orphan', async () => {
  const { driver, store, locks, reconciler, ready } = setup();
  await ready;
  store.add('i', 'stopped', 'running');
  driver.seed(spec('i'), 'running');
  let release!: () => void;
  const api = locks.run('i', () => new Promise<void>((r) => (release = r)));
  const pass = reconciler.reconcileOnce();
  await sleep(5);
  store.rows.delete('i');
  release();
  await api;
  assert.equal((await pass).orphansRemoved, 1);
  assert.equal(driver.stateOf('i'), null);
});

test('passes never overlap; calls during a pass share one follow-up pass that sees later changes', async () => {
  const { driver, store, reconciler, ready } = setup();
  await ready;
  store.add('early', 'stopped', 'creating');
  const release = driver.block('create');
  const first = reconciler.reconcileOnce();
  await sleep(5);
  const second = reconciler.reconcileOnce();
  const third = reconciler.reconcileOnce();
  assert.equal(second, third);
  store.add('late', 'stopped', 'stopped');
  release();
  const [a, b] = await Promise.all([first, second]);
  assert.equal(driver.maxInFlight.get('list'), 1);
  assert.equal(driver.callsOf('list').length, 2);
  assert.deepEqual(driver.callsOf('create'), ['early', 'late']);
  assert.equal(a.created, 1);
  assert.equal(b.created, 1, 'the follow-up pass saw the row added while the first ran');
});

test('start() runs a pass at once and then on the interval; stop() waits for the pass in progress', async () => {
  const { driver, reconciler, ready } = setup({ intervalMs: 15 });
  await ready;
  const first = await reconciler.start();
  assert.equal(first.errors.length, 0);
  assert.equal(driver.callsOf('list').length, 1);
  await sleep(80);
  const passes = driver.callsOf('list').length;
  assert.ok(passes >= 2, `${passes} passes`);

  const release = driver.block('list');
  await sleep(30);
  let stopped = false;
  const stopping = reconciler.stop().then(() => (stopped = true));
  await sleep(5);
  assert.equal(stopped, false, 'stop waits for the blocked pass');
  release();
  await stopping;
  const after = driver.callsOf('list').length;
  await sleep(50);
  assert.equal(driver.callsOf('list').length, after, 'no pass after stop');
  assert.equal(driver.maxInFlight.get('list'), 1);
});

test('a throwing event listener does not stop the pass', async () => {
  const driver = new FakeDriver({ level: 'os' });
  const registry = new DriverRegistry().register(driver);
  await registry.provisionAll();
  const store = new MemoryStore().add('a', 'running', 'stopped').add('b', 'running', 'stopped');
  driver.seed(spec('a'), 'stopped');
  driver.seed(spec('b'), 'stopped');
  const warnings: string[] = [];
  const reconciler = new Reconciler({
    store, registry, locks: new KeyedMutex(),
    onEvent: () => { throw new Error('listener bug'); },
    logger: { info() {}, warn: (_o, msg) => warnings.push(msg ?? ''), error() {} },
  });
  const report = await reconciler.reconcileOnce();
  assert.equal(report.started, 2);
  assert.ok(warnings.some((w) => /listener threw/.test(w)));
});

test('works with a store that can only list (no lookup by id)', async () => {
  const driver = new FakeDriver({ level: 'os' });
  const registry = new DriverRegistry().register(driver);
  await registry.provisionAll();
  const full = new MemoryStore().add('a', 'running', 'creating');
  const listOnly: ReconcileStore = {
    listInstancesForReconcile: () => full.listInstancesForReconcile(),
    setActualState: (id, state, info) => full.setActualState(id, state, info),
  };
  driver.seedOrphan('ghost');
  const report = await new Reconciler({ store: listOnly, registry, locks: new KeyedMutex() }).reconcileOnce();
  assert.equal(report.created, 1);
  assert.equal(report.orphansRemoved, 1);
  assert.equal(full.row('a').actualState, 'running');
});

test('nextStep: the one step toward the desired state', () => {
  const all = new Set(['pause', 'resume', 'snapshot', 'restore'] as const);
  const none = new Set<never>();
  const cases: Array<[InstanceState | 'missing', DesiredState, string | null]> = [
    ['missing', 'stopped', 'create'], ['creating', 'running', 'create'],
    ['stopped', 'running', 'start'], ['failed', 'running', 'start'], ['paused', 'running', 'resume'], ['running', 'running', null],
    ['running', 'stopped', 'stop'], ['paused', 'stopped', 'stop'], ['stopped', 'stopped', null], ['failed', 'stopped', null],
    ['running', 'paused', 'pause'], ['stopped', 'paused', 'start'], ['failed', 'paused', 'start'], ['paused', 'paused', null],
    ['deleted', 'running', null],
  ];
  for (const [current, desired, step] of cases) assert.equal(nextStep(current, desired, all), step, `${current} → ${desired}`);
  assert.equal(nextStep('running', 'paused', none), null);
  assert.equal(nextStep('paused', 'running', none), null);
});

test('isReachable follows the state machine through several steps', () => {
  assert.ok(isReachable('creating', 'running'));
  assert.ok(isReachable('creating', 'paused'));
  assert.ok(isReachable('failed', 'paused'));
  assert.ok(!isReachable('deleted', 'running'));
  assert.ok(!isReachable('running', 'creating'));
  assert.ok(isReachable('running', 'deleted'), 'running → stopped → deleted');
});
