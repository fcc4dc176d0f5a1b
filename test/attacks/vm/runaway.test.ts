/**
 * A guest that runs away with CPU and memory — a busy loop on its vCPU and a
 * tmpfs holding half its RAM (the Debian kernel and initramfs take ~60 MiB of
 * it; much more and the guest's OOM killer ends in a panic) — stays inside its
 * cgroup, measured on
 * the host: QEMU's CPU time over a window is at most its vCPU share (plus slack
 * for sampling), its resident memory and its cgroup's peak at most guest RAM +
 * QEMU's overhead allowance; the guest did really touch its RAM (so the bound is
 * not vacuous); and a neighbour VM keeps serving throughout.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { cgroupMode } from '../../../src/core/cgroups.js';
import { QEMU_OVERHEAD_MIB } from '../../../src/levels/vm/cgroup.js';
import { VmDriver } from '../../../src/levels/vm/index.js';
import { getWhen200, guestUrl, imageMissing, testNetwork, vmSpec } from '../../levels/vm/support.js';
import { tempDir } from '../../support/temp.js';

const MEMORY_MIB = 256;
const FILL_MIB = 128;
const HOG = `mkdir -p /fill; mount -t tmpfs -o size=${FILL_MIB + 4}M tmpfs /fill; `
  + `(dd if=/dev/zero of=/fill/x bs=1M count=${FILL_MIB} 2>/dev/null; echo filled > /www/filled) & `
  // The spinner takes every cycle the guest has to spare; niced, so the guest's own httpd still answers the test.
  + '(while :; do :; done) & renice -n 19 -p $! >/dev/null; exec httpd -f -p 80 -h /www';

let root: string | null = null;
let driver: VmDriver | null = null;
const ids = ['runaway-hog', 'runaway-neighbour'];

after(async () => {
  if (driver) {
    for (const id of ids) {
      await driver.stop(id, { graceMs: 0 }).catch(() => undefined);
      await driver.delete(id).catch(() => undefined);
    }
    await driver.cleanup();
  }
});

/** CPU seconds (user + system, all threads) the process has used. */
async function cpuSeconds(pid: number): Promise<number> {
  const fields = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ 100)
}

async function rssMiB(pid: number): Promise<number> {
  return Number(/^VmRSS:\s+(\d+) kB$/m.exec(await readFile(`/proc/${pid}/status`, 'utf8'))?.[1]) / 1024;
}

/** The cgroup's peak memory use, bytes (v1: max_usage_in_bytes; v2: memory.peak where the kernel has it). */
async function cgroupPeak(name: string): Promise<number | null> {
  const file = cgroupMode() === 'v2' ? `/sys/fs/cgroup/strata-vm/${name}/memory.peak` : `/sys/fs/cgroup/memory/strata-vm/${name}/memory.max_usage_in_bytes`;
  const text = await readFile(file, 'utf8').catch(() => null);
  return text === null ? null : Number(text.trim());
}

test('a vm that spins its vCPU and fills its RAM stays inside its cgroup; a neighbour keeps serving', { timeout: 300_000 }, async (t) => {
  const missing = imageMissing('x86_64');
  if (missing) return t.skip(missing);
  root = tempDir('vm-runaway', { mode: 0o711 });
  driver = new VmDriver({ stateDir: join(root, 'vm'), network: testNetwork(3) });
  assert.ok((await driver.provision()).available);
  const d = driver;

  await driver.create(vmSpec('runaway-neighbour', 'vm', {}, 128, { tenantId: 'calm' }));
  await driver.start('runaway-neighbour');
  const neighbour = await guestUrl(d, 'runaway-neighbour');
  await getWhen200(neighbour, 90_000, 100);

  await driver.create(vmSpec('runaway-hog', 'vm', { command: HOG }, MEMORY_MIB, { tenantId: 'greedy', vcpus: 1 }));
  await driver.start('runaway-hog');
  const pid = Number((await driver.inspect('runaway-hog'))?.info?.pid);
  assert.equal((await getWhen200(await guestUrl(d, 'runaway-hog', '/filled'), 120_000, 250)).trim(), 'filled');

  // A window of hogging, with the neighbour asked all along.
  let served = 0;
  const windowS = 6;
  const calmPid = Number((await driver.inspect('runaway-neighbour'))?.info?.pid);
  const cpu0 = await cpuSeconds(pid);
  const calm0 = await cpuSeconds(calmPid);
  const t0 = Date.now();
  while (Date.now() - t0 < windowS * 1000) {
    await getWhen200(neighbour, 30_000, 50);
    served++;
    await sleep(200);
  }
  const elapsedS = (Date.now() - t0) / 1000;
  const used = (await cpuSeconds(pid)) - cpu0;
  const calmUsed = (await cpuSeconds(calmPid)) - calm0;
  assert.ok(used <= 1 * elapsedS * 1.15 + 0.2, `QEMU used ${used.toFixed(2)} CPU s in ${elapsedS.toFixed(2)} s with 1 vCPU`);
  assert.ok(used > 3 * calmUsed, `the guest did spin (${used.toFixed(2)} CPU s, an idle VM ${calmUsed.toFixed(2)}): the bound is not vacuous`);
  assert.ok(served >= 5, `the neighbour answered throughout (${served} answers)`);

  const rss = await rssMiB(pid);
  assert.ok(rss >= FILL_MIB * 0.8, `the guest really touched its RAM (QEMU RSS ${rss.toFixed(0)} MiB)`);
  assert.ok(rss <= MEMORY_MIB + QEMU_OVERHEAD_MIB, `QEMU RSS ${rss.toFixed(0)} MiB ≤ guest RAM + overhead`);
  const peak = await cgroupPeak('vm-runaway-hog');
  if (peak !== null) assert.ok(peak <= (MEMORY_MIB + QEMU_OVERHEAD_MIB) * 1024 * 1024, `cgroup peak ${(peak / 1048576).toFixed(0)} MiB within its limit`);
  t.diagnostic(`hog: ${used.toFixed(2)} CPU s in ${elapsedS.toFixed(2)} s (idle neighbour ${calmUsed.toFixed(2)}); RSS ${rss.toFixed(0)} MiB; cgroup peak ${peak === null ? 'n/a' : (peak / 1048576).toFixed(0)} MiB; neighbour answered ${served}×`);
  assert.equal((await driver.inspect('runaway-hog'))?.state, 'running', 'the hog is contained, not killed');
  assert.equal((await driver.inspect('runaway-neighbour'))?.state, 'running');
});
