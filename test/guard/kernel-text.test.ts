/**
 * VM introspection on a real guest (x86_64, KVM or TCG): the kernel's text,
 * read from guest-physical memory with QMP pmemsave, matches its post-boot
 * baseline while the guest runs, also after the guest flips a static key itself
 * (an operator's sysctl rewrites dozens of jump-label sites: explained, not an
 * alert); after a write into the kernel's code through
 * QEMU's gdb stub (what a rootkit's patch looks like from outside) it no longer
 * does, the page is located, and the default "Kernel text changed" rule fires.
 * The gdb attach also shows up as QMP STOP/RESUME events through the QMP
 * interceptor.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Guard } from '../../src/guard/guard.js';
import type { GuardEvent } from '../../src/core/guard-event.js';
import { KernelTextWatch, QmpInterceptor, kernelTextRegion } from '../../src/levels/vm/guard/qmp.js';
import { loadDefaultRuleset } from '../../src/guard/rules.js';
import { vmLevel } from '../../src/levels/vm/module.js';
import type { Instance } from '../../src/store/types.js';
import { DEFAULT_IMAGE_ROOT } from '../../src/levels/vm/images.js';
import { VmDriver } from '../../src/levels/vm/index.js';
import { liveQmpClient, tapQmpEvents } from '../../src/levels/vm/qmp.js';
import { COUNTER_COMMAND, getWhen200, guestUrl, imageMissing, testNetwork, vmSpec } from '../levels/vm/support.js';
import { FakeTarget, MemoryAudit, recordingBus } from './fakes.js';
import { tempDir } from '../support/temp.js';

const KERNEL_VIRT_BASE = 0xffffffff81000000n; // where x86_64 links .text; direct PVH boot does not randomise it
/** The counter service, and a CGI that sets a sysctl backed by a static key (the kernel rewrites its jump-label sites). */
const FLIP_SYSCTL = String.raw`mkdir -p /www/cgi-bin; printf '#!/bin/sh
printf "Content-Type: text/plain\r\n\r\n"
echo 1 > /proc/sys/kernel/sched_schedstats
cat /proc/sys/kernel/sched_schedstats
' > /www/cgi-bin/flip; chmod 755 /www/cgi-bin/flip; `;
let cleanup: (() => Promise<void>) | undefined;
after(async () => { await cleanup?.(); });

/** A gdb remote-protocol packet: $data#checksum. */
const packet = (data: string): string => `$${data}#${(Buffer.from(data).reduce((a, b) => a + b, 0) & 0xff).toString(16).padStart(2, '0')}`;

/** Writes `bytes` at guest virtual `addr` through QEMU's gdb stub on `port`, then detaches (the guest runs on). */
async function gdbWrite(port: number, addr: bigint, bytes: Buffer): Promise<string> {
  const sock = connect(port, '127.0.0.1');
  let seen = '';
  sock.on('data', (d) => { seen += d.toString('latin1'); if (/\$[^#]*#..$/.test(seen)) sock.write('+'); });
  await new Promise<void>((resolve, reject) => { sock.once('connect', resolve); sock.once('error', reject); });
  const waitFor = async (re: RegExp): Promise<void> => {
    for (let i = 0; i < 500 && !re.test(seen); i++) await sleep(20);
    if (!re.test(seen)) throw new Error(`gdb stub: no ${re} in ${JSON.stringify(seen)}`);
  };
  sock.write(packet('?'));
  await waitFor(/\$[ST][0-9a-f]{2}/);
  seen = '';
  sock.write(packet(`M${addr.toString(16)},${bytes.length.toString(16)}:${bytes.toString('hex')}`));
  await waitFor(/\$(OK|E[0-9a-f]{2})#/);
  const answer = /\$(OK|E[0-9a-f]{2})#/.exec(seen)![1]!;
  seen = '';
  sock.write(packet('D'));
  await waitFor(/\$OK#/).catch(() => undefined);
  sock.destroy();
  return answer;
}

test('a patch to the guest kernel text is detected from outside the guest', { timeout: 300_000 }, async (t) => {
  const missing = imageMissing('x86_64');
  if (missing) return t.skip(missing);
  const kernel = join(DEFAULT_IMAGE_ROOT, 'x86_64', 'vmlinux');
  const region = await kernelTextRegion(kernel).catch(() => null);
  if (!region) return t.skip('the x86_64 guest kernel is not an ELF vmlinux');

  const root = tempDir('kernel-text', { mode: 0o711 });
  const driver = new VmDriver({ stateDir: join(root, 'vm'), network: testNetwork(8) });
  const id = 'guard-kt';
  const target = new FakeTarget();
  const guard = new Guard({ ruleset: await loadDefaultRuleset(), target, audit: new MemoryAudit(), events: recordingBus().bus });
  const socket = join(root, 'vm', 'instances', id, 'run', 'qmp.sock');
  await guard.addInterceptor(new QmpInterceptor(tapQmpEvents, (path) => (path === socket ? { tenantId: 'test', instanceId: id, level: 'vm' } : null)));
  await guard.start();
  const recorded: GuardEvent[] = [];
  const spy = new QmpInterceptor(tapQmpEvents, (path) => (path === socket ? { tenantId: 'test', instanceId: id, level: 'vm' } : null));
  await spy.start((e) => { recorded.push(e); });
  cleanup = async () => {
    await spy.stop();
    await guard.stop();
    await driver.stop(id, { graceMs: 0 }).catch(() => undefined);
    await driver.delete(id).catch(() => undefined);
    await driver.cleanup();
  };
  assert.ok((await driver.provision()).available);
  await driver.create(vmSpec(id, 'vm', { command: FLIP_SYSCTL + COUNTER_COMMAND }));
  await driver.start(id);
  await getWhen200(await guestUrl(driver, id, '/counter'), 120_000); // user space is up: the kernel has finished patching itself

  const qmp = liveQmpClient(socket);
  assert.ok(qmp, 'the driver holds a monitor connection the guard can use');
  const watch = new KernelTextWatch(qmp, region, join(root, 'vm', 'instances', id, 'run', 'kernel-text.dump'), join(root, 'vm', 'instances', id, 'kernel-text.baseline'));
  await watch.baseline();
  await sleep(1000);
  const benign = await watch.check();
  assert.equal(benign.matches, true, `an untouched kernel keeps its text (pages changed: ${benign.changedPages.join(', ')})`);

  // What an operator does inside the guest: a sysctl backed by a static key. The kernel patches its own text.
  assert.equal((await getWhen200(await guestUrl(driver, id, '/cgi-bin/flip'), 30_000)).trim(), '1');
  const flipped = await watch.check();
  assert.notEqual(flipped.hash, benign.hash, 'the kernel rewrote its own text');
  assert.ok(flipped.patchedSites > 0, 'the rewritten bytes are jump-label sites');
  assert.equal(flipped.matches, true, `a static key flipped by the guest is not a change (pages: ${flipped.changedPages.join(', ')})`);
  guard.ingest(KernelTextWatch.event({ tenantId: 'test', instanceId: id, level: 'vm' }, flipped));
  await guard.drained();
  assert.equal(target.alerts.filter((a) => a.rule === 'Kernel text changed').length, 0, 'no alert, no freeze');

  // The patch: 8 bytes of inter-function padding (int3) near the middle of .text, never executed, made nops.
  const text = await readFile(kernel).then((b) => b.subarray(0x200000, 0x200000 + region.size));
  let at = text.indexOf(Buffer.alloc(16, 0xcc), Math.floor(region.size / 2));
  if (at < 0) at = text.indexOf(Buffer.alloc(16, 0xcc));
  assert.ok(at > 0, 'some int3 padding to patch');
  at += 4;
  const port = 20_000 + (process.pid % 20_000);
  await qmp.execute('human-monitor-command', { 'command-line': `gdbserver tcp:127.0.0.1:${port}` });
  assert.equal(await gdbWrite(port, KERNEL_VIRT_BASE + BigInt(at), Buffer.alloc(8, 0x90)), 'OK');
  await qmp.execute('human-monitor-command', { 'command-line': 'gdbserver none' }).catch(() => undefined);

  const patched = await watch.check();
  assert.equal(patched.matches, false);
  assert.deepEqual(patched.changedPages, [Math.floor(at / 4096) * 4096], 'the changed page is located');
  guard.ingest(KernelTextWatch.event({ tenantId: 'test', instanceId: id, level: 'vm' }, patched));
  await guard.drained();
  const alert = target.alerts.find((a) => a.rule === 'Kernel text changed');
  assert.ok(alert, 'the default rule fired');
  assert.equal(alert.instanceId, id);
  assert.equal(alert.fields['kernel.text_hash'], patched.hash);
  assert.ok(target.calls.includes(`freeze ${id}`), 'and its action was taken');

  // The vm levers of the actuator on the same guest: network cut and back over QMP set_link, CPU through its cgroup.
  const levers = vmLevel.levers!(driver);
  const instance = { id, name: id, tenantId: 'test', level: 'vm', limits: { vcpus: 1, memoryMiB: 128, diskMiB: 0 } } as unknown as Instance;
  const url = await guestUrl(driver, id, '/counter');
  await levers.setNetwork(instance, false);
  await assert.rejects(fetch(url, { signal: AbortSignal.timeout(1500) }), 'a cut-off guest answers nothing');
  await levers.setNetwork(instance, true);
  await getWhen200(url, 10_000);
  await levers.setCpu(instance, 0.1);
  assert.equal(await levers.cpu(instance), 0.1);
  await levers.setCpu(instance, 1);
  assert.equal(await levers.cpu(instance), 1);

  const vmEvents = recorded.filter((e) => e.kind === 'vm.event' && e.instanceId === id).map((e) => e.fields['vm.event']);
  assert.ok(vmEvents.includes('STOP') && vmEvents.includes('RESUME'), `the gdb attach stopped and resumed the guest, seen as QMP events: ${vmEvents.join(', ')}`);
});
