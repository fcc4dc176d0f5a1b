/**
 * The guard's integrity loop end to end, with a real daemon, the os driver
 * (runc), the gateway and inotify: tampering with a static docroot or with a
 * running web container's content raises the alert, and the visitor gets the
 * clean content back through the gateway — the docroot from its known-good
 * copies, the container by a replacement restored from its known-good snapshot
 * (the compromised one is frozen and kept). Throttle and network cut apply to
 * the real container and undo themselves.
 */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Actuator } from '../../src/guard/actuator.js';
import { EventBus } from '../../src/core/events.js';
import { osLevel } from '../../src/levels/os/module.js';
import { OsDriver } from '../../src/levels/os/driver.js';
import { builtinImages, claimSlot, leftovers, testDriverOptions } from '../levels/os/helpers.js';
import { TestDaemon } from '../support/harness.js';
import { viaGateway } from '../support/net.js';
import { MemoryAudit } from '../guard/fakes.js';
import { until } from '../support/until.js';

const options = testDriverOptions(await claimSlot());
let d: TestDaemon;
let driver: OsDriver;
let gatewayPort = 0;
const reason = { 'x-strata-reason': 'guard recovery test' };

const visit = (host: string, timeoutMs = 2000) => viaGateway(gatewayPort, host, '/', { timeoutMs });

before(async () => {
  await builtinImages();
  driver = new OsDriver(options);
  d = await TestDaemon.start({ drivers: [driver], gateway: { listeners: [{ id: 'http', address: '127.0.0.1', port: 0, protocol: 'http' }] } });
  gatewayPort = d.daemon.services.gateway!.addresses()[0]!.port;
  const t = await d.request('POST', '/v1/tenants', { body: { name: 'acme', quota: { instances: 4, vcpus: 4, memoryMiB: 1024 } } });
  assert.equal(t.status, 201);
});

after(async () => {
  for (const i of (await d.request('GET', '/v1/tenants/acme/instances', { headers: reason })).body.items ?? []) {
    await d.request('DELETE', `/v1/tenants/acme/instances/${i.name}?wait=30`, { headers: reason });
  }
  await d.close();
  assert.deepEqual(await leftovers(options), { containers: [], mounts: [], links: [], cgroups: [], firewall: [], instances: [] });
});

test('a defaced static docroot is served clean again through the gateway', async () => {
  const root = d.docroot('acme', 'www');
  mkdirSync(root, { recursive: true });
  writeFileSync(join(root, 'index.html'), '<h1>acme</h1>');
  assert.equal((await d.request('POST', '/v1/tenants/acme/sites', { body: { hostname: 'www.acme.test', target: { kind: 'static', root: 'www' } }, headers: reason })).status, 201);
  await until(async () => (await visit('www.acme.test')).body === '<h1>acme</h1>', { ms: 5000, what: 'the site' });
  await until(() => d.daemon.integrity.monitor.tree(`docroot:${d.daemon.services.store.getTenantByName('acme')!.id}/www`), { ms: 5000, what: 'the docroot baseline' });

  writeFileSync(join(root, 'index.html'), '<h1>hacked by x</h1>');
  writeFileSync(join(root, 'backdoor.php'), '<?php eval($_POST[1]);');
  await until(async () => (await visit('www.acme.test')).body === '<h1>acme</h1>', { ms: 5000, what: 'clean content' });
  await d.daemon.services.guard.drained();
  const alerts = d.daemon.services.guard.alerts({});
  assert.ok(alerts.some((a) => a.rule === 'Tampered content recovered' && a.fields['file.path'] === '/index.html'));
  const entries = (await d.request('GET', '/v1/audit/entries?limit=1000')).body.items.map((x: any) => x.entry);
  const recoveries = entries.filter((e: any) => e.action === 'guard.recover' && e.result === 'ok');
  assert.ok(recoveries.some((e: any) => e.details.restored.includes('index.html')), 'the restore is audited');
  assert.ok(recoveries.every((e: any) => typeof e.details.alertAuditIndex === 'number'), 'with its evidence');
  await until(async () => (await visit('www.acme.test')).body === '<h1>acme</h1>' && !(await import('node:fs')).existsSync(join(root, 'backdoor.php')), { ms: 5000, what: 'the backdoor gone' });
});

test('a tampered web container is replaced from its known-good snapshot: the visitor gets the clean content back', async () => {
  const l = await d.request('POST', '/v1/tenants/acme/instances?wait=30', { body: { name: 'web', level: 'os', source: 'busybox', limits: { memoryMiB: 64 } }, headers: reason });
  assert.equal(l.status, 200, JSON.stringify(l.body));
  const id = l.body.instance.id as string;
  assert.equal((await d.request('POST', '/v1/tenants/acme/sites', { body: { hostname: 'web.acme.test', target: { kind: 'instance', instance: 'web', port: 8080 } }, headers: reason })).status, 201);
  await until(async () => (await visit('web.acme.test')).body === 'busybox ok\n', { ms: 10_000, what: 'the container site' });
  await until(() => d.daemon.integrity.monitor.tree(`instance:${id}`), { ms: 10_000, what: 'the container baseline' });
  assert.ok(d.daemon.integrity.target.knownGood.has(id), 'a known-good snapshot was taken');

  // The container's root is read-only from inside: the tamper comes from the host side, as an escaped attacker's would.
  writeFileSync(join(options.runRoot!, 'rootfs', id, 'www', 'index.html'), 'defaced\n');
  await until(async () => {
    const r = await visit('web.acme.test');
    return r.status === 200 && r.body === 'busybox ok\n' && d.daemon.services.store.getSite('web.acme.test')?.target.kind === 'instance'
      && (d.daemon.services.store.getSite('web.acme.test')!.target as { instance: string }).instance === 'web-r1';
  }, { ms: 20_000, what: 'the replacement serving' });
  await d.daemon.services.guard.drained();

  const web = (await d.request('GET', '/v1/tenants/acme/instances/web', { headers: reason })).body;
  const r1 = (await d.request('GET', '/v1/tenants/acme/instances/web-r1', { headers: reason })).body;
  assert.equal(web.state, 'paused', 'the compromised instance is frozen and kept for forensics');
  assert.equal(r1.state, 'running');
  const alert = d.daemon.services.guard.alerts({}).find((a) => a.rule === 'Tampered content recovered' && a.instanceId === id);
  assert.ok(alert, 'the alert fired');
  assert.equal(alert.fields['file.path'], '/www/index.html');
  const entries = (await d.request('GET', '/v1/audit/entries?limit=1000')).body.items.map((x: any) => x.entry);
  const recovery = entries.find((e: any) => e.action === 'guard.recover' && e.target === id && !e.details.already);
  assert.equal(recovery.result, 'ok', JSON.stringify(recovery.details));
  assert.equal(recovery.details.replacement, 'acme/web-r1');
  assert.equal(recovery.details.alertAuditIndex, alert.auditIndex);
  assert.deepEqual(recovery.details.sites, ['web.acme.test']);
  // The known-good snapshot is the system's: named by the recovery's entry, listed for the provider only on request, not in the tenant's list.
  const systemSnaps = (await d.request('GET', '/v1/tenants/acme/instances/web/snapshots?system=true')).body.items.map((x: any) => x.id);
  assert.ok(systemSnaps.includes(recovery.details.knownGoodSnapshotId), JSON.stringify(systemSnaps));
  assert.deepEqual((await d.request('GET', '/v1/tenants/acme/snapshots')).body.items, [], "nothing of the guard's in the tenant's list");
  assert.deepEqual((await d.request('GET', '/v1/tenants/acme')).body.usage.diskMiB, web.limits.diskMiB + r1.limits.diskMiB, 'nor in its usage');
  // The frozen one still holds the evidence.
  const evidence = await import('node:fs/promises').then((fs) => fs.readFile(join(options.runRoot!, 'rootfs', id, 'www', 'index.html'), 'utf8'));
  assert.equal(evidence, 'defaced\n');
});

test('throttle and network cut apply to the running container and undo themselves', async () => {
  const r1 = d.daemon.services.store.listInstances().find((i) => i.name === 'web-r1') ?? d.daemon.services.store.listInstances().find((i) => i.name === 'web');
  assert.ok(r1 && r1.actualState === 'running');
  const levers = osLevel.levers!(driver);
  const audit = new MemoryAudit();
  const actuator = new Actuator({ target: d.daemon.integrity.target, audit, events: new EventBus(), throttleMs: 300, cutMs: 2500 });
  const match = (action: 'throttle' | 'cut') => ({
    rule: 'test', priority: 'warning' as const, action, output: action, count: 1, tags: [],
    event: { time: Date.now(), tenantId: r1.tenantId, instanceId: r1.id, level: 'os' as const, kind: 'test', fields: {} },
  });

  actuator.handle(match('throttle'));
  await actuator.settled();
  assert.equal(await levers.cpu(r1), 0.1, 'throttled to a tenth of a CPU');
  await until(async () => (await levers.cpu(r1)) === r1.limits.vcpus, { ms: 5000, what: 'the throttle undone' });

  actuator.handle(match('cut'));
  await actuator.settled();
  assert.equal(await levers.network(r1), false);
  const cut = await visit('web.acme.test', 1000);
  assert.notEqual(cut.status, 200, 'nothing reaches a cut-off instance');
  await until(async () => (await levers.network(r1)) === true, { ms: 5000, what: 'the cut undone' });
  await until(async () => (await visit('web.acme.test')).status === 200, { ms: 5000, what: 'serving again' });
  assert.deepEqual(audit.entries.filter((e) => e.action !== 'guard.alert').map((e) => [e.action, e.result]),
    [['guard.throttle', 'ok'], ['guard.unthrottle', 'ok'], ['guard.cut', 'ok'], ['guard.reconnect', 'ok']]);
  await actuator.stop();
});

test('stopping and starting a watched container is no tamper: no alert, no reaction, it stays where its owner put it', async () => {
  const l = await d.request('POST', '/v1/tenants/acme/instances?wait=30', { body: { name: 'calm', level: 'os', source: 'busybox', limits: { memoryMiB: 64 } }, headers: reason });
  assert.equal(l.status, 200, JSON.stringify(l.body));
  const id = l.body.instance.id as string;
  await until(() => d.daemon.integrity.monitor.tree(`instance:${id}`), { ms: 10_000, what: 'the container baseline' });

  assert.equal((await d.request('POST', '/v1/tenants/acme/instances/calm/stop?wait=30', { headers: reason })).status, 200);
  await sleep(1500); // what the stop took away (the unmounted root) would have been reported by now
  await d.daemon.services.guard.drained();
  assert.deepEqual(d.daemon.services.guard.alerts({}).filter((a) => a.instanceId === id).map((a) => a.rule), []);
  const stopped = (await d.request('GET', '/v1/tenants/acme/instances/calm', { headers: reason })).body;
  assert.deepEqual([stopped.state, stopped.desiredState], ['stopped', 'stopped']);

  assert.equal((await d.request('POST', '/v1/tenants/acme/instances/calm/start?wait=30', { headers: reason })).status, 200);
  await until(() => d.daemon.integrity.monitor.tree(`instance:${id}`), { ms: 10_000, what: 'the baseline again' });
  await d.daemon.services.guard.drained();
  assert.deepEqual(d.daemon.services.guard.alerts({}).filter((a) => a.instanceId === id).map((a) => a.rule), []);
});
