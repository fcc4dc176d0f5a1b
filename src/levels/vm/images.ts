/**
 * The guest images `scripts/setup.d/40-vm.sh` builds from Debian packages, one
 * directory per guest architecture under `/var/lib/strata/images/vm/<arch>/`:
 * `vmlinuz` (the Debian kernel as shipped), `vmlinux` (x86_64 only: the same
 * kernel uncompressed, booted through its PVH entry to skip decompression,
 * which costs seconds under TCG) and `initramfs.cpio.gz` (busybox + /init).
 * Shared read-only by every instance: nothing in them is per-tenant.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { GuestArch } from './cmdline.js';

export const DEFAULT_IMAGE_ROOT = '/var/lib/strata/images/vm';

export interface GuestImage {
  arch: GuestArch;
  kernel: string;
  initrd: string;
  /** Kernel release, e.g. "6.1.0-56-amd64". */
  release: string;
}

/** The image for `arch`, or the reason there is none. */
export function findImage(root: string, arch: GuestArch): GuestImage | { missing: string } {
  const dir = join(root, arch);
  const initrd = join(dir, 'initramfs.cpio.gz');
  const kernel = [join(dir, 'vmlinux'), join(dir, 'vmlinuz')].find((k) => existsSync(k));
  if (!kernel || !existsSync(initrd)) return { missing: `no ${arch} guest image in ${dir} (run scripts/setup.d/40-vm.sh)` };
  const release = existsSync(join(dir, 'kernel.release')) ? readFileSync(join(dir, 'kernel.release'), 'utf8').trim() : 'unknown';
  return { arch, kernel, initrd, release };
}

/** The architecture this host's QEMU can accelerate, or null if it is neither x86_64 nor aarch64. */
export function hostArch(): GuestArch | null {
  return process.arch === 'x64' ? 'x86_64' : process.arch === 'arm64' ? 'aarch64' : null;
}

/**
 * The host's TSC frequency in kHz when the CPU says it is constant and known
 * (`constant_tsc` + `tsc_known_freq`): under TCG the x86_64 guest reads the
 * host's TSC, and passing its frequency spares the guest a PIT calibration that
 * fails on a loaded host (the kernel then marks the TSC unstable and stalls).
 */
export function hostTscKhz(cpuinfo = readCpuinfo()): number | null {
  const flags = /^flags\s*:\s*(.*)$/m.exec(cpuinfo)?.[1]?.split(/\s+/) ?? [];
  if (!flags.includes('constant_tsc') || !flags.includes('tsc_known_freq')) return null;
  const mhz = Number(/^cpu MHz\s*:\s*([\d.]+)$/m.exec(cpuinfo)?.[1]);
  return Number.isFinite(mhz) && mhz > 0 ? Math.round(mhz * 1000) : null;
}

function readCpuinfo(): string {
  try {
    return readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    return '';
  }
}
