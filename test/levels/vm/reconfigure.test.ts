/**
 * Reconfiguring a running x86_64 VM (vm level, TCG here): there is no memory
 * balloon, so every field waits for the next start — QEMU keeps the memory it
 * was launched with, a snapshot taken meanwhile is of that machine, and the
 * gateway keeps reaching the guest port that serves; the next start launches
 * with the new memory and port. The disk size and the architecture cannot change.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { isStrataError } from '../../../src/core/errors.js';
import { VmDriver } from '../../../src/levels/vm/index.js';
import { tempDir } from '../../support/temp.js';
import { imageMissing, testNetwork, vmSpec } from './support.js';

let driver: VmDriver | null = null;
after(async () => {
  if (!driver) return;
  await driver.stop('re-vm', { graceMs: 0 }).catch(() => undefined);
  await driver.delete('re-vm').catch(() => undefined);
  await driver.cleanup();
});

/** The `-m` QEMU runs with now, in MiB. */
async function qemuMemory(d: VmDriver): Promise<number> {
  const pid = (await d.inspect('re-vm'))?.info?.pid;
  const argv = (await readFile(`/proc/${String(pid)}/cmdline`, 'utf8')).split('\0');
  return Number(/^(\d+)M$/.exec(argv[argv.indexOf('-m') + 1] ?? '')?.[1]);
}

test('a running VM takes new memory and port at its next start; meanwhile it runs, snapshots and is reached as launched', { timeout: 180_000 }, async (t) => {
  const missing = imageMissing('x86_64');
  if (missing) return t.skip(missing);
  const root = tempDir('vm-reconfigure', { mode: 0o711 });
  const stateDir = join(root, 'vm');
  const d = new VmDriver({ stateDir, network: testNetwork(14) });
  if (!(await d.provision()).available) return t.skip('vm level unavailable');
  driver = d;
  const spec = vmSpec('re-vm', 'vm', {}, 128);
  await d.create(spec);
  await d.start('re-vm');
  assert.equal(await qemuMemory(d), 128);
  const port = (await d.inspect('re-vm'))?.info?.guestPort;

  const next = { ...spec, limits: { ...spec.limits, memoryMiB: 192 }, config: { port: 8080 } };
  assert.deepEqual(await d.reconfigure(next, ['limits.memoryMiB', 'config.port']), { 'limits.memoryMiB': 'next-restart', 'config.port': 'next-restart' });
  assert.equal(await qemuMemory(d), 128, 'no balloon: the running machine keeps its memory');
  assert.equal((await d.inspect('re-vm'))?.info?.guestPort, port, 'the gateway keeps reaching the port that serves');
  await d.snapshot('re-vm', 'during');
  const manifest = JSON.parse(await readFile(join(stateDir, 'instances', 're-vm', 'snapshots', 'during', 'manifest.json'), 'utf8'));
  assert.deepEqual(manifest.machine, { vcpus: 1, memoryMiB: 128 }, 'the snapshot is of the machine that runs');

  await d.stop('re-vm', { graceMs: 0 });
  await assert.rejects(d.restore('re-vm', 'during'), (e: unknown) => isStrataError(e) && e.code === 'STRATA_ERR_CONFLICT', 'its memory does not fit the next start');
  await d.start('re-vm');
  assert.equal(await qemuMemory(d), 192, 'the next start has it');
  assert.equal((await d.inspect('re-vm'))?.info?.guestPort, 8080);

  for (const [changed, field] of [[{ ...next, limits: { ...next.limits, diskMiB: 64 } }, 'limits.diskMiB'], [{ ...next, config: { port: 8080, arch: 'aarch64' } }, 'config']] as const) {
    await assert.rejects(d.reconfigure(changed, [field]), (e: unknown) => isStrataError(e) && e.code === 'STRATA_ERR_VALIDATION', field);
  }
});
