/**
 * What the registry takes from the level modules: checks, levers and
 * interceptors go with a module's own drivers only (a test double of the same
 * level gets the lifecycle and nothing else); interceptors a source shares
 * between levels are made once over all their drivers; and the product's list
 * has one module per level, each building a driver of its own class.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import pino from 'pino';
import type { Interceptor } from '../../src/core/interceptor.js';
import type { LevelDriver } from '../../src/levels/driver.js';
import { LEVEL_MODULES } from '../../src/levels/index.js';
import type { InstanceLevers, InterceptorSource, LevelModule } from '../../src/levels/module.js';
import { DriverRegistry } from '../../src/levels/registry.js';
import type { Store } from '../../src/store/store.js';
import { LEVEL_IDS, type Level } from '../../src/levels/ids.js';
import { FakeDriver } from '../support/fake-driver.js';

class OwnedFake extends FakeDriver {}

const levers: InstanceLevers = {
  tree: () => null, setCpu: async () => {}, cpu: async () => null, setNetwork: async () => {}, network: async () => null, snapshotsMemory: true,
};

/** One interceptor per call, named after the drivers it was made over. */
const shared: InterceptorSource = {
  interceptors: (drivers) => [{ id: `shared:${drivers.map((d) => d.level).join('+')}`, start: async () => {}, stop: async () => {} } satisfies Interceptor],
};

const moduleFor = (id: Level): LevelModule => ({
  id,
  driver: () => new OwnedFake({ level: id }),
  owns: (d: LevelDriver): d is OwnedFake => d instanceof OwnedFake,
  validate: (input) => { if ('bad' in input.config) throw new Error(`${id}: bad config`); },
  levers: () => levers,
  interceptors: shared,
});

const ctx = { store: {} as Store, log: pino({ level: 'silent' }) };

test('a module checks, pulls levers and intercepts for its own driver only', async () => {
  const registry = new DriverRegistry([moduleFor('os'), moduleFor('env')])
    .register(new OwnedFake({ level: 'os' }))
    .register(new FakeDriver({ level: 'env' }));
  await registry.provisionAll();
  const input = { source: null, limits: { vcpus: 1, memoryMiB: 64, diskMiB: 64 }, config: { bad: true } };
  assert.throws(() => registry.validate('os', input), /os: bad config/);
  assert.doesNotThrow(() => registry.validate('env', input), 'a test double is not checked by the module');
  assert.equal(registry.levers('os'), levers);
  assert.equal(registry.levers('env'), null);
  assert.deepEqual(registry.interceptors(ctx).map((i) => i.id), ['shared:os']);
});

test('a source shared by two levels makes one set over both drivers; an unavailable driver is left out', async () => {
  const down = new OwnedFake({ level: 'emu', availability: { available: false, reason: 'no qemu' } });
  const registry = new DriverRegistry([moduleFor('vm'), moduleFor('emu'), moduleFor('os')])
    .register(new OwnedFake({ level: 'vm' })).register(new OwnedFake({ level: 'os' })).register(down);
  await registry.provisionAll();
  assert.deepEqual(registry.interceptors(ctx).map((i) => i.id), ['shared:os+vm']);
  assert.equal(registry.levers('emu'), null, 'no levers on a level that is not available');
});

test('the product lists one module per level, each building a driver of its own that it owns', () => {
  assert.deepEqual(LEVEL_MODULES.map((m) => m.id), [...LEVEL_IDS]);
  for (const m of LEVEL_MODULES) {
    const driver = m.driver({ dataDir: '/nonexistent' });
    assert.equal(driver.level, m.id);
    assert.ok(m.owns(driver), `${m.id} owns its driver`);
    assert.ok(!m.owns(new FakeDriver({ level: m.id })), `${m.id} does not own a test double`);
    for (const other of LEVEL_MODULES.filter((o) => o !== m)) assert.ok(!other.owns(driver), `${other.id} does not own ${m.id}'s driver`);
  }
});
