/**
 * Clones of os instances on this machine: a new instance made from a snapshot
 * serves the snapshot's files (upper layer and volume) at its own address with
 * its own hostname while the original keeps serving; bad origins (unknown
 * snapshot, another instance's, corrupt objects) are refused and leave nothing.
 */
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { OsDriver } from '../../../src/levels/os/driver.js';
import { parseOsDriverOptions } from '../../../src/levels/os/options.js';
import { tenantDirName } from '../../../src/levels/os/snapshots.js';
import { builtinImages, claimSlot, httpGet, leftovers, nothingLeft, rejectsWith, spec, testDriverOptions, waitFor200 } from './helpers.js';

const options = testDriverOptions(await claimSlot());
const config = parseOsDriverOptions(options);
const GRACE = { graceMs: 500 };

describe('os.runc clone', () => {
  let driver: OsDriver;
  const made: string[] = [];
  let n = 0;
  const fresh = (): string => {
    const id = `clone-${process.pid}-${++n}`;
    made.push(id);
    return id;
  };
  const serve = async (id: string): Promise<{ address: string; port: number }> => {
    await driver.start(id);
    const { address, port } = await driver.address(id);
    await waitFor200(address, port ?? 8080);
    return { address, port: port ?? 8080 };
  };
  const hostRoot = (id: string): string => join(config.runRoot, 'rootfs', id);

  before(async () => {
    await builtinImages();
    driver = new OsDriver(options);
    const availability = await driver.provision();
    assert.ok(availability.available, availability.reason);
    assert.ok(driver.supports.has('clone'));
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

  test('the clone serves the snapshot\'s files at its own address and hostname; the original keeps serving', async () => {
    const origId = fresh();
    await driver.create(spec(origId, 'acme', { name: 'orig', config: { volumeMiB: 16 } }));
    const orig = await serve(origId);
    writeFileSync(join(hostRoot(origId), 'www', 'page.html'), 'written before the snapshot\n');
    await driver.run(origId, ['sh', '-c', 'echo kept > /data/note']);
    await driver.snapshot(origId, 'snap-1');
    // Changes after the snapshot stay the original's.
    writeFileSync(join(hostRoot(origId), 'www', 'later.html'), 'after\n');

    const copyId = fresh();
    await driver.clone(spec(copyId, 'acme', { name: 'copy', config: { volumeMiB: 16 } }), { instanceId: origId, snapshotId: 'snap-1' });
    assert.equal((await driver.inspect(copyId))?.state, 'stopped', 'a clone is created stopped');
    const copy = await serve(copyId);

    assert.notEqual(copy.address, orig.address, 'a fresh address');
    assert.equal((await httpGet(copy.address, copy.port, '/page.html')).body, 'written before the snapshot\n');
    assert.equal((await httpGet(copy.address, copy.port, '/later.html')).status, 404);
    assert.equal((await driver.run(copyId, ['cat', '/data/note'])).stdout, 'kept\n', 'the volume came along');
    assert.equal((await driver.run(copyId, ['hostname'])).stdout.trim(), 'copy');
    assert.equal((await driver.run(origId, ['hostname'])).stdout.trim(), 'orig');

    // Both serve, side by side; the clone's writes are its own.
    await driver.run(copyId, ['sh', '-c', 'echo mine > /data/note']);
    assert.equal((await driver.run(origId, ['cat', '/data/note'])).stdout, 'kept\n');
    assert.equal((await httpGet(orig.address, orig.port, '/later.html')).body, 'after\n');
    assert.equal((await httpGet(copy.address, copy.port, '/page.html')).status, 200);
  });

  test('an unknown snapshot, or one of another instance, is refused and leaves nothing', async () => {
    const origId = fresh();
    await driver.create(spec(origId, 'acme'));
    await driver.snapshot(origId, 'snap-2');
    const copyId = fresh();
    await rejectsWith(driver.clone(spec(copyId, 'acme'), { instanceId: origId, snapshotId: 'no-such' }), 'STRATA_ERR_NOT_FOUND');
    await rejectsWith(driver.clone(spec(copyId, 'acme'), { instanceId: 'someone-else', snapshotId: 'snap-2' }), 'STRATA_ERR_NOT_FOUND');
    // Another tenant cannot name it: its store has no such snapshot.
    await rejectsWith(driver.clone(spec(copyId, 'umbrella'), { instanceId: origId, snapshotId: 'snap-2' }), 'STRATA_ERR_NOT_FOUND');
    assert.equal(await driver.inspect(copyId), null);
  });

  test('a volume mismatch or a corrupt object fails the clone, naming it, and leaves nothing', async () => {
    const origId = fresh();
    await driver.create(spec(origId, 'acme'));
    await serve(origId);
    writeFileSync(join(hostRoot(origId), 'www', 'victim.html'), 'will be corrupted\n');
    await driver.stop(origId, GRACE);
    await driver.snapshot(origId, 'snap-3');
    const copyId = fresh();
    await rejectsWith(driver.clone(spec(copyId, 'acme', { config: { volumeMiB: 16 } }), { instanceId: origId, snapshotId: 'snap-3' }), 'STRATA_ERR_CONFLICT', /volume/);
    assert.equal(await driver.inspect(copyId), null);

    const objects = join(config.stateDir, 'snapshots', tenantDirName('acme'), 'objects');
    const victim = readdirSync(objects).flatMap((p) => readdirSync(join(objects, p)).map((o) => join(objects, p, o)))
      .find((path) => readFileSync(path, 'utf8') === 'will be corrupted\n');
    assert.ok(victim);
    chmodSync(victim, 0o600);
    writeFileSync(victim, 'tampered\n');
    await rejectsWith(driver.clone(spec(copyId, 'acme'), { instanceId: origId, snapshotId: 'snap-3' }), 'STRATA_ERR_DRIVER', /corrupt/);
    assert.equal(await driver.inspect(copyId), null);
  });
});
