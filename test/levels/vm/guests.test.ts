/**
 * Real guests: an x86_64 guest under `vm` serves HTTP at its own address,
 * pauses (and then does not answer) and resumes, and a counter it keeps in
 * memory survives snapshot / stop / restore and counts on; an aarch64 guest
 * boots under `emu` and serves HTTP. Every QEMU, cgroup and temp dir is removed
 * at the end, also on failure. Skipped (with the reason) where the images are not built.
 */
import assert from 'node:assert/strict';
import { chmod, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { LevelDriver } from '../../../src/levels/driver.js';
import { EmuDriver, VmDriver } from '../../../src/levels/vm/index.js';
import { COUNTER_COMMAND, getWhen200, guestUrl, imageMissing, testNetwork, vmSpec } from './support.js';
import { tempDir } from '../../support/temp.js';

const BOOT_MS = 60_000;

describe('vm and emu guests', () => {
  let root: string;
  const made: Array<[LevelDriver, string]> = [];

  before(async () => {
    root = tempDir('vm-guests');
    await chmod(root, 0o711); // QEMU runs as the VM user and must traverse to its run directory
  });
  after(async () => {
    for (const [driver, id] of made) {
      await driver.stop(id, { graceMs: 0 }).catch(() => undefined);
      await driver.delete(id).catch(() => undefined);
      await driver.cleanup();
    }
  });

  const urlOf = async (driver: LevelDriver, id: string, path: string): Promise<string> => {
    const seen = await driver.inspect(id);
    assert.match(String(seen?.info?.address), /^10\.181\.0\.\d+$/, 'the guest has its own address on its tenant network');
    assert.equal(seen?.info?.port, undefined, 'no loopback forward: the gateway reaches the guest at its address');
    return guestUrl(driver, id, path);
  };

  test('x86_64 under vm: serves HTTP, pauses and resumes, a counter survives snapshot and restore', { timeout: 240_000 }, async (t) => {
    const missing = imageMissing('x86_64');
    if (missing) return t.skip(missing);
    const driver = new VmDriver({ stateDir: join(root, 'vm'), network: testNetwork(1) });
    const availability = await driver.provision();
    assert.ok(availability.available, availability.reason);
    assert.match(availability.reason, /^(KVM|TCG)/);
    const id = 'guest-x86';
    made.push([driver, id]);
    await driver.create(vmSpec(id, 'vm', { command: COUNTER_COMMAND }));
    await driver.start(id);
    const seen = await driver.inspect(id);
    assert.equal(seen?.state, 'running');
    assert.match(String(seen?.info?.accelerator), /^(kvm|tcg)$/);

    assert.match(await getWhen200(await urlOf(driver, id, '/'), BOOT_MS), /strata vm guest \(x86_64\)/);
    const counter = async (): Promise<number> => Number((await getWhen200(await urlOf(driver, id, '/counter'), BOOT_MS)).trim());
    while ((await counter()) < 3) await new Promise((r) => setTimeout(r, 300));

    await driver.pause(id);
    assert.equal((await driver.inspect(id))?.state, 'paused');
    await assert.rejects(getWhen200(await urlOf(driver, id, '/counter'), 600), /no 200/);
    await driver.resume(id);
    assert.equal((await driver.inspect(id))?.state, 'running');
    const beforeSnapshot = await counter();

    const snap = await driver.snapshot(id, 'snap-counter');
    assert.ok(snap.sizeBytes > 0);
    assert.match(snap.digest, /^sha256:[0-9a-f]{64}$/);
    assert.equal((await driver.inspect(id))?.state, 'running', 'a running guest runs on after a snapshot');
    await driver.stop(id, { graceMs: 200 });
    assert.equal((await driver.inspect(id))?.state, 'stopped');

    await driver.restore(id, 'snap-counter');
    assert.equal((await driver.inspect(id))?.state, 'stopped');
    await driver.start(id);
    const restored = await counter();
    assert.ok(restored >= beforeSnapshot, `counter went back: ${restored} < ${beforeSnapshot} (a fresh boot would start at 1)`);
    await new Promise((r) => setTimeout(r, 1_500));
    assert.ok((await counter()) > restored, 'the counter continues after restore');
    await driver.stop(id, { graceMs: 200 });
  });

  test('aarch64 under emu: boots and serves HTTP', { timeout: 180_000 }, async (t) => {
    const missing = imageMissing('aarch64');
    if (missing) return t.skip(missing);
    const driver = new EmuDriver({ stateDir: join(root, 'emu'), network: testNetwork(7) });
    const availability = await driver.provision();
    assert.ok(availability.available, availability.reason);
    const id = 'guest-arm';
    made.push([driver, id]);
    await driver.create(vmSpec(id, 'emu', { arch: 'aarch64' }));
    await driver.start(id);
    const seen = await driver.inspect(id);
    assert.equal(seen?.info?.accelerator, 'tcg');
    assert.equal(seen?.info?.arch, 'aarch64');
    assert.match(await getWhen200(await guestUrl(driver, id, '/'), BOOT_MS), /strata vm guest \(aarch64\)/);
    // The power button of virt is a GPIO key: acpid hears it too, and the guest powers itself off well within the grace.
    await driver.stop(id, { graceMs: 120_000 });
    assert.match(await readFile(String(seen?.info?.console), 'utf8'), /STRATA-POWEROFF/);
  });

  test('vm refuses a foreign architecture; emu takes it', { timeout: 30_000 }, async (t) => {
    const missing = imageMissing('x86_64');
    if (missing) return t.skip(missing);
    const driver = new VmDriver({ stateDir: join(root, 'vm-arch'), network: testNetwork(8) });
    await driver.provision();
    made.push([driver, 'wrong-arch']);
    await assert.rejects(driver.create(vmSpec('wrong-arch', 'vm', { arch: 'aarch64' })), /runs x86_64 guests, not aarch64/);
  });
});
