/**
 * `npm run bench -- vm-memory [--json] [--memory=MiB] [--settle=ms]`: memory a
 * VM costs beyond the guest RAM it has touched, for x86_64 (vm level) and
 * aarch64 (emu level), each booted to its first HTTP 200 and left to settle.
 * Measured on the host, per QEMU process:
 *   guest RAM touched  the resident part of QEMU's guest-RAM mapping (the one
 *                      anonymous mapping of exactly the guest's size, /proc/PID/smaps)
 *   overhead (PSS)     QEMU's proportional set size minus guest RAM touched
 *   overhead (RSS)     the same with RSS (shared libraries counted whole)
 *   overhead (cgroup)  the VM cgroup's charged memory minus guest RAM touched
 *                      (adds page cache it caused: kernel, initramfs, disk reads)
 * The value is the x86_64 PSS overhead. The accelerator is in the figure (TCG
 * here: its translation cache, capped at 64 MiB, is most of the overhead).
 * Anchor: Firecracker's published memory overhead of a microVM on KVM (< 5 MiB).
 */
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { LevelDriver } from '../src/levels/driver.js';
import { cgroupMode } from '../src/core/cgroups.js';
import { getWhen200, guestUrl, vmSpec, withGuestDrivers } from '../test/levels/vm/support.js';
import { intOption, type Bench } from './harness.js';

interface Footprint {
  accelerator: string;
  guestTouchedMiB: number;
  pssMiB: number;
  rssMiB: number;
  cgroupMiB: number | null;
}

const MiB = (kB: number): number => kB / 1024;

/** Rss of the mapping of exactly `sizeKb` (guest RAM), and the process's Pss and Rss, from smaps. */
export function parseSmaps(smaps: string, sizeKb: number): { guestRssKb: number; pssKb: number; rssKb: number } {
  let guestRssKb = 0;
  let pssKb = 0;
  let rssKb = 0;
  let size = -1;
  for (const line of smaps.split('\n')) {
    const m = /^(\w+):\s+(\d+) kB$/.exec(line);
    if (!m) continue;
    const [, key, value] = m as unknown as [string, string, string];
    if (key === 'Size') size = Number(value);
    else if (key === 'Rss') {
      rssKb += Number(value);
      if (size === sizeKb) guestRssKb = Math.max(guestRssKb, Number(value));
    } else if (key === 'Pss') pssKb += Number(value);
  }
  return { guestRssKb, pssKb, rssKb };
}

async function cgroupChargedBytes(name: string): Promise<number | null> {
  const file = cgroupMode() === 'v2' ? `/sys/fs/cgroup/strata-vm/${name}/memory.current` : `/sys/fs/cgroup/memory/strata-vm/${name}/memory.usage_in_bytes`;
  const text = await readFile(file, 'utf8').catch(() => null);
  return text === null ? null : Number(text.trim());
}

async function footprint(driver: LevelDriver, level: 'vm' | 'emu', arch: 'x86_64' | 'aarch64', memoryMiB: number, settleMs: number): Promise<Footprint> {
  const id = `bench-mem-${arch}`;
  await driver.create(vmSpec(id, level, { arch }, memoryMiB));
  try {
    await driver.start(id);
    await getWhen200(await guestUrl(driver, id), 120_000, 50);
    await sleep(settleMs);
    const seen = await driver.inspect(id);
    const pid = Number(seen?.info?.pid);
    const smaps = parseSmaps(await readFile(`/proc/${pid}/smaps`, 'utf8'), memoryMiB * 1024);
    const charged = await cgroupChargedBytes(`${level}-${id}`);
    return {
      accelerator: String(seen?.info?.accelerator),
      guestTouchedMiB: MiB(smaps.guestRssKb),
      pssMiB: MiB(smaps.pssKb),
      rssMiB: MiB(smaps.rssKb),
      cgroupMiB: charged === null ? null : charged / 1048576,
    };
  } finally {
    await driver.stop(id, { graceMs: 0 }).catch(() => undefined);
    await driver.delete(id);
  }
}

const bench: Bench = async (opts) => {
  const memoryMiB = intOption(opts, 'memory', 256);
  const settleMs = intOption(opts, 'settle', 2_000);
  return withGuestDrivers('bench-vm-memory', async ({ vm, emu, vmReason }) => {
    const x86 = await footprint(vm, 'vm', 'x86_64', memoryMiB, settleMs);
    const arm = await footprint(emu, 'emu', 'aarch64', memoryMiB, settleMs);
    const overhead = (f: Footprint) => ({
      pss: f.pssMiB - f.guestTouchedMiB,
      rss: f.rssMiB - f.guestTouchedMiB,
      cgroup: f.cgroupMiB === null ? null : f.cgroupMiB - f.guestTouchedMiB,
    });
    const ox = overhead(x86);
    const oa = overhead(arm);
    const line = (name: string, f: Footprint, o: ReturnType<typeof overhead>): string =>
      `${name} (${f.accelerator}, ${memoryMiB} MiB guest): guest RAM touched ${f.guestTouchedMiB.toFixed(1)} MiB; overhead PSS ${o.pss.toFixed(1)} MiB, `
      + `RSS ${o.rss.toFixed(1)} MiB, cgroup ${o.cgroup === null ? 'n/a' : `${o.cgroup.toFixed(1)} MiB`}`;
    return {
      metric: `QEMU memory beyond guest RAM touched (PSS), x86_64 under vm (${x86.accelerator})`,
      unit: 'MiB',
      value: Number(ox.pss.toFixed(1)),
      anchor: 'Firecracker microVM memory overhead on KVM (published, < 5 MiB)',
      anchor_value: 5,
      summary: [`vm accelerator: ${vmReason}`, line('x86_64 (vm)', x86, ox), line('aarch64 (emu)', arm, oa)],
      extra: {
        accelerator: x86.accelerator, accelerator_reason: vmReason, guest_memory_mib: memoryMiB,
        x86_64: { ...x86, overhead: ox }, aarch64: { ...arm, overhead: oa },
      },
    };
  });
};

export default bench;
