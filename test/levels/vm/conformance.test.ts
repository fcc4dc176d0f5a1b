/**
 * The shared driver conformance suite for `vm.qemu` and `emu.qemu`, x86_64
 * guests under TCG on these machines, each on its own tap and address. (The
 * emu level's other architecture, aarch64, has its own cases in guests.test.ts
 * and clone.test.ts.)
 */
import { join } from 'node:path';
import type { LevelDriver } from '../../../src/levels/driver.js';
import { EmuDriver, VmDriver } from '../../../src/levels/vm/index.js';
import { tempDir } from '../../support/temp.js';
import { driverConformance } from '../conformance.js';
import { getWhen200, guestUrl, testNetwork, vmSpec } from './support.js';

/** The guest has booted: its default service (busybox httpd) answers. */
const ready = async (driver: LevelDriver, id: string): Promise<void> => void (await getWhen200(await guestUrl(driver, id), 90_000, 100));
// The VM user traverses the state dirs.
const root = tempDir('vm-conf', { mode: 0o711 });

driverConformance('vm.qemu', async () => new VmDriver({ stateDir: join(root, 'vm'), network: testNetwork(0) }), {
  spec: (id) => vmSpec(id, 'vm'),
  timeoutMs: 120_000,
  graceMs: 300,
  ready,
});

driverConformance('emu.qemu', async () => new EmuDriver({ stateDir: join(root, 'emu'), network: testNetwork(15) }), {
  spec: (id) => vmSpec(id, 'emu'),
  timeoutMs: 120_000,
  graceMs: 300,
  ready,
});
