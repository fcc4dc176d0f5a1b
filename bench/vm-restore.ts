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
    // Where the time goes: start() (QEMU up, memory loaded, `cont`) and the guest's first answer after it.
    const startMs: number[] = [];
    const answerMs: number[] = [];
    for (let i = 0; i < runs; i++) {
      await driver.restore(id, 'bench');
      let started = 0;
      const { ms: t } = await timed(async () => {
        started = (await timed(() => driver.start(id))).ms;
        await getWhen200(await url(), 30_000, 5);
      });
      ms.push(t);
      startMs.push(started);
      answerMs.push(t - started);
      await driver.stop(id, { graceMs: 0 });
    }
    for (const a of [ms, startMs, answerMs]) a.sort((x, y) => x - y);
    return {
      metric: `snapshot restore → first 200, x86_64 ${memoryMiB} MiB guest under ${accelerator}, median of ${runs}`,
      unit: 'ms',
      value: percentile(ms, 50),
      anchor: 'Firecracker snapshot restore on KVM (published, ~30 ms); goal here ≤ 300 ms under TCG',
      anchor_value: 30,
      summary: [`accelerator: ${reason}`, `snapshot: ${(snap.sizeBytes / 1048576).toFixed(1)} MiB`, `runs: ${ms.map((m) => m.toFixed(0)).join(', ')} ms`,
        `start p50 ${percentile(startMs, 50).toFixed(0)} ms + first answer p50 ${percentile(answerMs, 50).toFixed(0)} ms`],
      extra: {
        accelerator, accelerator_reason: reason, goal_ms: 300, snapshot_bytes: snap.sizeBytes, memory_mib: memoryMiB, runs, p90_ms: percentile(ms, 90),
        start_p50_ms: percentile(startMs, 50), answer_p50_ms: percentile(answerMs, 50),
      },
    };
  } finally {
    await driver.stop(id, { graceMs: 0 }).catch(() => undefined);
    await driver.delete(id).catch(() => undefined);
    await driver.cleanup();
    await rm(root, { recursive: true, force: true });
  }
};

export default bench;
