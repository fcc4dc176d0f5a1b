/**
 * Snapshots of os instances on this machine: the upper layer and the data volume
 * go into the tenant's content-addressed store and come back on restore —
 * files written in a running container, files the image had and the instance
 * deleted (overlay whiteouts), deduplication, tamper detection, and the
 * separation of tenants' stores. The conformance suite's snapshot test runs in
 * driver.test.ts.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync, unlinkSync, chmodSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { OsDriver } from '../../../src/levels/os/driver.js';
import { parseOsDriverOptions } from '../../../src/levels/os/options.js';
import { tenantDirName, type SnapshotManifest } from '../../../src/levels/os/snapshots.js';
import { builtinImages, claimSlot, httpGet, leftovers, nothingLeft, rejectsWith, spec, testDriverOptions, waitFor200 } from './helpers.js';

const options = testDriverOptions(await claimSlot());
const config = parseOsDriverOptions(options);
const GRACE = { graceMs: 500 };

describe('os.runc snapshots', () => {
  let driver: OsDriver;
  const made: string[] = [];
  let n = 0;
  const launch = async (tenant: string, volumeMiB?: number): Promise<{ id: string; address: string; port: number }> => {
    const id = `snap-${process.pid}-${++n}`;
    made.push(id);
    await driver.create(spec(id, tenant, volumeMiB ? { config: { volumeMiB } } : {}));
    await driver.start(id);
    const { address, port } = await driver.address(id);
    await waitFor200(address, port ?? 8080);
    return { id, address, port: port ?? 8080 };
  };
  /** The running instance's root as the host sees it (the overlay mount): writes here land in its upper layer. */
  const hostRoot = (id: string): string => join(config.runRoot, 'rootfs', id);
  const cat = async (id: string, path: string): Promise<string> => {
    const r = await driver.run(id, ['sh', '-c', `cat ${path} 2>/dev/null || echo MISSING`]);
    return r.stdout;
  };
  const manifestOf = (tenant: string, digest: string): SnapshotManifest =>
    JSON.parse(readFileSync(join(config.stateDir, 'snapshots', tenantDirName(tenant), 'manifests', `${digest}.json`), 'utf8')) as SnapshotManifest;

  before(async () => {
    await builtinImages();
    driver = new OsDriver(options);
    const availability = await driver.provision();
    assert.ok(availability.available, availability.reason);
  });

  after(async () => {
    for (const id of made) {
      await driver.stop(id, GRACE).catch(() => undefined);
      await driver.delete(id).catch(() => undefined);
    }
    await driver.cleanup();
    rmSync(join(config.stateDir, 'snapshots'), { recursive: true, force: true });
    const found = await leftovers(options);
    assert.ok(nothingLeft(found), JSON.stringify(found));
  });

  test('files written while running, and image files deleted (whiteouts), come back from a snapshot', async () => {
    const web = await launch('acme', 16);
    // Inside the container: the volume. Through the host's view of its root: the upper layer.
    await driver.run(web.id, ['sh', '-c', 'echo v1 > /data/note && mkdir -p /data/sub && ln -s ../note /data/sub/link']);
    writeFileSync(join(hostRoot(web.id), 'www', 'extra.txt'), 'from the upper layer\n');
    unlinkSync(join(hostRoot(web.id), 'etc', 'hostname'));
    assert.equal((await httpGet(web.address, web.port, '/extra.txt')).body, 'from the upper layer\n');
    assert.equal(await cat(web.id, '/etc/hostname'), 'MISSING\n');

    const taken = await driver.snapshot(web.id, 'before');
    assert.match(taken.digest, /^[0-9a-f]{64}$/);
    assert.ok(taken.sizeBytes > 0, `sizeBytes ${taken.sizeBytes}`);
    assert.equal((await driver.inspect(web.id))?.state, 'running', 'thawed after the copy');
    const manifest = manifestOf('acme', taken.digest);
    const whiteout = manifest.upper.find((e) => e.path === 'etc/hostname');
    assert.equal(whiteout?.type, 'whiteout', 'the deleted image file is kept as a whiteout');
    assert.equal(manifest.volume?.find((e) => e.path === 'sub/link')?.target, '../note');

    // Change everything, then go back.
    await driver.run(web.id, ['sh', '-c', 'echo v2 > /data/note && echo later > /data/later']);
    writeFileSync(join(hostRoot(web.id), 'www', 'extra.txt'), 'changed\n');
    writeFileSync(join(hostRoot(web.id), 'www', 'new.txt'), 'new\n');
    writeFileSync(join(hostRoot(web.id), 'etc', 'hostname'), 'back again\n');
    await driver.stop(web.id, GRACE);
    await driver.restore(web.id, 'before');
    assert.equal((await driver.inspect(web.id))?.state, 'stopped');
    await driver.start(web.id);
    await waitFor200(web.address, web.port);

    assert.equal((await httpGet(web.address, web.port, '/extra.txt')).body, 'from the upper layer\n');
    assert.equal((await httpGet(web.address, web.port, '/new.txt')).status, 404);
    assert.equal((await httpGet(web.address, web.port, '/')).body, 'busybox ok\n', 'image files untouched');
    assert.equal(await cat(web.id, '/etc/hostname'), 'MISSING\n', 'the whiteout is back');
    assert.equal(await cat(web.id, '/data/note'), 'v1\n');
    assert.equal(await cat(web.id, '/data/sub/link'), 'v1\n', 'the symlink in the volume');
    assert.equal(await cat(web.id, '/data/later'), 'MISSING\n');
    const owners = await driver.run(web.id, ['sh', '-c', 'stat -c %u /data/note /www/extra.txt; touch /data/writable && echo ok']);
    assert.equal(owners.stdout, '0\n0\nok\n', 'restored files belong to the container root and the volume stays writable');
  });

  test('a directory the instance replaced (opaque in the overlay) still hides the image\'s files after restore', async () => {
    const web = await launch('acme');
    rmSync(join(hostRoot(web.id), 'www'), { recursive: true });
    mkdirSync(join(hostRoot(web.id), 'www'));
    writeFileSync(join(hostRoot(web.id), 'www', 'other.html'), 'other\n');
    assert.equal((await httpGet(web.address, web.port, '/index.html')).status, 404);
    const taken = await driver.snapshot(web.id, `opaque-${web.id}`);
    assert.equal(manifestOf('acme', taken.digest).upper.find((e) => e.path === 'www')?.opaque, true);
    await driver.stop(web.id, GRACE);
    // Back to the image's /www, then to the snapshot.
    rmSync(join(config.stateDir, 'instances', web.id, 'upper', 'www'), { recursive: true });
    await driver.start(web.id);
    await waitFor200(web.address, web.port);
    assert.equal((await httpGet(web.address, web.port, '/index.html')).status, 200);
    await driver.stop(web.id, GRACE);
    await driver.restore(web.id, `opaque-${web.id}`);
    await driver.start(web.id);
    // No index.html any more, so "/" is no 200: wait for the page that is there.
    for (let i = 0; i < 250; i++) {
      const seen = await httpGet(web.address, web.port, '/other.html', 500).catch(() => null);
      if (seen?.status === 200) break;
      await sleep(20);
    }
    assert.equal((await httpGet(web.address, web.port, '/other.html')).body, 'other\n');
    assert.equal((await httpGet(web.address, web.port, '/index.html')).status, 404, 'the lower /www stays hidden');
  });

  test('two snapshots of an unchanged instance: the second stores nothing and has the same digest', async () => {
    const web = await launch('acme', 16);
    await driver.run(web.id, ['sh', '-c', 'head -c 200000 /dev/urandom > /data/blob']);
    const first = await driver.snapshot(web.id, `dedup-1-${web.id}`);
    const second = await driver.snapshot(web.id, `dedup-2-${web.id}`);
    assert.ok(first.sizeBytes >= 200_000, `first ${first.sizeBytes}`);
    assert.equal(second.sizeBytes, 0);
    assert.equal(second.digest, first.digest);
    // A stopped instance is snapshotted too (its volume mounted for the copy only), to the same content.
    await driver.stop(web.id, GRACE);
    const stopped = await driver.snapshot(web.id, `dedup-3-${web.id}`);
    assert.equal(stopped.sizeBytes, 0);
    assert.equal(stopped.digest, first.digest);
    assert.ok(!(await leftovers(options)).mounts.some((m) => m.includes(web.id)), 'the volume is unmounted again');
    await rejectsWith(driver.snapshot(web.id, `dedup-1-${web.id}`), 'STRATA_ERR_CONFLICT');
  });

  test('deleting a snapshot frees only what no other snapshot of the tenant needs', async () => {
    const web = await launch('initech', 16);
    const store = join(config.stateDir, 'snapshots', 'initech');
    const objects = (): number => readdirSync(join(store, 'objects')).reduce((sum, p) => sum + readdirSync(join(store, 'objects', p)).length, 0);
    await driver.run(web.id, ['sh', '-c', 'head -c 100000 /dev/urandom > /data/kept']);
    await driver.snapshot(web.id, 'one');
    await driver.run(web.id, ['sh', '-c', 'head -c 50000 /dev/urandom > /data/added']);
    await driver.snapshot(web.id, 'two');
    const before = objects();
    const freed = await driver.deleteSnapshot('initech', 'two');
    assert.ok(freed.freedBytes >= 50_000 && freed.freedBytes < 100_000, `freed ${freed.freedBytes}`);
    assert.equal(objects(), before - 1, "only 'added' goes; 'kept' is still needed by 'one'");
    await driver.stop(web.id, GRACE);
    await driver.restore(web.id, 'one');
    await driver.start(web.id);
    assert.equal((await driver.run(web.id, ['sh', '-c', 'wc -c < /data/kept; test -e /data/added || echo gone'])).stdout.replace(/ +/g, ''), '100000\ngone\n');
    await driver.deleteSnapshot('initech', 'one');
    assert.equal(objects(), 0);
    assert.deepEqual(readdirSync(join(store, 'manifests')), []);
    await rejectsWith(driver.restore(web.id, 'one'), 'STRATA_ERR_INVALID_STATE_TRANSITION');
    await driver.deleteSnapshot('initech', 'one');
  });

  test('a tampered object makes restore fail, naming it; the instance keeps what it had', async () => {
    const web = await launch('acme', 16);
    await driver.run(web.id, ['sh', '-c', 'echo precious > /data/precious']);
    const taken = await driver.snapshot(web.id, `tamper-${web.id}`);
    const entry = manifestOf('acme', taken.digest).volume!.find((e) => e.path === 'precious')!;
    const object = driver.snapshots.objectPath('acme', entry.sha256!);
    await driver.run(web.id, ['sh', '-c', 'echo current > /data/precious']);
    await driver.stop(web.id, GRACE);
    chmodSync(object, 0o600);
    writeFileSync(object, 'evil\n');
    await rejectsWith(driver.restore(web.id, `tamper-${web.id}`), 'STRATA_ERR_DRIVER', new RegExp(`${entry.sha256}.*precious.*corrupt`));
    rmSync(object);
    await rejectsWith(driver.restore(web.id, `tamper-${web.id}`), 'STRATA_ERR_DRIVER', new RegExp(`${entry.sha256}.*missing`));
    await driver.start(web.id);
    assert.equal(await cat(web.id, '/data/precious'), 'current\n');
    assert.deepEqual(readdirSync(join(config.stateDir, 'instances', web.id)).filter((f) => f.startsWith('restore-')), [], 'no staging left');
  });

  test('restore is refused while the instance runs, and for an unknown snapshot', async () => {
    const web = await launch('acme');
    await driver.snapshot(web.id, `running-${web.id}`);
    await rejectsWith(driver.restore(web.id, `running-${web.id}`), 'STRATA_ERR_INVALID_STATE_TRANSITION');
    await driver.pause(web.id);
    await driver.snapshot(web.id, `paused-${web.id}`);
    assert.equal((await driver.inspect(web.id))?.state, 'paused', 'a paused instance stays paused');
    await driver.resume(web.id);
    await driver.stop(web.id, GRACE);
    await rejectsWith(driver.restore(web.id, 'no-such-snapshot'), 'STRATA_ERR_NOT_FOUND');
    await rejectsWith(driver.restore(web.id, '../escape'), 'STRATA_ERR_VALIDATION');
  });

  test("tenants' stores are separate: no shared objects, no restoring another tenant's snapshot", async () => {
    const mine = await launch('acme', 16);
    const theirs = await launch('globex', 16);
    for (const id of [mine.id, theirs.id]) await driver.run(id, ['sh', '-c', 'echo same content > /data/same']);
    const a = await driver.snapshot(mine.id, 'shared-name');
    const b = await driver.snapshot(theirs.id, 'shared-name');
    assert.ok(b.sizeBytes > 0, 'identical content is stored again for another tenant, never deduplicated across tenants');
    const sha = manifestOf('acme', a.digest).volume!.find((e) => e.path === 'same')!.sha256!;
    assert.ok(existsSync(driver.snapshots.objectPath('acme', sha)));
    assert.ok(existsSync(driver.snapshots.objectPath('globex', sha)));
    assert.notEqual(driver.snapshots.objectPath('acme', sha), driver.snapshots.objectPath('globex', sha));
    assert.equal(statSync(join(config.stateDir, 'snapshots', 'acme')).mode & 0o777, 0o700);

    await driver.run(theirs.id, ['sh', '-c', 'echo mine-only > /data/private']);
    await driver.snapshot(theirs.id, `globex-only-${theirs.id}`);
    await driver.stop(mine.id, GRACE);
    await rejectsWith(driver.restore(mine.id, `globex-only-${theirs.id}`), 'STRATA_ERR_NOT_FOUND');
    // The same snapshot id in each tenant names each tenant's own snapshot.
    await driver.restore(mine.id, 'shared-name');
    await driver.start(mine.id);
    assert.equal(await cat(mine.id, '/data/private'), 'MISSING\n');
    // Tenant ids never alias in the store.
    assert.notEqual(tenantDirName('a/b'), tenantDirName('a_b'));
    assert.ok(!tenantDirName('../x').includes('/'));
    assert.ok(tenantDirName('..').startsWith('~'));
  });
});
