/**
 * `npm run bench -- vm-restore [--json] [--runs=N] [--memory=MiB]`: restore a
 * running x86_64 guest from its snapshot (QEMU `-incoming` from the saved
 * migration stream, then `cont`) → first HTTP 200. The guest is booted and
 * snapshotted once; each run restores the stopped instance and starts it.
 * Goal ≤ 300 ms under TCG. Anchor: Firecracker snapshot restore on KVM (~30 ms).
 */
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VmDriver } from '../src/levels/vm/index.js';
import { getWhen200, guestUrl, imageMissing, testNetwork, vmSpec } from '../test/levels/vm/support.js';
import { intOption, percentile, timed, type Bench } from './harness.js';

const bench: Bench = async (opts) => {
  const runs = intOption(opts, 'runs', 3);
  const memoryMiB = intOption(opts, 'memory', 128);
  const missing = imageMissing('x86_64');
  if (missing) throw new Error(`vm-restore: ${missing}`);
  const root = await mkdtemp(join(tmpdir(), 'strata-bench-vm-restore-'));
  await chmod(root, 0o711);
  const driver = new VmDriver({ stateDir: join(root, 'vm'), network: testNetwork(4) });
  const id = 'bench-restore';
  try {
    const reason = (await driver.provision()).reason;
    await driver.create(vmSpec(id, 'vm', {}, memoryMiB));
    await driver.start(id);
    const url = (): Promise<string> => guestUrl(driver, id);
    await getWhen200(await url(), 120_000);
    const accelerator = String((await driver.inspect(id))?.info?.accelerator);
    const snap = await driver.snapshot(id, 'bench');
    await driver.stop(id, { graceMs: 0 });
    const ms: number[] = [];
    for (let i = 0; i < runs; i++) {
      await driver.restore(id, 'bench');
      const { ms: t } = await timed(async () => {
        await driver.start(id);
        await getWhen200(await url(), 30_000, 5);
      });
      ms.push(t);
      await driver.stop(id, { graceMs: 0 });
    }
    ms.sort((a, b) => a - b);
    return {
      metric: `snapshot restore → first 200, x86_64 ${memoryMiB} MiB guest under ${accelerator}, median of ${runs}`,
      unit: 'ms',
      value: percentile(ms, 50),
      anchor: 'Firecracker snapshot restore on KVM (published, ~30 ms); goal here ≤ 300 ms under TCG',
      anchor_value: 30,
      summary: [`accelerator: ${reason}`, `snapshot: ${(snap.sizeBytes / 1048576).toFixed(1)} MiB`, `runs: ${ms.map((m) => m.toFixed(0)).join(', ')} ms`],
      extra: { accelerator, accelerator_reason: reason, goal_ms: 300, snapshot_bytes: snap.sizeBytes, memory_mib: memoryMiB, runs, p90_ms: percentile(ms, 90) },
    };
  } finally {
    await driver.stop(id, { graceMs: 0 }).catch(() => undefined);
    await driver.delete(id).catch(() => undefined);
    await driver.cleanup();
    await rm(root, { recursive: true, force: true });
  }
};

export default bench;
