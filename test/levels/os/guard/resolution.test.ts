/**
 * Attribution of kernel records: by an identity the kernel never reuses (the
 * cgroup id), registered before the container runs; what does not resolve is
 * counted, never matched later against whoever holds a number then.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Resolver } from '../../../../src/levels/os/guard/resolution.js';
import { IdentityTable, RETIRE_GRACE_MS, type OsIdentity } from '../../../../src/levels/os/identities.js';

const start = (instanceId: string, cgroupId: string, since: bigint, initPid = 100): OsIdentity => ({
  cgroupId, tenantId: 'ta', instanceId, generation: cgroupId, initPid, uidBase: 100_000, vcpus: 1, since,
});

test('a record of an unknown identity is counted, not held and not attributed to an instance registered after it', () => {
  const table = new IdentityTable();
  const resolver = new Resolver(table);
  // The attacker's instance exits before anyone registered its cgroup (or it is another runtime's): no one gets its record.
  assert.equal(resolver.resolve(501, 1_000), null);
  // A neighbour registers the very same key afterwards, then a record made before its registration arrives late.
  table.register(start('victim', '501', 2_000n));
  assert.equal(resolver.resolve(501, 1_500), null, 'made before the registration: not the neighbour');
  assert.equal(resolver.resolve(501, 2_500)?.instanceId, 'victim', 'its own record after registration resolves');
  assert.deepEqual(resolver.take(), { unknown: 1, beforeRegistration: 1, last: { cgroupId: '501', comm: '' } });
  assert.deepEqual(resolver.take(), { unknown: 0, beforeRegistration: 0 }, 'each report counts its own second');
  assert.deepEqual(resolver.totals, { unknown: 1, beforeRegistration: 1 });
});

test('retirement: on the init\'s exit (not another process\'s), records in flight still resolve for a grace, then nothing does', (t) => {
  t.mock.timers.enable({ apis: ['Date'], now: 1_000_000 });
  const table = new IdentityTable();
  const resolver = new Resolver(table);
  table.register(start('web', '700', 10n, 4242));
  resolver.exited(700, 20, 4243); // some other process of the container
  assert.equal(table.current('web')?.cgroupId, '700');
  resolver.exited(700, 30, 4242);
  assert.equal(table.current('web'), undefined, 'the instance has no current start');
  assert.equal(resolver.resolve(700, 25)?.instanceId, 'web', 'a record made before the exit, arriving late');
  t.mock.timers.tick(RETIRE_GRACE_MS + 1);
  table.register(start('other', '701', 40n)); // registrations purge what is past its grace
  assert.equal(resolver.resolve(700, 26), null);
  assert.equal(table.size, 1);
});

test('a restart is a new generation; the old one retires', () => {
  const table = new IdentityTable();
  table.register(start('web', '800', 10n));
  table.register(start('web', '812', 50n));
  assert.equal(table.current('web')?.generation, '812');
  assert.equal(table.resolve('800', 20n).ok, true, 'the first start\'s late records are still its own');
  const late = table.resolve('800', 20n);
  assert.equal(late.ok && late.identity.generation, '800');
});
