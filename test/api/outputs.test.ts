/**
 * Alert outputs through the API and the daemon's guard: created per provider
 * and per tenant, a webhook's secret shown once, bad input refused with 400,
 * roles and tenant segregation, alerts raised by the guard delivered signed to
 * the right outputs only (tenant A's webhook never gets B's alert), `test`,
 * delete, a tenant's outputs gone with it, failures visible as an alert and in
 * /metrics.
 */
import assert from 'node:assert/strict';
import { rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Alert } from '../../src/guard/actuator.js';
import { verifyWebhook } from '../../src/guard/outputs/webhook.js';
import { TestDaemon } from '../support/harness.js';
import { tempDir } from '../support/temp.js';
import { until } from '../support/until.js';
import { Receiver } from '../guard/outputs-fixtures.js';

let d: TestDaemon;
let strict: TestDaemon;
let rxA: Receiver, rxB: Receiver, rxP: Receiver, rxFail: Receiver;
let tokenA: string, tokenB: string, memberA: string;

before(async () => {
  [rxA, rxB, rxP, rxFail] = await Promise.all([Receiver.start(), Receiver.start(), Receiver.start(), Receiver.start(() => 500)]);
  // Tenants' outputs reach loopback receivers here only because the test allows it; `strict` is the default.
  d = await TestDaemon.start({ outputs: { allowPrivateTargets: true, backoffMs: 5, maxBackoffMs: 20 } });
  strict = await TestDaemon.start();
  tokenA = await d.tenantWithUser('ta', 'tenant-admin');
  memberA = await d.userToken('member-ta', 'tenant-member', 'ta');
  tokenB = await d.tenantWithUser('tb', 'tenant-admin');
});
after(async () => {
  await d.close();
  await strict.close();
  await Promise.all([rxA.close(), rxB.close(), rxP.close(), rxFail.close()]);
});

const tenantId = (name: string): string => d.daemon.services.store.getTenantByName(name)!.id;

/** Raises an alert in the daemon's guard for a tenant (an outbound connection: notify, no instance to act on). */
async function alertFor(tenant: string | null, port: number): Promise<void> {
  d.daemon.services.guard.ingest({
    time: Date.now(), tenantId: tenant, instanceId: null, level: 'os', kind: 'net.connect',
    fields: { 'net.direction': 'out', 'net.dip': '10.9.8.7', 'net.dport': port, 'proc.name': 'bot' },
  });
  await d.daemon.services.guard.drained();
}

test('bad input is a 400 naming the field: bad URL, unknown type, a file for a tenant or outside the data dir, unknown fields; a duplicate is 409', async () => {
  const bad: Array<[string, unknown, string]> = [
    ['/v1/outputs', { name: 'x', type: 'webhook', url: 'not a url' }, 'body.url'],
    ['/v1/outputs', { name: 'x', type: 'webhook', url: 'ftp://example.com/' }, 'body.url'],
    ['/v1/outputs', { name: 'x', type: 'pager', url: 'http://example.com/' }, 'body.type'],
    ['/v1/outputs', { name: 'x', type: 'webhook', url: 'http://example.com/', secret: 'mine' }, 'body'],
    ['/v1/outputs', { name: 'x', type: 'webhook', url: 'http://example.com/', headers: { 'X-Strata-Signature': 'forged' } }, 'body.headers'],
    ['/v1/outputs', { name: 'x', type: 'syslog', host: 'a b', port: 514 }, 'body.host'],
    ['/v1/outputs', { name: 'x', type: 'syslog', host: 'logs.example', port: 70000 }, 'body.port'],
    ['/v1/outputs', { name: 'x', type: 'file', path: '../escape.jsonl' }, 'body.path'],
    ['/v1/outputs', { name: 'x', type: 'webhook', url: 'http://example.com/', minPriority: 'urgent' }, 'body.minPriority'],
    ['/v1/tenants/ta/outputs', { name: 'x', type: 'file', path: 'a.jsonl' }, 'body.type'],
    ['/v1/outputs', { name: 'Bad Name', type: 'webhook', url: 'http://example.com/' }, 'body.name'],
  ];
  for (const [path, body, field] of bad) {
    const r = await d.request('POST', path, { body });
    assert.equal(r.status, 400, `${JSON.stringify(body)} → ${r.status} ${JSON.stringify(r.body)}`);
    assert.equal(r.body.error.code, 'STRATA_ERR_VALIDATION');
    assert.ok(r.body.error.details.issues.some((i: { field: string }) => i.field.startsWith(field)), `${JSON.stringify(r.body.error)} names ${field}`);
  }
  // By default a tenant's output may not point into the host (loopback, private networks), by address or by name.
  await strict.tenantWithUser('sa');
  for (const [body, field] of [
    [{ name: 'x', type: 'webhook', url: 'http://127.0.0.1:8470/v1/tenants' }, 'body.url'],
    [{ name: 'x', type: 'webhook', url: 'http://localhost/' }, 'body.url'],
    [{ name: 'x', type: 'syslog', host: '169.254.169.254' }, 'body.host'],
  ] as const) {
    const r = await strict.request('POST', '/v1/tenants/sa/outputs', { body });
    assert.equal(r.status, 400, JSON.stringify(r.body));
    assert.equal(r.body.error.details.issues[0].field, field);
  }
  assert.equal((await d.request('POST', '/v1/outputs', { body: { name: 'dup', type: 'syslog', host: 'logs.example' } })).status, 201);
  assert.equal((await d.request('POST', '/v1/outputs', { body: { name: 'dup', type: 'syslog', host: 'logs.example' } })).status, 409);
  assert.equal((await d.request('POST', '/v1/tenants/ta/outputs', { body: { name: 'dup', type: 'syslog', host: 'logs.example' } }, )).status, 201, 'names are per owner');
  assert.equal((await d.request('DELETE', '/v1/outputs/dup')).status, 204);
  assert.equal((await d.request('DELETE', '/v1/tenants/ta/outputs/dup')).status, 204);
});

test("roles: the provider's outputs are provider roles' only; a tenant-admin manages its tenant's, never another's; a member cannot", async () => {
  const hook = { name: 'r', type: 'webhook', url: rxA.url };
  assert.equal((await d.request('POST', '/v1/outputs', { token: tokenA, body: hook })).status, 403);
  assert.equal((await d.request('GET', '/v1/outputs', { token: tokenA })).status, 403);
  assert.equal((await d.request('POST', '/v1/tenants/tb/outputs', { token: tokenA, body: hook })).status, 404, "another tenant's: not found, as for a name that does not exist");
  assert.equal((await d.request('GET', '/v1/tenants/tb/outputs', { token: tokenA })).status, 404);
  assert.equal((await d.request('POST', '/v1/tenants/ta/outputs', { token: memberA, body: hook })).status, 403);
});

test("a webhook's secret is returned once at creation, never after; alerts reach each output signed with it, and tenant A's webhook never gets B's alerts", async () => {
  const a = await d.request('POST', '/v1/tenants/ta/outputs', { token: tokenA, body: { name: 'hook', type: 'webhook', url: rxA.url } });
  assert.equal(a.status, 201, JSON.stringify(a.body));
  assert.match(a.body.secret, /^whsec_[A-Za-z0-9_-]{43}$/);
  assert.equal(a.body.tenant, 'ta');
  const b = await d.request('POST', '/v1/tenants/tb/outputs', { token: tokenB, body: { name: 'hook', type: 'webhook', url: rxB.url } });
  const p = await d.request('POST', '/v1/outputs', { body: { name: 'hook', type: 'webhook', url: rxP.url, minPriority: 'warning' } });
  assert.equal(b.status, 201);
  assert.equal(p.status, 201);
  for (const path of ['/v1/tenants/ta/outputs', '/v1/tenants/ta/outputs/hook']) {
    const r = await d.request('GET', path, { token: tokenA });
    assert.equal(r.status, 200);
    assert.ok(!JSON.stringify(r.body).includes(a.body.secret), `${path} never shows the secret`);
    assert.ok(!JSON.stringify(r.body).includes('secret'), `${path} has no secret field`);
  }
  assert.ok(!JSON.stringify(d.daemon.services.store.outputs.list()).includes(a.body.secret), 'the store keeps it sealed');

  await alertFor(tenantId('ta'), 6667);
  await alertFor(tenantId('tb'), 6668);
  await alertFor(null, 6669);
  await d.daemon.services.outputs!.dispatcher.idle();
  const got = (rx: Receiver): Alert[] => rx.received.map((r) => JSON.parse(r.body) as Alert);
  assert.deepEqual(got(rxA).map((x) => x.fields['net.dport']), [6667]);
  assert.deepEqual(got(rxA).map((x) => x.tenantId), [tenantId('ta')]);
  assert.deepEqual(got(rxB).map((x) => x.fields['net.dport']), [6668]);
  assert.deepEqual(got(rxP).map((x) => x.fields['net.dport']).sort(), [6667, 6668, 6669], "the provider's receives all, host-level too");
  assert.ok(rxA.received.every((r) => verifyWebhook(a.body.secret, r.headers, r.body)));
  assert.ok(!rxA.received.some((r) => verifyWebhook(b.body.secret, r.headers, r.body)));
  assert.ok(rxB.received.every((r) => verifyWebhook(b.body.secret, r.headers, r.body)));

  const shown = await d.request('GET', '/v1/tenants/ta/outputs/hook', { token: tokenA });
  assert.equal(shown.body.stats.delivered, 1);
  const metrics = String((await d.request('GET', '/metrics')).body);
  assert.match(metrics, /strata_alert_output_delivered_total\{owner="provider",output="hook",type="webhook"\} 3/);

  // test: one signed sample now, and whether it arrived.
  const before = rxA.received.length;
  const t = await d.request('POST', '/v1/tenants/ta/outputs/hook/test', { token: tokenA });
  assert.deepEqual(t.body, { delivered: true, error: null });
  assert.equal(rxA.received.length, before + 1);
  assert.ok(verifyWebhook(a.body.secret, rxA.received.at(-1)!.headers, rxA.received.at(-1)!.body));
  assert.equal((await d.request('POST', '/v1/tenants/ta/outputs/none/test', { token: tokenA })).status, 404);

  // Deleted: nothing more arrives.
  assert.equal((await d.request('DELETE', '/v1/tenants/ta/outputs/hook', { token: tokenA })).status, 204);
  assert.equal((await d.request('GET', '/v1/tenants/ta/outputs/hook', { token: tokenA })).status, 404);
  await alertFor(tenantId('ta'), 6670);
  await d.daemon.services.outputs!.dispatcher.idle();
  assert.equal(rxA.received.length, before + 1);
  assert.equal((await d.request('DELETE', '/v1/outputs/hook')).status, 204);
});

test("a failing output is counted, dead-lettered and raises a host-level alert; test says it did not arrive; a tenant's outputs go with the tenant", async () => {
  const f = await d.request('POST', '/v1/outputs', { body: { name: 'failing', type: 'webhook', url: rxFail.url, retries: 1, rules: ['Unexpected outbound connection'] } });
  assert.equal(f.status, 201);
  await alertFor(tenantId('ta'), 7001);
  await d.daemon.services.outputs!.dispatcher.idle();
  const shown = await d.request('GET', '/v1/outputs/failing');
  assert.equal(shown.body.stats.deadLetters, 1);
  assert.equal(shown.body.stats.failedAttempts, 2);
  assert.equal(shown.body.stats.lastError, 'HTTP 500');
  const alerts = await until(async () => {
    const r = await d.request('GET', '/v1/alerts?limit=50');
    return r.body.items.filter((x: Alert) => x.rule === 'guard.output.failed');
  }, { what: 'the output failure alert' });
  assert.equal(alerts[0].level, 'host');
  assert.equal(alerts[0].fields['output.name'], 'failing');
  const ta = await d.request('GET', '/v1/alerts?limit=50', { token: tokenA });
  assert.ok(!ta.body.items.some((x: Alert) => x.rule === 'guard.output.failed'), 'host-level: not shown to a tenant');
  const t = await d.request('POST', '/v1/outputs/failing/test');
  assert.deepEqual(t.body, { delivered: false, error: 'HTTP 500' });
  assert.equal((await d.request('DELETE', '/v1/outputs/failing')).status, 204);

  const tb = tenantId('tb');
  assert.equal(d.daemon.services.store.outputs.list(tb).length, 1);
  assert.equal((await d.request('DELETE', '/v1/tenants/tb')).status, 204);
  assert.equal(d.daemon.services.store.outputs.list(tb).length, 0);
  await until(() => !d.daemon.services.outputs!.dispatcher.all().some((o) => o.def.tenantId === tb), { what: "the dispatcher to drop tb's output" });
});

test('outputs outlive a restart: the same secret signs after it (the sealing key is kept in the data dir, 0600); with the key lost the daemon starts and the webhook says it cannot run', async () => {
  const dataDir = tempDir('outputs-restart');
  const rx = await Receiver.start();
  let first: TestDaemon | undefined = await TestDaemon.start({ dataDir, outputs: { allowPrivateTargets: true } });
  try {
    const made = await first.request('POST', '/v1/outputs', { body: { name: 'kept', type: 'webhook', url: rx.url } });
    assert.equal(made.status, 201);
    assert.equal(statSync(join(dataDir, 'outputs-key')).mode & 0o777, 0o600);
    await first.close();
    first = undefined;
    const second = await TestDaemon.start({ dataDir, outputs: { allowPrivateTargets: true } });
    try {
      assert.deepEqual((await second.request('POST', '/v1/outputs/kept/test')).body, { delivered: true, error: null });
      assert.ok(verifyWebhook(made.body.secret, rx.received[0]!.headers, rx.received[0]!.body));
      assert.equal((await second.request('POST', '/v1/outputs', { body: { name: 'plain', type: 'syslog', host: '127.0.0.1', port: 9 } })).status, 201);
    } finally {
      await second.close();
    }
    // The sealing key lost: the daemon still starts; the webhook says why it cannot run; the other output runs.
    rmSync(join(dataDir, 'outputs-key'));
    const third = await TestDaemon.start({ dataDir, outputs: { allowPrivateTargets: true } });
    try {
      const kept = await third.request('GET', '/v1/outputs/kept');
      assert.match(kept.body.error, /cannot run/);
      assert.equal(kept.body.stats, null);
      assert.equal((await third.request('POST', '/v1/outputs/kept/test')).body.delivered, false);
      const plain = await third.request('GET', '/v1/outputs/plain');
      assert.equal(plain.body.error, null);
      assert.notEqual(plain.body.stats, null);
    } finally {
      await third.close();
    }
  } finally {
    await first?.close();
    await rx.close();
  }
});
