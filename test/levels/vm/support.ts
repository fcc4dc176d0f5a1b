/** Shared by the vm/emu tests and benchmarks: specs, a temp state dir, image presence, and polling HTTP until it answers. */
import { existsSync } from 'node:fs';
import { chmod } from 'node:fs/promises';
import { join } from 'node:path';
import type { InstanceSpec, LevelDriver } from '../../../src/levels/driver.js';
import { EmuDriver, VmDriver, type QemuDriverOptions } from '../../../src/levels/vm/driver.js';
import { findImage, DEFAULT_IMAGE_ROOT } from '../../../src/levels/vm/images.js';
import type { GuestArch } from '../../../src/levels/vm/cmdline.js';
import { tempDir } from '../../support/temp.js';
import { until } from '../../support/until.js';

/** A guest service that counts up in /www/counter (atomically replaced) next to busybox httpd on port 80. */
export const COUNTER_COMMAND =
  'i=0; while true; do i=$((i+1)); echo $i > /www/c.tmp; mv /www/c.tmp /www/counter; sleep 0.5; done & exec httpd -f -p 80 -h /www';

export function vmSpec(id: string, level: 'vm' | 'emu', config: Record<string, unknown> = {}, memoryMiB = 128, extra: { tenantId?: string; diskMiB?: number; vcpus?: number } = {}): InstanceSpec {
  return { id, tenantId: extra.tenantId ?? 'test', name: id, level, source: null, limits: { vcpus: extra.vcpus ?? 1, memoryMiB, diskMiB: extra.diskMiB ?? 0 }, config };
}

/**
 * Tenant networks of a test or benchmark driver: its own tag and /16, so it never
 * shares a bridge or address with a daemon or another test on the machine (test
 * files run one at a time, so only files that run together need apart slots). Slots:
 * 0 conformance, 1 guests, 2 attacks, 3 runaway, 4 benches (vm), 5 disks/clone/gateway,
 * 6 stop, 7 and 8 guests (emu), 8 kernel text and move (sender), 9 move (receiver),
 * console and benches (emu), 10 and 11 move between daemons, 12 and 13 the guard's
 * vm cases, 14 console log and restore, 15 emu conformance.
 */
export function testNetwork(slot: number, hostPorts: readonly number[] = []): NonNullable<QemuDriverOptions['network']> {
  return { tag: `v${'abcdefghijklmnop'[slot]!}`, subnet: `10.${180 + slot}.0.0/16`, hostPorts };
}

/**
 * Guest shell: what an attacker who is root in its VM does first — find its
 * gateway (the host's address on the tenant bridge, .1 of its /24) into `$gw`
 * and route everything through it.
 */
export const ROUTE_VIA_GATEWAY = "gw=$(ip route | awk '/dev eth0/ {print $1; exit}' | sed 's|0/24$|1|'); ip route add default via $gw";

/**
 * Guest shell: defines `probe HOST PORT`, which succeeds when an HTTP server there
 * answers 200 within 3 s (busybox nc; the static busybox's wget crashes in these guests).
 */
export const DEFINE_PROBE = "probe() { printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 $1 $2 | grep -q ' 200 '; }";

/** Where the instance's service answers: its own address and guest port (what the gateway routes to). */
export async function guestUrl(driver: LevelDriver, id: string, path = '/'): Promise<string> {
  const seen = await driver.inspect(id);
  if (typeof seen?.info?.address !== 'string') throw new Error(`${id} reports no address`);
  return `http://${seen.info.address}:${String(seen.info.guestPort)}${path}`;
}

/** null when the image for `arch` is built, else why the test must skip. */
export function imageMissing(arch: GuestArch): string | null {
  if (process.getuid?.() !== 0) return 'needs root';
  const image = findImage(DEFAULT_IMAGE_ROOT, arch);
  if ('missing' in image) return image.missing;
  return existsSync(join('/usr/bin', arch === 'x86_64' ? 'qemu-system-x86_64' : 'qemu-system-aarch64')) ? null : `QEMU for ${arch} is not installed`;
}

/** GETs `url` until it answers 200 (or `timeoutMs` passes); returns the body. */
export async function getWhen200(url: string, timeoutMs: number, pollMs = 20): Promise<string> {
  let last = 'no answer';
  const answer = await until(async () => {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1_000) });
      const body = await res.text();
      if (res.status === 200) return { body };
      last = `HTTP ${res.status}`;
    } catch (e) {
      last = (e as Error).message;
    }
    return undefined;
  }, { ms: timeoutMs, every: pollMs, what: () => `${url} (no 200; last: ${last})` });
  return answer.body;
}

/**
 * Runs `work` with a provisioned x86_64 `vm` driver and an `emu` driver (both
 * arches' images must be there) over a temporary state dir, and cleans both up
 * after. `vmReason`: why the vm driver runs on the accelerator it does.
 */
export async function withGuestDrivers<T>(label: string, work: (d: { vm: VmDriver; emu: EmuDriver; vmReason: string }) => Promise<T>): Promise<T> {
  for (const arch of ['x86_64', 'aarch64'] as const) {
    const missing = imageMissing(arch);
    if (missing) throw new Error(`${label}: ${missing}`);
  }
  const root = tempDir(`${label}`);
  await chmod(root, 0o711); // the VM user traverses it
  const vm = new VmDriver({ stateDir: join(root, 'vm'), network: testNetwork(4) });
  const emu = new EmuDriver({ stateDir: join(root, 'emu'), network: testNetwork(9) });
  try {
    const vmReason = (await vm.provision()).reason;
    await emu.provision();
    return await work({ vm, emu, vmReason });
  } finally {
    await vm.cleanup();
    await emu.cleanup();
  }
}
