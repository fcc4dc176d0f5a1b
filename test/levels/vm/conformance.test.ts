/**
 * The shared driver conformance suite for `vm.qemu`: x86_64 initramfs guests,
 * under TCG on these machines. Short grace (the busybox guest has no ACPI
 * daemon, so stop falls through to `quit` after the grace period).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { VmDriver } from '../../../src/levels/vm/index.js';
import { driverConformance } from '../conformance.js';
import { vmSpec } from './support.js';

const stateDir = await mkdtemp(join(tmpdir(), 'strata-vm-conf-'));
after(() => rm(stateDir, { recursive: true, force: true }));

driverConformance('vm.qemu', async () => new VmDriver({ stateDir }), {
  spec: (id) => vmSpec(id, 'vm'),
  timeoutMs: 120_000,
  graceMs: 300,
});
