/**
 * OsDriver on this machine: the shared conformance suite, then the os level's own
 * lifecycle — a busybox httpd reachable from the host at its address, live stats,
 * logs, volumes, the node image, config validation, tenant limits — and the orphan
 * test: a fresh driver (the daemon after a crash) sees every container the old one
 * left and deletes them without leaking processes, mounts, veths or cgroups.
 */
import assert from 'node:assert/strict';
import { readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { isStrataError } from '../../../src/core/errors.js';
import { OsDriver } from '../../../src/levels/os/driver.js';
import { driverConformance } from '../conformance.js';
import { builtinImages, claimSlot, leftovers, nothingLeft, spec, testDriverOptions, waitFor200 } from './helpers.js';

const options = testDriverOptions(await claimSlot());

driverConformance('os.runc', async () => {
  await builtinImages();
  return new OsDriver(options);
}, { spec: (id) => spec(id, 'conformance'), graceMs: 1_000 });

const rejectsWith = (p: Promise<unknown>, code: string): Promise<void> =>
  assert.rejects(p, (e: unknown) => {
    assert.ok(isStrataError(e), String(e));
    assert.equal(e.code, code, e.message);
    return true;
  });

describe('os.runc lifecycle', () => {
  let driver: OsDriver;
  const made: string[] = [];
  let n = 0;
  const launch = async (tenant: string, overrides: Parameters<typeof spec>[2] = {}): Promise<{ id: string; address: string; port: number }> => {
    const id = `life-${process.pid}-${++n}`;
    made.push(id);
    await driver.create(spec(id, tenant, overrides));
    await driver.start(id);
    const { address, port } = await driver.address(id);
    return { id, address, port: port ?? 8080 };
  };

  before(async () => {
    await builtinImages();
    driver = new OsDriver(options);
    const availability = await driver.provision();
    assert.ok(availability.available, availability.reason);
  });

  after(async () => {
    for (const id of made) {
      await driver.stop(id, { graceMs: 500 }).catch(() => undefined);
      await driver.delete(id).catch(() => undefined);
    }
    await driver.cleanup();
    assert.deepEqual(await leftovers(options), { containers: [], mounts: [], links: [], cgroups: [], firewall: [], instances: [] });
  });

  test('a busybox httpd answers the host at its address; inspect has live stats', async () => {
    const web = await launch('acme');
    assert.match(web.address, /^10\.2\d\d\.\d+\.\d+$/);
    const answer = await waitFor200(web.address, web.port);
    assert.equal(answer.body, 'busybox ok\n');
    const seen = await driver.inspect(web.id);
    assert.equal(seen?.state, 'running');
    assert.equal(seen?.info?.address, web.address);
    const stats = seen?.info?.stats as Record<string, number>;
    assert.ok(stats.cpuUsageNs > 0, 'cpu');
    assert.ok(stats.memoryBytes > 0, 'memory');
    assert.ok(stats.pids >= 1, 'pids');
    assert.ok(stats.netRxBytes > 0 && stats.netTxBytes > 0, `net bytes ${stats.netRxBytes}/${stats.netTxBytes}`);
  });

  test('two instances of one tenant share its bridge and reach each other; the container sees its own ids as root', async () => {
    const a = await launch('acme');
    const b = await launch('acme');
    await waitFor200(b.address, b.port);
    const fetched = await driver.run(a.id, ['timeout', '3', 'wget', '-q', '-O', '-', `http://${b.address}:${b.port}/`]);
    assert.equal(fetched.stdout, 'busybox ok\n', fetched.stderr);
    const ids = await driver.run(a.id, ['sh', '-c', 'id -u; stat -c %u /bin/busybox; cat /proc/self/uid_map']);
    const [uid, owner, map] = ids.stdout.trim().split('\n');
    assert.equal(uid, '0');
    assert.equal(owner, '0');
    assert.match(map!.trim(), /^0\s+(\d+)\s+65536$/);
    assert.ok(Number(/^0\s+(\d+)/.exec(map!.trim())![1]) >= 2_000_000_000, 'mapped far above the host ids');
  });

  test("stdout and stderr land in the instance's log", async () => {
    const web = await launch('acme', { config: { args: ['sh', '-c', 'echo to-stdout; echo to-stderr >&2; exec httpd -f -p 8080 -h /www'] } });
    await waitFor200(web.address, web.port);
    const log = readFileSync(driver.logPath(web.id), 'utf8');
    assert.match(log, /to-stdout/);
    assert.match(log, /to-stderr/);
  });

  test('the root is read-only; /tmp and the volume are writable; the volume keeps its data across a restart', async () => {
    const web = await launch('acme', { config: { volumeMiB: 16 } });
    const probe = await driver.run(web.id, ['sh', '-c', 'touch /root-write 2>&1; echo tmp > /tmp/x && cat /tmp/x; echo kept > /data/file && cat /data/file; df -k /data | tail -1']);
    assert.match(probe.stdout, /Read-only file system/);
    assert.match(probe.stdout, /^tmp$/m);
    assert.match(probe.stdout, /^kept$/m);
    const sizeKb = Number(probe.stdout.trim().split('\n').at(-1)!.trim().split(/\s+/)[1]);
    assert.ok(sizeKb > 8_000 && sizeKb <= 16_384, `volume size ${sizeKb} KiB`);
    await driver.stop(web.id, { graceMs: 500 });
    await driver.start(web.id);
    assert.equal((await driver.run(web.id, ['cat', '/data/file'])).stdout, 'kept\n');
  });

  test('a process that handles SIGTERM ends within the grace period, not after it', async () => {
    const web = await launch('acme', { config: { args: ['sh', '-c', "trap 'exit 0' TERM; while true; do sleep 0.1; done"] } });
    const started = Date.now();
    await driver.stop(web.id, { graceMs: 5_000 });
    assert.ok(Date.now() - started < 2_000, `stop took ${Date.now() - started} ms`);
    assert.equal((await driver.inspect(web.id))?.state, 'stopped');
  });

  test('a process that dies on its own shows as failed', async () => {
    const web = await launch('acme', { config: { args: ['sh', '-c', 'exit 3'] } });
    for (let i = 0; i < 100 && (await driver.inspect(web.id))?.state === 'running'; i++) await sleep(20);
    const seen = await driver.inspect(web.id);
    assert.equal(seen?.state, 'failed');
    assert.match(String(seen?.info?.error), /exited/);
  });

  test('the node image serves HTTP', async () => {
    const web = await launch('acme', { source: 'node', limits: { vcpus: 1, memoryMiB: 256, diskMiB: 256 } });
    assert.equal((await waitFor200(web.address, web.port, 10_000)).body, 'node ok\n');
  });

  test('config is validated strictly; images and volume sizes are checked', async () => {
    await rejectsWith(driver.create(spec(`bad-${process.pid}-1`, 'acme', { config: { unknown: true } })), 'STRATA_ERR_VALIDATION');
    await rejectsWith(driver.create(spec(`bad-${process.pid}-2`, 'acme', { config: { port: 70_000 } })), 'STRATA_ERR_VALIDATION');
    await rejectsWith(driver.create(spec(`bad-${process.pid}-3`, 'acme', { config: { volumeMiB: 1024 } })), 'STRATA_ERR_VALIDATION');
    await rejectsWith(driver.create(spec(`bad-${process.pid}-4`, 'acme', { source: 'no-such-image' })), 'STRATA_ERR_NOT_FOUND');
    await rejectsWith(driver.create(spec(`bad-${process.pid}-5`, 'acme', { source: null })), 'STRATA_ERR_VALIDATION');
    await rejectsWith(driver.start(`never-${process.pid}`), 'STRATA_ERR_NOT_FOUND');
  });

  test("a tenant's limits land on its parent cgroup", async () => {
    const web = await launch('limited');
    await driver.setTenantLimits('limited', { vcpus: 1.5, memoryMiB: 300, pids: 1000 });
    const base = `/sys/fs/cgroup/memory/${options.cgroupRoot}/t-limited`;
    assert.equal(readFileSync(join(base, 'memory.limit_in_bytes'), 'utf8').trim(), String(300 * 1024 * 1024));
    assert.equal(readFileSync(`/sys/fs/cgroup/cpu/${options.cgroupRoot}/t-limited/cpu.cfs_quota_us`, 'utf8').trim(), '150000');
    assert.equal(readFileSync(`/sys/fs/cgroup/pids/${options.cgroupRoot}/t-limited/pids.max`, 'utf8').trim(), '1000');
    assert.ok(statSync(join(base, web.id)).isDirectory(), "the instance's cgroup sits under its tenant's");
    await driver.setTenantLimits('limited', undefined);
  });
});

describe('os.runc orphans: a fresh driver after a crash', () => {
  test('lists what the old driver left, running, and deletes it all without leaks', async () => {
    await builtinImages();
    const crashed = new OsDriver(options);
    assert.ok((await crashed.provision()).available);
    const ids = [`orphan-${process.pid}-1`, `orphan-${process.pid}-2`, `orphan-${process.pid}-3`];
    for (const [i, id] of ids.entries()) {
      await crashed.create(spec(id, i === 0 ? 'acme' : 'other', { config: { volumeMiB: 16 } }));
      await crashed.start(id);
    }
    const { address } = await crashed.address(ids[0]!);
    await waitFor200(address, 8080);
    // The record of one is lost as well: it must still be found through the runtime.
    rmSync(join(options.stateDir!, 'instances', ids[2]!, 'instance.json'));

    const fresh = new OsDriver(options);
    assert.ok((await fresh.provision()).available);
    const listed = new Map((await fresh.list()).map((o) => [o.id, o]));
    assert.equal(listed.get(ids[0]!)?.state, 'running');
    assert.equal(listed.get(ids[1]!)?.state, 'running');
    assert.equal(listed.get(ids[2]!)?.state, 'failed');
    assert.match(String(listed.get(ids[2]!)?.info?.error), /orphan/);
    for (const id of listed.keys()) await fresh.delete(id);
    assert.deepEqual(await fresh.list(), []);
    await fresh.cleanup();
    await crashed.cleanup();
    const found = await leftovers(options);
    assert.ok(nothingLeft(found), JSON.stringify(found));
  });
});
