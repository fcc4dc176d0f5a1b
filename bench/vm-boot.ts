/**
 * `npm run bench -- vm-boot [--json] [--runs=N]`: launch → first HTTP 200 from
 * the guest's busybox httpd, at the guest's own address on its tenant bridge. x86_64 under
 * the `vm` level (KVM if its probe boots, else TCG — the figure says which) and
 * aarch64 under `emu` (TCG). The value is the x86_64 median; aarch64 is in `extra`.
 * Anchor: Firecracker's published boot of a minimal guest on KVM (~125 ms).
 */
import type { LevelDriver } from '../src/levels/driver.js';
import { getWhen200, guestUrl, vmSpec, withGuestDrivers } from '../test/levels/vm/support.js';
import { intOption, percentile, timed, type Bench } from './harness.js';

async function bootTimes(driver: LevelDriver, level: 'vm' | 'emu', arch: 'x86_64' | 'aarch64', runs: number): Promise<{ ms: number[]; accelerator: string }> {
  const ms: number[] = [];
  let accelerator = 'unknown';
  for (let i = 0; i < runs; i++) {
    const id = `bench-boot-${arch}-${i}`;
    await driver.create(vmSpec(id, level, { arch }));
    try {
      const { ms: t } = await timed(async () => {
        await driver.start(id);
        const seen = await driver.inspect(id);
        accelerator = String(seen?.info?.accelerator);
        await getWhen200(await guestUrl(driver, id), 120_000, 10);
      });
      ms.push(t);
    } finally {
      await driver.stop(id, { graceMs: 0 }).catch(() => undefined);
      await driver.delete(id);
    }
  }
  return { ms: ms.sort((a, b) => a - b), accelerator };
}

const bench: Bench = async (opts) => {
  const runs = intOption(opts, 'runs', 1);
  return withGuestDrivers('bench-vm-boot', async ({ vm, emu, vmReason }) => {
    const x86 = await bootTimes(vm, 'vm', 'x86_64', runs);
    const arm = await bootTimes(emu, 'emu', 'aarch64', runs);
    const x86p50 = percentile(x86.ms, 50);
    const armp50 = percentile(arm.ms, 50);
    return {
      metric: `launch → first 200, x86_64 under vm (${x86.accelerator}), median of ${runs}`,
      unit: 'ms',
      value: x86p50,
      anchor: 'Firecracker minimal guest boot on KVM (published, ~125 ms)',
      anchor_value: 125,
      summary: [
        `vm accelerator: ${vmReason}`,
        `x86_64 (vm, ${x86.accelerator}): ${x86.ms.map((m) => m.toFixed(0)).join(', ')} ms`,
        `aarch64 (emu, ${arm.accelerator}): ${arm.ms.map((m) => m.toFixed(0)).join(', ')} ms`,
      ],
      extra: { accelerator: x86.accelerator, accelerator_reason: vmReason, aarch64_ms: armp50, aarch64_accelerator: arm.accelerator, runs },
    };
  });
};

export default bench;
