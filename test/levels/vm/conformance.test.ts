/**
 * The shared driver conformance suite for `vm.qemu`: x86_64 initramfs guests,
 * under TCG on these machines, each on its own tap and address.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { VmDriver } from '../../../src/levels/vm/index.js';
import { driverConformance } from '../conformance.js';
import { testNetwork, vmSpec } from './support.js';

const stateDir = await mkdtemp(join(tmpdir(), 'strata-vm-conf-'));
after(() => rm(stateDir, { recursive: true, force: true }));

driverConformance('vm.qemu', async () => new VmDriver({ stateDir, network: testNetwork(0) }), {
  spec: (id) => vmSpec(id, 'vm'),
  timeoutMs: 120_000,
  graceMs: 300,
});
