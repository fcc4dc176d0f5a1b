/**
 * The instance disk (a qcow2 overlay over the shared base, mounted at /data) and
 * the power button, on a real x86_64 guest (and its stats from the host's side):
 *  - the filesystem is the instance's diskMiB, and a guest that writes more
 *    fills it: the overlay on the host stays within the limit;
 *  - stop presses the power button and the guest powers itself off cleanly
 *    (acpid → strata-poweroff: service stopped, /data unmounted) long before
 *    the grace period, and what it wrote is there at the next boot;
 *  - a snapshot of the running guest holds memory and disk at one point:
 *    after restore the on-disk counter and the in-memory loop continue from
 *    the snapshot, not from where the instance was stopped.
 */
import assert from 'node:assert/strict';
import { readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { VmDriver } from '../../../src/levels/vm/index.js';
import { cgroupLimitValues } from '../../../src/levels/vm/cgroup.js';
import { MACHINE_RAM_MIB } from '../../../src/levels/vm/cmdline.js';
import { getWhen200, guestUrl, imageMissing, testNetwork, vmSpec } from './support.js';
import { tempDir } from '../../support/temp.js';

const DISK_MIB = 64;
/** Each boot appends to /data/boots; a loop counts on in /data/n (from what the disk holds); a 200 MiB write fills the disk. */
const SERVICE = [
  'echo boot >> /data/boots; cp /data/boots /www/boots',
  '(dd if=/dev/zero of=/data/fill bs=1M count=200 2>/dev/null; df -m /data | tail -1 > /www/df; rm -f /data/fill; sync) ',
  '(i=$(cat /data/n 2>/dev/null || echo 0); while true; do i=$((i+1)); echo $i > /data/n.tmp; mv /data/n.tmp /data/n; cp /data/n /www/n; sleep 0.3; done) & exec httpd -f -p 80 -h /www',
].join('; ');

let root: string | null = null;
let driver: VmDriver | null = null;
const id = 'disk-1';

after(async () => {
  if (driver) {
    await driver.stop(id, { graceMs: 0 }).catch(() => undefined);
    await driver.delete(id).catch(() => undefined);
    await driver.cleanup();
  }
});

test('disk limit, clean power-button stop, persistence, and consistent snapshot / restore of memory + disk', { timeout: 300_000 }, async (t) => {
  const missing = imageMissing('x86_64');
  if (missing) return t.skip(missing);
  root = tempDir('vm-disk', { mode: 0o711 });
  const stateDir = join(root, 'vm');
  driver = new VmDriver({ stateDir, network: testNetwork(5) });
  assert.ok((await driver.provision()).available);
  await assert.rejects(driver.create(vmSpec('too-small', 'vm', {}, 128, { diskMiB: 8 })), /diskMiB/);
  await driver.create(vmSpec(id, 'vm', { command: SERVICE }, 128, { diskMiB: DISK_MIB }));
  const overlay = join(stateDir, 'instances', id, 'disk.qcow2');
  const d = driver;
  const get = async (path: string): Promise<string> => (await getWhen200(await guestUrl(d, id, path), 90_000, 100)).trim();
  const counter = async (): Promise<number> => Number(await get('/n'));

  await driver.start(id);
  assert.equal(await get('/boots'), 'boot');
  // df -m: "/dev/vda  SIZE  USED  AVAIL  USE%  /data" while the 200 MiB file filled it.
  const [, size, , avail] = (await get('/df')).split(/\s+/).map(Number);
  assert.ok(size! <= DISK_MIB && size! >= DISK_MIB * 0.75, `the filesystem is the instance's diskMiB (${size} MiB)`);
  assert.ok(avail! <= 1, `a 200 MiB write filled the ${DISK_MIB} MiB disk (${avail} MiB left)`);
  // Stats from the host's side: QEMU's cgroup, the tap the answers above went through, the overlay the guest wrote.
  const usage = await driver.stats(id);
  assert.ok(usage && usage.cpuSeconds! > 0 && usage.memoryBytes! > 0 && usage.pids! >= 1, JSON.stringify(usage));
  assert.equal(usage.memoryLimitBytes, cgroupLimitValues({ vcpus: 1, memoryMiB: 128, machineMiB: MACHINE_RAM_MIB.x86_64 }).memoryBytes);
  assert.ok(usage.netTxBytes! > 0 && usage.netRxBytes! > 0, `the guest's answers went through its tap: ${JSON.stringify(usage)}`);
  assert.ok(usage.diskBytes! > 0 && usage.diskBytes! <= (await stat(overlay)).blocks * 512 + 4 * 1024 * 1024, `disk ${usage.diskBytes}`);
  assert.ok((await stat(overlay)).size <= (DISK_MIB + 4) * 1024 * 1024, 'the overlay on the host stays within the limit');

  while ((await counter()) < 3) await new Promise((r) => setTimeout(r, 200));
  await driver.stop(id, { graceMs: 120_000 });
  const console1 = await readFile(join(stateDir, 'instances', id, 'console.log'), 'utf8');
  assert.match(console1, /STRATA-POWEROFF/, 'the guest heard the power button and powered itself off');

  await driver.start(id);
  assert.equal(await get('/boots'), 'boot\nboot', 'what the guest wrote is on its disk at the next boot');
  const atSnapshot = await counter();
  await driver.snapshot(id, 'snap-1');
  while ((await counter()) < atSnapshot + 20) await new Promise((r) => setTimeout(r, 300));
  const beforeStop = await counter();
  await driver.stop(id, { graceMs: 120_000 });

  await driver.restore(id, 'snap-1');
  await driver.start(id);
  const restored = await counter();
  assert.ok(restored >= atSnapshot && restored < beforeStop, `the counter continues from the snapshot (${atSnapshot}), not from the stop (${beforeStop}): ${restored}`);
  assert.equal(await get('/boots'), 'boot\nboot', 'restored, not booted: the disk is the snapshot\'s');
  await new Promise((r) => setTimeout(r, 1_000));
  assert.ok((await counter()) > restored, 'and counts on');
  await driver.stop(id, { graceMs: 120_000 });
});
