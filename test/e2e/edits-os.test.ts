/**
 * Editing a real os instance through the API: new vCPUs and memory reach the
 * running container's cgroup at once (`applied: live`, read back from the
 * cgroup files); a new environment and port wait for the next start
 * (`next-restart`: the gateway keeps the port that serves meanwhile) and are
 * the container's once restarted, with the limits kept; a
 * memory limit below what the container uses now is not forced on it; the
 * data volume's size is refused. Nothing is left on the machine.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { OsDriver } from '../../src/levels/os/driver.js';
import { detectCgroupMode, instanceCgroupPath } from '../../src/levels/os/cgroups.js';
import { builtinImages, claimSlot, leftovers, testDriverOptions } from '../levels/os/helpers.js';
import { TestDaemon } from '../support/harness.js';
import { until } from '../support/until.js';

const options = testDriverOptions(await claimSlot());
const MIB = 1024 * 1024;
let driver: OsDriver;
let d: TestDaemon;
let token: string;

before(async () => {
  await builtinImages();
  driver = new OsDriver(options);
  d = await TestDaemon.start({ drivers: [driver] });
  token = await d.tenantWithUser('acme', 'tenant-admin', { instances: 2, vcpus: 4, memoryMiB: 1024 });
});

after(async () => {
  for (const i of (await d.request('GET', '/v1/tenants/acme/instances', { token })).body.items ?? []) {
    await d.request('DELETE', `/v1/tenants/acme/instances/${i.name}?wait=30`, { token });
  }
  await d.close();
  assert.deepEqual(await leftovers(options), { containers: [], mounts: [], links: [], cgroups: [], firewall: [], instances: [] });
});

const as = (method: string, path: string, body?: unknown) => d.request(method, path, { token, ...(body !== undefined ? { body } : {}) });

/** The container's memory limit (MiB) and CPU quota (CPUs) as its cgroup holds them now. */
function cgroupLimits(instanceId: string): { memoryMiB: number; vcpus: number; memswMiB?: number } {
  const tenantId = d.daemon.services.store.getTenantByName('acme')!.id;
  const path = instanceCgroupPath(options.cgroupRoot!, tenantId, instanceId);
  const read = (...p: string[]): string => readFileSync(join('/sys/fs/cgroup', ...p), 'utf8').trim();
  if (detectCgroupMode() === 'v2') {
    const [quota, period] = read(path, 'cpu.max').split(' ');
    return { memoryMiB: Number(read(path, 'memory.max')) / MIB, vcpus: Number(quota) / Number(period) };
  }
  const memsw = (() => { try { return Number(read('memory', path, 'memory.memsw.limit_in_bytes')) / MIB; } catch { return undefined; } })();
  return {
    memoryMiB: Number(read('memory', path, 'memory.limit_in_bytes')) / MIB,
    vcpus: Number(read('cpu', path, 'cpu.cfs_quota_us')) / Number(read('cpu', path, 'cpu.cfs_period_us')),
    ...(memsw !== undefined ? { memswMiB: memsw } : {}),
  };
}

/**
 * Waits until the guard has baselined the instance and taken its known-good
 * snapshot. A restart while it still does (about a second after a start) makes
 * it see the root being remounted as tampering and recover the instance: a
 * race of the guard's, not of edits, which this file keeps out of its way.
 */
async function guardSettled(id: string): Promise<void> {
  await until(() => d.daemon.integrity.target.knownGood.has(id) && d.daemon.integrity.monitor.tree(`instance:${id}`), { ms: 15_000, what: 'the guard baseline' });
  await d.daemon.integrity.watch.idle();
}

/** The environment of the container's init (its process 1), as KEY=VALUE lines. */
async function initEnv(id: string): Promise<string[]> {
  const r = await driver.run(id, ['cat', '/proc/1/environ']);
  return r.stdout.split('\0').filter(Boolean);
}

test('vCPUs and memory change live on the running container; the environment at the next start', async () => {
  const l = await as('POST', '/v1/tenants/acme/instances?wait=30', { name: 'web', level: 'os', source: 'busybox', limits: { vcpus: 1, memoryMiB: 64 } });
  assert.equal(l.status, 200, JSON.stringify(l.body));
  assert.equal(l.body.operation.status, 'succeeded', JSON.stringify(l.body.operation));
  const id = l.body.instance.id as string;
  await guardSettled(id);
  const start = cgroupLimits(id);
  assert.equal(start.memoryMiB, 64);
  assert.equal(start.vcpus, 1);

  const r = await as('PATCH', '/v1/tenants/acme/instances/web', { limits: { vcpus: 0.5, memoryMiB: 96 } });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.deepEqual(r.body.applied, { 'limits.vcpus': 'live', 'limits.memoryMiB': 'live' });
  const live = cgroupLimits(id);
  assert.equal(live.memoryMiB, 96, 'the running container has the new memory limit');
  assert.equal(live.vcpus, 0.5, 'and the new CPU quota');
  if (live.memswMiB !== undefined) assert.equal(live.memswMiB, 96, 'with no swap on top');

  const servedOn = (await driver.inspect(id))!.info!.port;
  const env = await as('PATCH', '/v1/tenants/acme/instances/web', { config: { env: { MODE: 'two' }, port: 9090 } });
  assert.equal(env.status, 200, JSON.stringify(env.body));
  assert.deepEqual(env.body.applied, { 'config.env': 'next-restart', 'config.port': 'next-restart' });
  assert.ok(!(await initEnv(id)).includes('MODE=two'), 'not in the running container');
  assert.equal((await driver.inspect(id))!.info!.port, servedOn, 'the gateway keeps reaching the port the container serves on');
  const restarted = await as('POST', '/v1/tenants/acme/instances/web/restart?wait=30');
  assert.equal(restarted.body.operation.status, 'succeeded', JSON.stringify(restarted.body.operation));
  await guardSettled(id);
  const env2 = await initEnv(id);
  assert.ok(env2.includes('MODE=two') && env2.includes('PORT=9090'), `in the container once restarted: ${env2.join(' ')}`);
  assert.equal((await driver.inspect(id))!.info!.port, 9090);
  assert.deepEqual(cgroupLimits(id), live, 'the limits changed live are the ones it restarts with');
});

test('a memory limit below what the container uses waits for the next start; the volume size cannot change', async () => {
  const id = (await as('GET', '/v1/tenants/acme/instances/web')).body.id as string;
  // 48 MiB in the container's tmpfs: charged to its memory cgroup.
  const fill = await driver.run(id, ['dd', 'if=/dev/zero', 'of=/tmp/fill', 'bs=1048576', 'count=48']);
  assert.equal(fill.exitCode, 0, fill.stderr);
  const r = await as('PATCH', '/v1/tenants/acme/instances/web', { limits: { memoryMiB: 32 } });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.deepEqual(r.body.applied, { 'limits.memoryMiB': 'next-restart' });
  assert.equal(cgroupLimits(id).memoryMiB, 96, 'the running container keeps its limit (and its processes)');
  assert.equal((await as('POST', '/v1/tenants/acme/instances/web/restart?wait=30')).body.operation.status, 'succeeded');
  assert.equal(cgroupLimits(id).memoryMiB, 32, 'the next start has it');
  await guardSettled(id);

  const volume = await as('PATCH', '/v1/tenants/acme/instances/web', { config: { volumeMiB: 64 } });
  assert.equal(volume.status, 400, JSON.stringify(volume.body));
  assert.equal(volume.body.error.details.issues[0].field, 'config.volumeMiB');
  assert.equal((await as('GET', '/v1/tenants/acme/instances/web')).body.config.volumeMiB, undefined, 'nothing changed');
});
