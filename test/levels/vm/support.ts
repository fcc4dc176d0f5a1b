/** Shared by the vm/emu tests and benchmarks: specs, a temp state dir, image presence, and polling HTTP until it answers. */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { InstanceSpec } from '../../../src/levels/driver.js';
import { findImage, DEFAULT_IMAGE_ROOT } from '../../../src/levels/vm/images.js';
import type { GuestArch } from '../../../src/levels/vm/cmdline.js';

/** A guest service that counts up in /www/counter (atomically replaced) next to busybox httpd on port 80. */
export const COUNTER_COMMAND =
  'i=0; while true; do i=$((i+1)); echo $i > /www/c.tmp; mv /www/c.tmp /www/counter; sleep 0.5; done & exec httpd -f -p 80 -h /www';

export function vmSpec(id: string, level: 'vm' | 'emu', config: Record<string, unknown> = {}, memoryMiB = 128): InstanceSpec {
  return { id, tenantId: 'test', name: id, level, source: null, limits: { vcpus: 1, memoryMiB, diskMiB: 0 }, config };
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
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer';
  for (;;) {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1_000) });
      const body = await res.text();
      if (res.status === 200) return body;
      last = `HTTP ${res.status}`;
    } catch (e) {
      last = (e as Error).message;
    }
    if (Date.now() > deadline) throw new Error(`${url}: no 200 within ${timeoutMs} ms (${last})`);
    await new Promise((r) => setTimeout(r, pollMs));
  }
}
