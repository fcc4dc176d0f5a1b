/**
 * Hot recovery of a VM end to end, with a real daemon, the vm driver (QEMU,
 * TCG here), the gateway and the guard's kernel-text introspection: once the
 * guest's kernel text is baselined the guard takes a known-good memory+disk
 * snapshot; a patch to the kernel text from outside (gdb through QEMU's gdb
 * stub, as a rootkit's write looks from the host) raises "Kernel text changed",
 * which this tenant's policy answers with `recover`. The site keeps answering
 * throughout and then answers from a clone of the known-good snapshot — its
 * in-memory counter resumes from the snapshot's value, below what the
 * compromised guest had reached and above what a fresh boot would show — while
 * the compromised VM is paused and kept, and the audit log holds the alert and
 * the recovery with its evidence.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { chmod, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { kernelTextRegion } from '../../src/levels/vm/guard/qmp.js';
import { DEFAULT_IMAGE_ROOT } from '../../src/levels/vm/images.js';
import { VmDriver } from '../../src/levels/vm/index.js';
import { liveQmpClient, liveQmpSockets } from '../../src/levels/vm/qmp.js';
import { TestDaemon } from '../support/harness.js';
import { viaGateway } from '../support/net.js';
import { COUNTER_COMMAND, imageMissing, testNetwork } from '../levels/vm/support.js';
import { until } from '../support/until.js';
import { tempDir } from '../support/temp.js';

/** How long this file's checks wait, and how often they look. */
const WAIT = { every: 100 };

const run = promisify(execFile);
const KERNEL_VIRT_BASE = 0xffffffff81000000n; // where x86_64 links .text; direct PVH boot does not randomise it
const TEXT_FILE_OFFSET = 0x200000; // where .text starts in this vmlinux
const HOST = 'web.acme.test';
const reason = { 'x-strata-reason': 'guard vm recovery test' };
const network = testNetwork(13);
let root = '';
let d: TestDaemon | undefined;
let gatewayPort = 0;
/** The visitor's loop through the recovery; stopped by the test, or by `after` when it failed first. */
let polling = false;

const visit = (path: string, timeoutMs = 5000) => viaGateway(gatewayPort, HOST, path, { timeoutMs });

async function counter(): Promise<number> {
  const r = await visit('/counter');
  return r.status === 200 ? Number(r.body.trim()) : NaN;
}

/** Writes 8 nops at guest virtual `addr` with gdb through QEMU's gdb stub on `port`, then detaches (the guest runs on). */
async function gdbPatch(port: number, addr: bigint): Promise<void> {
  await run('gdb', ['-batch', '-nx', '-ex', 'set architecture i386:x86-64', '-ex', `target remote 127.0.0.1:${port}`,
    '-ex', `set {unsigned long long}0x${addr.toString(16)} = 0x9090909090909090`, '-ex', 'detach'], { timeout: 60_000 });
}

after(async () => {
  polling = false;
  if (d) {
    for (const i of (await d.request('GET', '/v1/tenants/acme/instances', { headers: reason })).body.items ?? []) {
      await d.request('DELETE', `/v1/tenants/acme/instances/${i.name}?wait=60`, { headers: reason });
    }
    await d.close();
  }
  if (root) {
    // Nothing of the test's survives it: no QEMU, no bridge or tap of its network.
    const qemus = readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
      try { return readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(root); } catch { return false; }
    });
    const links = (await run('ip', ['-o', 'link', 'show'])).stdout.split('\n').filter((l) => new RegExp(`^\\d+: ${network.tag}[bt]`).test(l));
    assert.deepEqual({ qemus, links }, { qemus: [], links: [] });
  }
});

test('a VM whose kernel text was patched is replaced by a clone of its known-good snapshot, without downtime', { timeout: 600_000 }, async (t) => {
  const missing = imageMissing('x86_64');
  if (missing) return t.skip(missing);
  const kernel = join(DEFAULT_IMAGE_ROOT, 'x86_64', 'vmlinux');
  const region = await kernelTextRegion(kernel).catch(() => null);
  if (!region) return t.skip('the x86_64 guest kernel is not an ELF vmlinux');

  root = tempDir('guard-recover-vm');
  await chmod(root, 0o711); // the VM user traverses it
  d = await TestDaemon.start({
    drivers: [new VmDriver({ stateDir: join(root, 'vm'), network })],
    gateway: { listeners: [{ id: 'http', address: '127.0.0.1', port: 0, protocol: 'http' }] },
  });
  gatewayPort = d.daemon.services.gateway!.addresses()[0]!.port;
  const tenant = await d.request('POST', '/v1/tenants', { body: { name: 'acme', quota: { instances: 2, vcpus: 2, memoryMiB: 512, diskMiB: 512 } } });
  assert.equal(tenant.status, 201, JSON.stringify(tenant.body));
  // This tenant's policy: a changed kernel is recovered, not only frozen.
  d.daemon.services.guard.setOverride({ tenant: tenant.body.id, rule: 'Kernel text changed', action: 'recover' });

  const launched = await d.request('POST', '/v1/tenants/acme/instances?wait=240', {
    body: { name: 'web', level: 'vm', limits: { vcpus: 1, memoryMiB: 128, diskMiB: 64 }, config: { command: COUNTER_COMMAND } }, headers: reason,
  });
  assert.equal(launched.status, 200, JSON.stringify(launched.body));
  const id = launched.body.instance.id as string;
  assert.equal((await d.request('POST', '/v1/tenants/acme/sites', { body: { hostname: HOST, target: { kind: 'instance', instance: 'web', port: 80 } }, headers: reason })).status, 201);
  // Far enough from a fresh boot's counter that the replacement cannot be mistaken for one.
  const c0 = await until(async () => { const c = await counter(); return c >= 10 && c; }, { ...WAIT, ms: 180_000, what: 'the site and its counter' });

  // The kernel-text baseline now (the daemon's own timer waits 30 s for the boot), and the known-good snapshot with it.
  const baselineStart = Date.now();
  await d.daemon.integrity.watch.checkKernel(id);
  const baselineMs = Date.now() - baselineStart;
  const goodId = d.daemon.integrity.target.knownGood.get(id);
  assert.ok(goodId, 'a known-good snapshot was taken once the kernel text was baselined');
  const good = d.daemon.services.store.getSnapshotById(goodId);
  assert.ok(good && good.status === 'ready', 'the known-good snapshot is ready');
  assert.ok(good.name.startsWith('guard-good-') && good.system, 'it is the guard\'s, not the tenant\'s');
  t.diagnostic(`kernel-text baseline + known-good snapshot: ${baselineMs} ms, snapshot ${(good.sizeBytes / 2 ** 20).toFixed(1)} MiB (128 MiB guest, 64 MiB disk)`);
  const c1 = await counter();
  // The compromised guest runs on well past the snapshot's counter.
  const ct = await until(async () => { const c = await counter(); return c >= c1 + 20 && c; }, { ...WAIT, ms: 120_000, what: 'the counter to move on' });

  const seen: Array<{ status: number; counter: number; at: number; ms: number }> = [];
  polling = true;
  const start = Date.now();
  const poller = (async () => {
    while (polling) {
      const at = Date.now();
      const r = await visit('/counter');
      seen.push({ status: r.status, counter: r.status === 200 ? Number(r.body.trim()) : NaN, at: at - start, ms: Date.now() - at });
      await sleep(50);
    }
  })();

  // The rootkit's patch: 8 bytes of inter-function padding (int3) near the middle of .text, never executed, made nops.
  const text = await readFile(kernel).then((b) => b.subarray(TEXT_FILE_OFFSET, TEXT_FILE_OFFSET + region.size));
  let at = text.indexOf(Buffer.alloc(16, 0xcc), Math.floor(region.size / 2));
  if (at < 0) at = text.indexOf(Buffer.alloc(16, 0xcc));
  assert.ok(at > 0, 'some int3 padding to patch');
  const socket = liveQmpSockets().find((p) => p.endsWith(`/${id}/run/qmp.sock`));
  const qmp = socket ? liveQmpClient(socket) : undefined;
  assert.ok(qmp, 'the VM has a live monitor');
  const port = 20_000 + (process.pid % 20_000);
  await qmp.execute('human-monitor-command', { 'command-line': `gdbserver tcp:127.0.0.1:${port}` });
  await gdbPatch(port, KERNEL_VIRT_BASE + BigInt(at + 4));
  await qmp.execute('human-monitor-command', { 'command-line': 'gdbserver none' }).catch(() => undefined);
  await d.daemon.integrity.watch.checkKernel(id); // the periodic check, now

  // The compromised guest keeps raising alerts while it is replaced; an escalation to freeze waits for the recovery instead of opening a gap.
  await until(() => d!.daemon.services.guard.alerts({}).some((a) => a.rule === 'Kernel text changed'), { ...WAIT, ms: 60_000, what: 'the alert' });
  const escalated = d.daemon.integrity.target.freeze(id);
  escalated.catch(() => undefined); // awaited below; a test that fails first leaves no unhandled rejection
  const store = d.daemon.services.store;
  await until(() => (store.getSite(HOST)?.target as { instance?: string } | undefined)?.instance === 'web-r1', { ...WAIT, ms: 180_000, what: 'the site moved to the replacement' });
  await until(() => seen.length > 0 && seen.at(-1)!.counter < ct, { ...WAIT, ms: 30_000, what: 'an answer from the replacement' });
  await sleep(2000); // and it goes on answering
  polling = false;
  await poller;
  await d.daemon.services.guard.drained();

  const failed = seen.flatMap((s, i) => (s.status !== 200 ? [i] : []));
  const alerts = d.daemon.services.guard.alerts({}).map((a) => `${Date.parse(a.time) - start} ${a.rule} ${a.action} ${a.instanceId}`);
  assert.deepEqual(failed, [], `every request through the recovery was answered (${seen.length} requests): ${JSON.stringify(seen)}; alerts: ${alerts.join('; ')}`);
  // The old guest's counter climbs past ct; the first answer below it is the replacement's, resumed from the snapshot.
  const switched = seen.findIndex((s) => s.counter < ct);
  assert.ok(switched > 0, 'the old guest answered until the swap');
  const resumed = seen[switched]!.counter;
  t.diagnostic(`alerts: ${alerts.join('; ')}`);
  t.diagnostic(`tamper → replacement answering: ${seen[switched]!.at} ms (${seen.length} requests, slowest ${Math.max(...seen.map((s) => s.ms))} ms)`);
  assert.ok(resumed >= c0 && resumed < ct, `the replacement's counter (${resumed}) resumes from the snapshot's (between ${c0} and ${c1}), not a fresh boot's and not the old guest's (${ct}+)`);
  assert.ok(seen.slice(switched).every((s, i, a) => i === 0 || s.counter >= a[i - 1]!.counter), 'only the replacement answers after the swap');

  const alert = d.daemon.services.guard.alerts({}).find((a) => a.rule === 'Kernel text changed' && a.instanceId === id);
  assert.ok(alert, 'the alert fired');
  assert.equal(alert.action, 'recover');
  assert.equal(alert.fields['kernel.text_matches'], false);
  assert.equal(alert.fields['kernel.first_changed_offset'], `0x${(Math.floor((at + 4) / 4096) * 4096).toString(16)}`);

  const web = (await d.request('GET', '/v1/tenants/acme/instances/web', { headers: reason })).body;
  const r1 = (await d.request('GET', '/v1/tenants/acme/instances/web-r1', { headers: reason })).body;
  assert.equal(web.state, 'paused', 'the compromised VM is frozen and kept for forensics');
  assert.deepEqual(await escalated, { frozenBy: 'recovery' }, 'the freeze meanwhile was left to the recovery');
  assert.deepEqual(await d.daemon.integrity.target.resume(id), { kept: 'frozen after hot recovery' }, 'undoing a freeze does not wake a replaced instance');
  assert.equal((await qmp.execute<{ running: boolean }>('query-status')).running, false, 'its guest is stopped (QMP)');
  assert.equal(r1.state, 'running');

  const entries = (await d.request('GET', '/v1/audit/entries?limit=1000')).body.items.map((x: any) => x.entry);
  const recovery = entries.find((e: any) => e.action === 'guard.recover' && e.target === id && !e.details.already);
  assert.equal(recovery?.result, 'ok', JSON.stringify(recovery?.details));
  assert.equal(recovery.details.alertAuditIndex, alert.auditIndex, 'the recovery names its evidence');
  assert.equal(recovery.details.replacement, 'acme/web-r1');
  assert.equal(recovery.details.knownGoodSnapshotId, goodId);
  assert.equal(recovery.details.frozen, 'acme/web');
  assert.deepEqual(recovery.details.sites, [HOST]);
  const alertEntry = entries.find((e: any) => e.action === 'guard.alert' && e.details?.rule === 'Kernel text changed');
  assert.equal(alertEntry?.details.evidence['kernel.text_matches'], false, 'the alert is in the audit log, with its evidence');
  const clone = entries.find((e: any) => e.action === 'instance.clone' && e.target === 'acme/web-r1');
  assert.equal(clone?.details.from, `acme/web@${good.name}`, 'the replacement is a clone of the known-good snapshot');
  assert.ok(entries.some((e: any) => e.action === 'site.update' && e.target === `acme/${HOST}` && e.details.to === 'web-r1'));

  // The replacement is introspected in turn and gets a known-good snapshot of its own.
  await until(() => d!.daemon.integrity.target.knownGood.has(r1.id), { ...WAIT, ms: 120_000, what: "the replacement's known-good snapshot" });
});
