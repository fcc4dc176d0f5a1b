/**
 * A level's config is checked by its level module at the API, before anything
 * is queued: a bad one is a 400 naming the field — no instance row, no
 * operation, no driver call — not a 202 whose background operation fails.
 * The drivers here are the real level classes with the machine left out
 * (provision, create, list … stubbed), so the registry's modules own them.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { DriverAvailability, InstanceSpec, ObservedInstance } from '../../src/levels/driver.js';
import { EnvDriver } from '../../src/levels/env/driver.js';
import { OsDriver } from '../../src/levels/os/driver.js';
import { EmuDriver, VmDriver } from '../../src/levels/vm/driver.js';
import { hostArch } from '../../src/levels/vm/images.js';
import { TestDaemon } from '../support/harness.js';
import { tempDir } from '../support/temp.js';

/** What the stubbed drivers were asked to create. */
const created: InstanceSpec[] = [];

/** A level driver class with its machine work replaced by a record of what it was asked. */
function offMachine<T extends new (...args: any[]) => { id: string }>(Base: T): T {
  return class extends Base {
    async provision(): Promise<DriverAvailability> { return { available: true, reason: 'test: no machine work' }; }
    async create(spec: InstanceSpec): Promise<void> { created.push(spec); }
    async start(): Promise<void> {}
    async inspect(id: string): Promise<ObservedInstance | null> { return created.some((s) => s.id === id) ? { id, state: 'stopped' } : null; }
    async list(): Promise<ObservedInstance[]> { return []; }
    async cleanup(): Promise<void> {}
  };
}

let dir: string;
let d: TestDaemon;
let acme: string;

before(async () => {
  dir = tempDir('level-config');
  const Os = offMachine(OsDriver), Env = offMachine(EnvDriver), Vm = offMachine(VmDriver), Emu = offMachine(EmuDriver);
  d = await TestDaemon.start({
    drivers: [
      new Os({ stateDir: join(dir, 'os'), runRoot: join(dir, 'run-os'), imagesDir: join(dir, 'images') }),
      new Env({ stateDir: join(dir, 'env') }),
      new Vm({ stateDir: join(dir, 'vm') }),
      new Emu({ stateDir: join(dir, 'emu') }),
    ],
  });
  acme = await d.tenantWithUser('acme', 'tenant-admin', { instances: 10, vcpus: 8, memoryMiB: 8192, diskMiB: 100_000, sites: 3 });
});
after(async () => {
  await d.close();
});

const launch = (body: object) => d.request('POST', '/v1/tenants/acme/instances', { token: acme, body: { start: false, ...body } });

/** Asserts a 400 naming `field`, and that nothing of `name` was recorded or handed to a driver. */
async function refused(body: { name: string; [key: string]: unknown }, field: string): Promise<void> {
  const before = created.length;
  const r = await launch(body);
  assert.equal(r.status, 400, `${body.name}: ${JSON.stringify(r.body)}`);
  assert.equal(r.body.error.code, 'STRATA_ERR_VALIDATION');
  const named = String(r.body.error.details?.field ?? r.body.error.details?.issues?.[0]?.field ?? '');
  assert.equal(named, field, `${body.name}: ${JSON.stringify(r.body.error)}`);
  assert.equal((await d.request('GET', `/v1/tenants/acme/instances/${body.name}`, { token: acme })).status, 404, 'no instance was recorded');
  assert.equal(created.length, before, 'no driver was asked');
}

test('os: a bad config, a volume over the disk, no image → 400 naming the field; a good one is queued', async () => {
  await refused({ name: 'o1', level: 'os', source: 'busybox', config: { port: 'eighty' } }, 'config.port');
  await refused({ name: 'o2', level: 'os', source: 'busybox', config: { ports: [80] } }, 'config');
  await refused({ name: 'o3', level: 'os', source: 'busybox', limits: { diskMiB: 64 }, config: { volumeMiB: 128 } }, 'config.volumeMiB');
  await refused({ name: 'o4', level: 'os', config: {} }, 'source');
  const ok = await launch({ name: 'o5', level: 'os', source: 'busybox', config: { port: 8080, restart: 'always' } });
  assert.equal(ok.status, 202, JSON.stringify(ok.body));
  assert.deepEqual(created.at(-1)?.config, { port: 8080 }, 'the driver gets the level config without the control plane\'s keys');
});

test('env: neither or both of source and code, a limit out of range → 400', async () => {
  await refused({ name: 'e1', level: 'env', config: {} }, 'source');
  await refused({ name: 'e2', level: 'env', source: '/srv/h.js', config: { code: 'export default {}' } }, 'source');
  await refused({ name: 'e3', level: 'env', config: { code: 'export default {}', cpuMs: 0 } }, 'config.cpuMs');
  assert.equal((await launch({ name: 'e4', level: 'env', config: { code: 'export default {}' } })).status, 202);
});

test('vm and emu: an unknown key, a guest architecture the level does not run → 400', async () => {
  await refused({ name: 'v1', level: 'vm', config: { kernel: '/boot/vmlinuz' } }, 'config');
  const foreign = hostArch() === 'aarch64' ? 'x86_64' : 'aarch64';
  await refused({ name: 'v2', level: 'vm', config: { arch: foreign } }, 'config.arch');
  await refused({ name: 'm1', level: 'emu', config: { port: 0 } }, 'config.port');
  assert.equal((await launch({ name: 'm2', level: 'emu', config: { arch: foreign, port: 8080 } })).status, 202);
});
