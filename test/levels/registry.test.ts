import assert from 'node:assert/strict';
import { test } from 'node:test';
import { StrataError } from '../../src/core/errors.js';
import { DriverRegistry } from '../../src/levels/registry.js';
import { FakeDriver } from '../support/fake-driver.js';

const hasCode = (code: string) => (e: unknown) => {
  assert.ok(e instanceof StrataError, String(e));
  assert.equal(e.code, code);
  return true;
};

test('register refuses a duplicate id and a second driver for one level', () => {
  const registry = new DriverRegistry().register(new FakeDriver({ id: 'os.fake', level: 'os' }));
  assert.throws(() => registry.register(new FakeDriver({ id: 'os.fake', level: 'vm' })), hasCode('STRATA_ERR_CONFIG'));
  assert.throws(() => registry.register(new FakeDriver({ id: 'os.other', level: 'os' })), hasCode('STRATA_ERR_CONFIG'));
  registry.register(new FakeDriver({ id: 'vm.fake', level: 'vm' }));
});

test('register refuses an unknown level', () => {
  const driver = new FakeDriver({ id: 'x.fake' });
  Object.defineProperty(driver, 'level', { value: 'mainframe' });
  assert.throws(() => new DriverRegistry().register(driver), hasCode('STRATA_ERR_CONFIG'));
});

test('forLevel answers the available driver, and refuses with STRATA_ERR_LEVEL_UNAVAILABLE otherwise', async () => {
  const os = new FakeDriver({ level: 'os' });
  const vm = new FakeDriver({ level: 'vm', availability: { available: false, reason: 'no /dev/kvm and no qemu' } });
  const registry = new DriverRegistry().register(os).register(vm);

  assert.throws(() => registry.forLevel('os'), hasCode('STRATA_ERR_LEVEL_UNAVAILABLE'), 'not provisioned yet');
  await registry.provisionAll();

  assert.equal(registry.forLevel('os'), os);
  assert.throws(() => registry.forLevel('vm'), (e: unknown) => {
    hasCode('STRATA_ERR_LEVEL_UNAVAILABLE')(e);
    assert.match((e as StrataError).message, /no \/dev\/kvm/);
    assert.equal((e as StrataError).status, 422);
    return true;
  });
  assert.throws(() => registry.forLevel('env'), (e: unknown) => {
    hasCode('STRATA_ERR_LEVEL_UNAVAILABLE')(e);
    assert.equal((e as StrataError).details?.reason, 'no driver installed');
    return true;
  });
  assert.deepEqual(registry.availableDrivers(), [os]);
});

test('a provision that throws makes the driver unavailable, never the registry fail', async () => {
  const broken = new FakeDriver({ level: 'vm' });
  broken.failOn('provision', { error: new Error('qemu-system-x86_64: not found') });
  const registry = new DriverRegistry().register(broken).register(new FakeDriver({ level: 'os' }));
  const described = await registry.provisionAll();
  const vm = described.find((d) => d.level === 'vm');
  assert.deepEqual(vm, { level: 'vm', driver: 'vm.fake', available: false, reason: 'provision failed: qemu-system-x86_64: not found' });
  assert.equal(described.find((d) => d.level === 'os')?.available, true);
});

test('provisionAll provisions each driver once, including one registered later', async () => {
  const os = new FakeDriver({ level: 'os' });
  const registry = new DriverRegistry().register(os);
  await registry.provisionAll();
  const env = new FakeDriver({ level: 'env' });
  registry.register(env);
  await registry.provisionAll();
  assert.equal(os.callsOf('provision').length, 1);
  assert.equal(env.callsOf('provision').length, 1);
  assert.equal(registry.forLevel('env'), env);
});

test('describe lists all four levels in order, with driver, availability and reason', async () => {
  const registry = new DriverRegistry()
    .register(new FakeDriver({ id: 'os.fake', level: 'os', availability: { available: true, reason: 'runc 1.1.5, cgroup v1' } }))
    .register(new FakeDriver({ id: 'emu.fake', level: 'emu', availability: { available: false, reason: 'no qemu-system-aarch64' } }));
  await registry.provisionAll();
  assert.deepEqual(registry.describe(), [
    { level: 'env', driver: null, available: false, reason: 'no driver installed' },
    { level: 'os', driver: 'os.fake', available: true, reason: 'runc 1.1.5, cgroup v1' },
    { level: 'vm', driver: null, available: false, reason: 'no driver installed' },
    { level: 'emu', driver: 'emu.fake', available: false, reason: 'no qemu-system-aarch64' },
  ]);
});

test('cleanupAll cleans every driver, provisioned or not, and reports the failures', async () => {
  const ok = new FakeDriver({ level: 'os' });
  const failing = new FakeDriver({ level: 'vm' });
  failing.failOn('cleanup', { error: new Error('tap device busy') });
  const registry = new DriverRegistry().register(ok).register(failing);
  await registry.provisionAll();
  const unprovisioned = new FakeDriver({ level: 'env' });
  registry.register(unprovisioned);
  const failures = await registry.cleanupAll();
  assert.deepEqual(failures, [{ driver: 'vm.fake', error: 'tap device busy' }]);
  assert.equal(ok.callsOf('cleanup').length, 1);
  assert.equal(unprovisioned.callsOf('provision').length, 0);
  assert.equal(unprovisioned.callsOf('cleanup').length, 1);
});
