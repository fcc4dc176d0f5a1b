/**
 * Which accelerator the `vm` level uses. KVM only when a probe guest actually
 * reaches user space under it within a short timeout: on these machines
 * `/dev/kvm` exists but is a nested hypervisor under which a stock kernel never
 * boots (QEMU spins), so the presence of the device proves nothing. The probe
 * boots the real guest image with `strata.probe=1`; its /init prints
 * `STRATA-USERSPACE-READY` on the serial console and powers off. Otherwise TCG,
 * with the reason. The decision is cached in the driver's state dir, keyed by
 * the QEMU binary, the guest kernel and the host kernel, so a daemon restart
 * does not probe again.
 */
import { spawn } from 'node:child_process';
import { accessSync, constants, existsSync, statSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { QEMU_BINARY, bootArgs, consoleArgs, kernelCommandLine, machineArgs, type Accelerator } from './cmdline.js';
import type { GuestImage } from './images.js';

export const READY_MARKER = 'STRATA-USERSPACE-READY';
export const DEFAULT_PROBE_TIMEOUT_MS = 3_000;

export interface AccelDecision {
  accelerator: Accelerator;
  reason: string;
  /** What the decision depends on; a different key means probe again. */
  key: string;
  probedAt: string;
}

export interface ProbeOptions {
  image: GuestImage;
  /** Where the decision is cached (`<stateDir>/accel.json`). */
  stateDir: string;
  timeoutMs?: number;
  kvmDevice?: string;
}

/** The cached decision if its key still matches, else a fresh probe (then cached). */
export async function chooseAccelerator(o: ProbeOptions): Promise<AccelDecision> {
  const key = cacheKey(o.image);
  const cacheFile = join(o.stateDir, 'accel.json');
  const cached = await readFile(cacheFile, 'utf8').then((t) => JSON.parse(t) as AccelDecision).catch(() => null);
  if (cached && cached.key === key) return cached;
  const decision = { ...(await probeKvm(o)), key, probedAt: new Date().toISOString() };
  await writeFile(cacheFile, `${JSON.stringify(decision, null, 2)}\n`);
  return decision;
}

function cacheKey(image: GuestImage): string {
  const binary = `/usr/bin/${QEMU_BINARY[image.arch]}`;
  const mtime = existsSync(binary) ? statSync(binary).mtimeMs : 0;
  return `${binary}@${mtime}|guest ${image.release}|host ${release()}`;
}

/** Boots the probe guest under KVM; KVM if the marker appears in time, TCG with the reason otherwise. */
export async function probeKvm(o: ProbeOptions): Promise<{ accelerator: Accelerator; reason: string }> {
  const device = o.kvmDevice ?? '/dev/kvm';
  const timeoutMs = o.timeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS;
  const seconds = `${Math.round(timeoutMs / 100) / 10} s`;
  try {
    accessSync(device, constants.R_OK | constants.W_OK);
  } catch {
    return { accelerator: 'tcg', reason: `TCG: ${device} is not there or not usable` };
  }
  const dir = await mkdtemp(join(tmpdir(), 'strata-kvm-probe-'));
  const serial = join(dir, 'serial.log');
  const append = kernelCommandLine({ arch: o.image.arch, accelerator: 'kvm', tscKhz: null, port: 80, command: null, hostname: 'probe', probe: true, network: null });
  const args = [...machineArgs(o.image.arch), '-accel', 'kvm', '-cpu', 'host', '-m', '128M', ...consoleArgs(serial),
    ...bootArgs(o.image.kernel, o.image.initrd, append), '-nic', 'none', '-no-reboot'];
  const child = spawn(QEMU_BINARY[o.image.arch], args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
  let exited = false;
  const exit = new Promise<void>((resolve) => {
    const done = (): void => { exited = true; resolve(); };
    child.once('close', done);
    child.once('error', (e) => { stderr += e.message; done(); });
  });
  const started = Date.now();
  try {
    while (Date.now() - started < timeoutMs) {
      const output = await readFile(serial, 'utf8').catch(() => '');
      if (output.includes(READY_MARKER)) {
        return { accelerator: 'kvm', reason: `KVM: probe guest reached user space in ${Date.now() - started} ms` };
      }
      if (exited) {
        const why = stderr.trim().split('\n').pop() || 'QEMU exited';
        return { accelerator: 'tcg', reason: `TCG: KVM probe failed: ${why}` };
      }
      await sleep(50);
    }
    return { accelerator: 'tcg', reason: `TCG: KVM probe did not reach user space in ${seconds}` };
  } finally {
    if (!exited) child.kill('SIGKILL');
    await exit;
    await rm(dir, { recursive: true, force: true });
  }
}
