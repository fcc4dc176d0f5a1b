/**
 * The guard against the vm attack suite, live: two real guests (TCG here), the
 * default ruleset, and the host-side VM interceptors — QMP events, the tenant
 * bridge firewall's refusal counters, QEMU's CPU and its cgroup's memory. An
 * actuator target that records what it is asked (so a freeze does not end the
 * suite).
 *
 * Precision first: a benign guest of tenant B (serving HTTP, a moderate CPU
 * loop, a little memory) and the attacker guest of tenant A at rest (serving,
 * and reaching the gateway's port, which it may) raise no alert at all.
 *
 * Effectiveness: each attack of test/attacks/vm/{containment,network,runaway}
 * that the host can see raises the alert named in the table, on the attacking
 * instance; `SILENT` says why the others raise none. The attacker takes its
 * orders through a CGI script of its own busybox httpd (the test plays the
 * tenant who is root in the guest); the spinning guest, throttled by the
 * guard's own lever, still shows busy; the last case panics its kernel.
 */
import assert from 'node:assert/strict';
import { chmod, readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { vmLevel } from '../../../src/levels/vm/module.js';
import type { Alert } from '../../../src/guard/actuator.js';
import type { GuardEvent } from '../../../src/core/guard-event.js';
import { Guard } from '../../../src/guard/guard.js';
import type { Interceptor } from '../../../src/core/interceptor.js';
import { QmpInterceptor } from '../../../src/levels/vm/guard/qmp.js';
import { VmNetworkInterceptor } from '../../../src/levels/vm/guard/network.js';
import { VmResourceInterceptor } from '../../../src/levels/vm/guard/resources.js';
import { cachedTargets, vmTargetOf, type VmTarget } from '../../../src/levels/vm/guard/targets.js';
import { loadDefaultRuleset } from '../../../src/guard/rules.js';
import { VmDriver } from '../../../src/levels/vm/index.js';
import type { Instance } from '../../../src/store/types.js';
import { tapQmpEvents } from '../../../src/levels/vm/qmp.js';
import { FakeTarget, MemoryAudit, recordingBus } from '../../guard/fakes.js';
import { DEFINE_PROBE, ROUTE_VIA_GATEWAY, getWhen200, guestUrl, imageMissing, testNetwork, vmSpec } from '../../levels/vm/support.js';
import { until } from '../../support/until.js';
import { tempDir } from '../../support/temp.js';

/** How long this file's checks wait, and how often they look. */
const WAIT = { ms: 30_000, every: 250 };

const EVIL = 'alerts-evil';
const CALM = 'alerts-calm';
const TENANT: Record<string, string> = { [EVIL]: 'tenant-a', [CALM]: 'tenant-b' };

/** The attacker's remote shell: a CGI script running the POSTed body with sh (CRLF: HTTP wants it). */
const CGI = Buffer.from('#!/bin/sh\nprintf "Content-Type: text/plain\\r\\n\\r\\n"\nhead -c "$CONTENT_LENGTH" > /tmp/cmd.$$\nsh /tmp/cmd.$$ 2>&1\nrm -f /tmp/cmd.$$\n').toString('base64');
/** Root in its VM: route everything through the gateway (kept in /gw), install the shell, serve. */
const EVIL_COMMAND = `${ROUTE_VIA_GATEWAY}; echo $gw > /gw; mkdir -p /www/cgi-bin; echo ok > /www/index.html; `
  + `echo ${CGI} | base64 -d > /www/cgi-bin/sh; chmod +x /www/cgi-bin/sh; exec httpd -f -p 80 -h /www`;
/** The benign guest: a web page, a moderate CPU loop with pauses, 16 MiB of data in memory, a counter. */
const CALM_COMMAND = 'echo calm > /www/index.html; mkdir -p /cache; mount -t tmpfs -o size=24M tmpfs /cache; '
  + 'dd if=/dev/zero of=/cache/data bs=1M count=16 2>/dev/null; '
  + '(n=0; while :; do i=0; while [ $i -lt 200 ]; do i=$((i+1)); done; n=$((n+1)); echo $n > /www/n.tmp; mv /www/n.tmp /www/n; sleep 1; done) & '
  + 'exec httpd -f -p 80 -h /www';

let root: string | null = null;
let driver: VmDriver | null = null;
let guard: Guard | null = null;
const servers: Server[] = [];
const target = new FakeTarget();
const recent: GuardEvent[] = [];
const seenKinds = new Map<string, number>();

async function listen(host: string): Promise<number> {
  const server = createServer((_req, res) => res.end('host service'));
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  return (server.address() as AddressInfo).port;
}

/** Runs `script` in the attacker guest as root; resolves with what it printed. */
async function inEvil(script: string, timeoutMs = 30_000): Promise<string> {
  const url = await guestUrl(driver!, EVIL, '/cgi-bin/sh');
  const res = await fetch(url, { method: 'POST', body: `gw=$(cat /gw); ${DEFINE_PROBE}; ${script}`, signal: AbortSignal.timeout(timeoutMs) });
  assert.equal(res.status, 200, `the guest shell answered ${res.status}`);
  return res.text();
}

const mark = (): number => guard!.stats().alerts;
function alertsSince(m: number): Alert[] {
  const all = guard!.alerts();
  return all.slice(Math.max(0, all.length - (guard!.stats().alerts - m)));
}

async function waitFor(rule: string, instanceId: string, m: number, timeoutMs = 15_000): Promise<Alert> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    await guard!.drained();
    const hit = alertsSince(m).find((a) => a.rule === rule && a.instanceId === instanceId);
    if (hit) return hit;
    if (Date.now() > deadline) {
      const got = alertsSince(m).map((a) => `${a.rule} @${a.instanceId}`);
      const last = recent.filter((e) => e.instanceId === instanceId).slice(-8).map((e) => `${e.kind} ${JSON.stringify(e.fields)}`);
      assert.fail(`no '${rule}' alert on ${instanceId}; raised: ${JSON.stringify(got)}; last events:\n${last.join('\n')}`);
    }
    await sleep(250);
  }
}

/** Passes every event on, keeping the last ones (so a missing alert can say what the guard did see) and counting kinds. */
function recording(inner: Interceptor): Interceptor {
  return {
    id: inner.id,
    start: (emit) => inner.start((e) => {
      recent.push(e);
      if (recent.length > 2000) recent.shift();
      seenKinds.set(`${e.kind}@${e.instanceId}`, (seenKinds.get(`${e.kind}@${e.instanceId}`) ?? 0) + 1);
      emit(e);
    }),
    stop: () => inner.stop(),
  };
}

interface Case {
  /** The attack as the vm suite names it (a target key of network.test.ts, or words of a test title). */
  attack: string;
  rule: string;
  run(ctx: { calm: string; otherGateway: string; loopbackPort: number; secretPort: number }): Promise<unknown>;
  timeoutMs?: number;
}

const CASES: Case[] = [
  // ---- test/attacks/vm/containment.test.ts ----
  { attack: 'a vm guest reaches no host service', rule: 'VM probed a host service', run: (c) => inEvil(`probe $gw ${c.loopbackPort}; true`) },
  // ---- test/attacks/vm/network.test.ts ----
  { attack: 'host-service-via-own-gateway', rule: 'VM probed a host service', run: (c) => inEvil(`probe $gw ${c.secretPort}; true`) },
  { attack: 'host-service-via-other-bridge', rule: 'VM probed a host service', run: (c) => inEvil(`probe ${c.otherGateway} ${c.secretPort}; true`) },
  { attack: 'other-tenant-vm', rule: 'VM probed another tenant', run: (c) => inEvil(`probe ${c.calm} 80; true`) },
  // ---- test/attacks/vm/runaway.test.ts ----
  {
    attack: 'spins its vCPU', rule: 'Crypto miner CPU pattern (VM)', timeoutMs: 45_000,
    // Niced, as in the runaway suite, so the guest's httpd still takes orders.
    run: () => inEvil('(while :; do :; done) >/dev/null 2>&1 & echo $! > /tmp/spin; renice -n 19 -p $(cat /tmp/spin) >/dev/null; echo spinning'),
  },
];

/** Attacks of the vm suite with no alert, and why that is right. */
const SILENT: Record<string, string> = {
  'host-loopback-service': "the guest's 127.0.0.1 is its own loopback: nothing leaves the guest",
  'same-tenant-vm': 'allowed: a tenant\'s VMs share their bridge (switched, never refused)',
  'gateway-port': 'allowed: the gateway\'s ports are what a guest may reach (the precision test does)',
  'its QEMU is unprivileged and in its own cgroup': 'a property of the launch, checked on the host: the guest does nothing',
  'fills its RAM': 'a guest filling its own RAM stays far below its QEMU cgroup\'s limit (RAM + overhead): nothing the host should report',
  'a neighbour keeps serving': 'not an attack: the benign guest of the precision test',
};

describe('guard on the vm attack suite', { skip: imageMissing('x86_64') ?? false }, () => {
  const ctx = { calm: '', otherGateway: '', loopbackPort: 0, secretPort: 0 };

  before(async () => {
    ctx.loopbackPort = await listen('127.0.0.1');
    ctx.secretPort = await listen('0.0.0.0');
    const gatewayPort = await listen('0.0.0.0');
    root = tempDir('vm-alerts', { mode: 0o711 });
    driver = new VmDriver({ stateDir: join(root, 'vm'), network: testNetwork(12, [gatewayPort]) });
    assert.ok((await driver.provision()).available);
    const d = driver;

    guard = new Guard({ ruleset: await loadDefaultRuleset(), target, audit: new MemoryAudit(), events: recordingBus().bus });
    const targets = cachedTargets(async () => {
      const out: VmTarget[] = [];
      for (const id of [EVIL, CALM]) {
        const t = vmTargetOf({ tenantId: TENANT[id]!, instanceId: id, level: 'vm', vcpus: 1 }, await d.inspect(id).catch(() => null));
        if (t) out.push(t);
      }
      return out;
    }, 2_000);
    const instancesDir = join(root, 'vm', 'instances');
    await guard.addInterceptor(recording(new QmpInterceptor(tapQmpEvents, (path) => {
      const id = basename(dirname(dirname(path)));
      return dirname(dirname(dirname(path))) === instancesDir && TENANT[id] ? { tenantId: TENANT[id]!, instanceId: id, level: 'vm' } : null;
    })));
    await guard.addInterceptor(recording(new VmNetworkInterceptor({ targets })));
    await guard.addInterceptor(recording(new VmResourceInterceptor({ targets })));
    await guard.start();

    await driver.create(vmSpec(CALM, 'vm', { command: CALM_COMMAND }, 128, { tenantId: TENANT[CALM] }));
    await driver.create(vmSpec(EVIL, 'vm', { command: EVIL_COMMAND }, 128, { tenantId: TENANT[EVIL] }));
    await driver.start(CALM);
    await driver.start(EVIL);
    await getWhen200(await guestUrl(d, CALM, '/n'), 180_000, 250);
    await getWhen200(await guestUrl(d, EVIL), 180_000, 250);
    ctx.calm = String((await d.inspect(CALM))?.info?.address);
    const evilAddress = String((await d.inspect(EVIL))?.info?.address);
    assert.notEqual(ctx.calm.split('.').slice(0, 3).join('.'), evilAddress.split('.').slice(0, 3).join('.'), 'tenants live on different /24s');
    ctx.otherGateway = ctx.calm.replace(/\.\d+$/, '.1');
  }, { timeout: 420_000 });

  after(async () => {
    await guard?.stop();
    if (driver) {
      for (const id of [EVIL, CALM]) {
        await driver.stop(id, { graceMs: 0 }).catch(() => undefined);
        await driver.delete(id).catch(() => undefined);
      }
      await driver.cleanup();
    }
    for (const s of servers) s.close();
  }, { timeout: 120_000 });

  test('precision: a benign guest, and the attacker at rest reaching the gateway port, raise no alert', { timeout: 120_000 }, async () => {
    const m = mark();
    const calmUrl = await guestUrl(driver!, CALM, '/n');
    let served = 0;
    const t0 = Date.now();
    while (Date.now() - t0 < 14_000) {
      if ((await fetch(calmUrl, { signal: AbortSignal.timeout(3_000) }).catch(() => null))?.status === 200) served++;
      await sleep(500);
    }
    const gatewayPort = testNetworkPort();
    assert.match(await inEvil(`if probe $gw ${gatewayPort}; then echo reached; else echo blocked; fi`), /reached/, 'the gateway port answers the guest');
    await sleep(2_500); // a poll of the counters after the probe
    await guard!.drained();
    assert.ok(served >= 3, `the benign guest served throughout (${served})`);
    for (const id of [CALM, EVIL]) assert.ok((seenKinds.get(`resource.cpu@${id}`) ?? 0) >= 8, `the guard sampled ${id}'s CPU (${seenKinds.get(`resource.cpu@${id}`) ?? 0} times)`);
    const calmBusy = recent.filter((e) => e.kind === 'resource.cpu' && e.instanceId === CALM).map((e) => e.fields['cpu.busy']);
    assert.deepEqual(alertsSince(m).map((a) => `${a.rule} @${a.instanceId}: ${a.output}`), [], `calm cpu.busy: ${calmBusy.join(' ')}`);
  });

  for (const c of CASES) {
    test(`effectiveness: ${c.attack} → ${c.rule}`, { timeout: (c.timeoutMs ?? 15_000) + 60_000 }, async () => {
      const m = mark();
      await c.run(ctx);
      const alert = await waitFor(c.rule, EVIL, m, c.timeoutMs);
      assert.equal(alert.tenantId, TENANT[EVIL]);
      assert.ok(alert.auditIndex >= 0);
      assert.ok(!alertsSince(m).some((a) => a.instanceId === CALM), 'nothing on the victim');
    });
  }

  test('throttled to 0.1 CPU, the spinning guest still shows busy; once the spinner is gone its vCPU sleeps', { timeout: 90_000 }, async () => {
    // The guard's own throttle lever (the VM's cgroup quota): time held back by the quota counts as runnable.
    const levers = vmLevel.levers!(driver!);
    const evil = { id: EVIL, name: EVIL, tenantId: TENANT[EVIL], level: 'vm', limits: { vcpus: 1, memoryMiB: 128, diskMiB: 0 } } as unknown as Instance;
    await levers.setCpu(evil, 0.1);
    const throttledAt = Date.now();
    try {
      await until(() => recent.filter((e) => e.kind === 'resource.cpu' && e.instanceId === EVIL && e.time > throttledAt + 1500).length >= 3, { ...WAIT, what: 'samples while throttled' });
      const samples = recent.filter((e) => e.kind === 'resource.cpu' && e.instanceId === EVIL && e.time > throttledAt + 1500);
      assert.ok(samples.every((e) => Number(e.fields['cpu.busy']) >= 0.9), `busy while throttled: ${samples.map((e) => `${e.fields['cpu.busy']} (${e.fields['cpu.cores']} cores)`).join(', ')}`);
      assert.ok(samples.some((e) => Number(e.fields['cpu.cores']) <= 0.3), 'the throttle did hold QEMU back');
    } finally {
      await levers.setCpu(evil, 1);
    }
    await inEvil('kill $(cat /tmp/spin); echo stopped');
    const since = Date.now();
    for (;;) {
      const quiet = recent.find((e) => e.kind === 'resource.cpu' && e.instanceId === EVIL && e.time > since + 1500 && Number(e.fields['cpu.busy']) < 0.5);
      if (quiet) break;
      assert.ok(Date.now() - since < 30_000, 'the vCPU did not idle again');
      await sleep(500);
    }
  });

  test("effectiveness: the guest's kernel panics (the guard's brief: QMP, unexpected reset) → Guest reset itself", { timeout: 90_000 }, async () => {
    const m = mark();
    // panic=-1 resets the guest at once; -no-reboot turns the reset into QEMU's exit (SHUTDOWN, reason guest-reset).
    await inEvil('(sleep 1; echo c > /proc/sysrq-trigger) >/dev/null 2>&1 & echo panicking');
    const alert = await waitFor('Guest reset itself', EVIL, m, 30_000);
    assert.equal(alert.fields['vm.expected'], false);
    const console = await readFile(join(root!, 'vm', 'instances', EVIL, 'console.log'), 'utf8').catch(() => '');
    if (console) assert.match(console, /Kernel panic|sysrq/i, 'the guest did panic');
  });

  test('every vm attack is in the table, or named silent with a reason', async () => {
    const covered = [...CASES.map((c) => c.attack), ...Object.keys(SILENT)];
    const missing: string[] = [];
    for (const file of ['containment', 'network', 'runaway']) {
      const source = await readFile(fileURLToPath(new URL(`../../../../test/attacks/vm/${file}.test.ts`, import.meta.url)), 'utf8');
      const titles = [...source.matchAll(/\btest\((['"])(.+?)\1,/g)].map((x) => x[2]!);
      assert.ok(titles.length >= 1, `${file}: found its test`);
      // network.test.ts probes named targets: each is a case or silent (and they stand for its title).
      const targets = /const targets[^{]*\{([\s\S]*?)\};/.exec(source)?.[1];
      const keys = targets ? [...targets.matchAll(/'([a-z-]+)':/g)].map((x) => x[1]!) : [];
      for (const key of keys) if (!covered.includes(key)) missing.push(`${file}: ${key}`);
      if (keys.length === 0) for (const t of titles) if (!covered.some((c) => t.includes(c))) missing.push(`${file}: ${t}`);
    }
    assert.deepEqual(missing, [], 'vm attacks without an expected alert or a reason');
  });
});

/** The gateway port the driver allows (the last host service started in `before`). */
function testNetworkPort(): number {
  return (servers[2]!.address() as AddressInfo).port;
}
