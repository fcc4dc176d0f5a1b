/**
 * Clone with a fresh identity, at driver level, on real x86_64 (vm) and aarch64 (emu) guests: the
 * clone resumes the snapshot's memory (a counter goes on from the snapshot's
 * value) and disk (marked by the source's first boot), but with its own address,
 * MAC, hostname and RNG seed, and runs beside its source.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, test } from 'node:test';
import type { LevelDriver } from '../../../src/levels/driver.js';
import { EmuDriver, VmDriver, type QemuDriverOptions } from '../../../src/levels/vm/index.js';
import { getWhen200, guestUrl, imageMissing, testNetwork, vmSpec } from './support.js';
import { tempDir } from '../../support/temp.js';

/**
 * The first boot marks the disk with its hostname; a loop counts in memory and
 * writes who the guest is now (hostname, address, MAC) and the count to /www/id.
 */
const SERVICE = [
  '[ -f /data/origin ] || hostname > /data/origin',
  'cp /data/origin /www/origin',
  '(i=0; while true; do i=$((i+1)); (hostname; ip -4 -o addr show eth0 | awk \'{print $4}\'; cat /sys/class/net/eth0/address; echo $i) > /www/id.tmp; mv /www/id.tmp /www/id; sleep 0.3; done) & exec httpd -f -p 80 -h /www',
].join('; ');

let root: string | null = null;
const made: Array<[LevelDriver, string[]]> = [];

after(async () => {
  for (const [driver, ids] of made) {
    for (const id of ids) {
      await driver.stop(id, { graceMs: 0 }).catch(() => undefined);
      await driver.delete(id).catch(() => undefined);
    }
    await driver.cleanup();
  }
});

const cases = [
  { level: 'vm', arch: 'x86_64', slot: 6, make: (o: QemuDriverOptions) => new VmDriver(o) },
  { level: 'emu', arch: 'aarch64', slot: 7, make: (o: QemuDriverOptions) => new EmuDriver(o) },
] as const;

for (const c of cases) test(`${c.arch} under ${c.level}: a clone resumes the snapshot's memory and disk with a new address, MAC, hostname and RNG seed`, { timeout: 240_000 }, async (t) => {
  const missing = imageMissing(c.arch);
  if (missing) return t.skip(missing);
  root ??= tempDir('vm-clone', { mode: 0o711 });
  const d = c.make({ stateDir: join(root, c.level), network: testNetwork(c.slot) });
  made.push([d, ['clone-src', 'clone-copy']]);
  assert.ok(d.supports.has('clone'));
  assert.ok((await d.provision()).available);
  const driver = d;
  const get = async (id: string, path: string): Promise<string> => (await getWhen200(await guestUrl(d, id, path), 90_000, 100)).trim();

  await driver.create(vmSpec('clone-src', c.level, { arch: c.arch, command: SERVICE }, 128, { diskMiB: 64 }));
  await driver.start('clone-src');
  const who = async (id: string): Promise<{ host: string; ip: string; mac: string; count: number }> => {
    const lines = (await get(id, '/id')).split('\n');
    return { host: lines[0]!, ip: lines.length === 4 ? lines[1]! : '', mac: lines.at(-2)!, count: Number(lines.at(-1)) };
  };
  while ((await who('clone-src')).count < 5) await new Promise((r) => setTimeout(r, 300));
  await driver.snapshot('clone-src', 'snap');
  const atSnapshot = (await who('clone-src')).count;
  const src = await who('clone-src');
  assert.equal(src.host, 'clone-src');
  await assert.rejects(driver.clone(vmSpec('clone-other', c.level, { arch: c.arch, command: SERVICE }, 128, { diskMiB: 64, tenantId: 'someone-else' }), { instanceId: 'clone-src', snapshotId: 'snap' }), /not found/i);

  await driver.clone(vmSpec('clone-copy', c.level, { arch: c.arch, command: SERVICE }, 128, { diskMiB: 64 }), { instanceId: 'clone-src', snapshotId: 'snap' });
  assert.equal((await driver.inspect('clone-copy'))?.state, 'stopped');
  await driver.start('clone-copy');
  const first = await who('clone-copy');
  assert.ok(first.count >= atSnapshot - 1 && first.count < atSnapshot + 20, `it resumed the snapshot's memory: count ${first.count}, ${atSnapshot} at the snapshot (a boot starts at 1)`);
  // /www/id is rewritten every 0.3 s, also while the identity changes: take a page begun after start() returned.
  await new Promise((r) => setTimeout(r, 1_000));
  const settled = (await who('clone-copy')).count;
  let copy = first;
  while (!(copy.count > settled)) copy = await who('clone-copy');
  assert.equal(copy.host, 'clone-copy', `its own hostname: ${JSON.stringify({ first, copy, src })}`);
  assert.equal(copy.ip, `${String((await driver.inspect('clone-copy'))?.info?.address)}/24`, 'its own address, the one the driver reports');
  assert.notEqual(copy.ip, src.ip);
  assert.notEqual(copy.mac, src.mac, 'its own MAC');
  assert.equal(await get('clone-copy', '/origin'), 'clone-src', 'the disk is the snapshot\'s');
  assert.match(await readFile(String((await driver.inspect('clone-copy'))?.info?.console), 'utf8'), /STRATA-REIDENTIFIED/, 'the guest took the identity (and RNG seed) from fw_cfg');
  const srcAfter = await who('clone-src');
  assert.equal(srcAfter.host, 'clone-src', 'the source serves on beside its clone, unchanged');
  assert.equal(srcAfter.ip, src.ip);
});
