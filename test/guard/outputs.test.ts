/**
 * Alert outputs, the dispatcher and webhooks: signed and verifiable, retried
 * with backoff, dead-lettered after the limit with a rate-limited host alert,
 * tenant isolation by tenant id, filters, tenants kept off private addresses,
 * and a receiver that hangs never slowing the guard.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Guard } from '../../src/guard/guard.js';
import { AlertDispatcher, FAILURE_RULE, type RaiseFn } from '../../src/guard/outputs/dispatcher.js';
import { seal, unseal } from '../../src/guard/outputs/service.js';
import { verifyWebhook, SIGNATURE_HEADER, TIMESTAMP_HEADER, DELIVERY_HEADER } from '../../src/guard/outputs/webhook.js';
import { isPrivateAddress, isPrivateHost, publicLookup } from '../../src/guard/outputs/address.js';
import { loadDefaultRuleset } from '../../src/guard/rules.js';
import { tempDir } from '../support/temp.js';
import { until } from '../support/until.js';
import { event, FakeTarget, MemoryAudit, recordingBus } from './fakes.js';
import { definition, Receiver, sampleAlert } from './outputs-fixtures.js';
import type { Alert } from '../../src/guard/actuator.js';

const dispatcher = (more: Partial<ConstructorParameters<typeof AlertDispatcher>[0]> = {}): AlertDispatcher =>
  new AlertDispatcher({ fileRoot: tempDir('outputs'), backoffMs: 5, maxBackoffMs: 20, allowPrivateTargets: true, ...more });

test('a webhook is signed over timestamp and body with the output secret: the receiver verifies it; a changed body, another secret or an old timestamp do not verify', async () => {
  const rx = await Receiver.start();
  const d = dispatcher();
  try {
    d.set([definition({ type: 'webhook', url: rx.url }, { secret: 'whsec_one' })]);
    const alert = sampleAlert();
    d.deliver(alert);
    await d.idle();
    assert.equal(rx.received.length, 1);
    const [{ headers, body }] = rx.received as [(typeof rx.received)[number]];
    assert.deepEqual(JSON.parse(body), alert, 'the body is the alert as JSON');
    assert.equal(headers['content-type'], 'application/json');
    assert.equal(headers[DELIVERY_HEADER], alert.id);
    assert.match(String(headers[SIGNATURE_HEADER]), /^sha256=[0-9a-f]{64}$/);
    assert.equal(verifyWebhook('whsec_one', headers, body), true);
    assert.equal(verifyWebhook('whsec_one', headers, body.replace('critical', 'info')), false, 'a changed body');
    assert.equal(verifyWebhook('whsec_two', headers, body), false, 'another secret');
    const ts = Number(headers[TIMESTAMP_HEADER]);
    assert.equal(verifyWebhook('whsec_one', headers, body, { nowSec: ts + 301 }), false, 'a replay after the tolerance');
    assert.equal(verifyWebhook('whsec_one', { ...headers, [TIMESTAMP_HEADER]: String(ts + 1) }, body), false, 'a changed timestamp');
  } finally {
    await d.close();
    await rx.close();
  }
});

test('a receiver that fails 3 times then succeeds gets the alert once, the same delivery id on every attempt, each signed', async () => {
  const rx = await Receiver.start((i) => (i < 3 ? 503 : 200));
  const raised: Parameters<RaiseFn>[0][] = [];
  const d = dispatcher({ raise: (a) => raised.push(a) });
  try {
    const def = definition({ type: 'webhook', url: rx.url, retries: 5 });
    d.set([def]);
    d.deliver(sampleAlert());
    await d.idle();
    assert.equal(rx.received.length, 4);
    assert.equal(new Set(rx.received.map((r) => r.headers[DELIVERY_HEADER])).size, 1);
    assert.ok(rx.received.every((r) => verifyWebhook('whsec_test', r.headers, r.body)));
    const s = d.stats(def.id)!;
    assert.equal(s.delivered, 1);
    assert.equal(s.failedAttempts, 3);
    assert.equal(s.deadLetters, 0);
    assert.equal(s.lastError, 'HTTP 503');
    assert.deepEqual(raised, [], 'a delivery that made it raises nothing');
  } finally {
    await d.close();
    await rx.close();
  }
});

test('after the retry limit an alert is a dead letter: counted, and host-level alerts at most once per interval sum the failures', async () => {
  const rx = await Receiver.start(() => 500);
  const raised: Parameters<RaiseFn>[0][] = [];
  const d = dispatcher({ raise: (a) => raised.push(a), failureAlertIntervalMs: 2000 });
  try {
    const def = definition({ type: 'webhook', url: rx.url, retries: 2 }, { tenantId: 'tn_a', name: 'pager' });
    d.set([def]);
    d.deliver(sampleAlert());
    await d.idle();
    assert.equal(rx.received.length, 3, 'the first attempt and 2 retries');
    assert.equal(d.stats(def.id)!.deadLetters, 1);
    await until(() => raised.length === 1, { what: 'the failure alert' });
    const [a] = raised as [Parameters<RaiseFn>[0]];
    assert.equal(a.rule, FAILURE_RULE);
    assert.equal(a.level, 'host');
    assert.equal(a.tenantId, null, 'host-level: the provider sees it');
    assert.equal(a.fields['output.id'], def.id);
    assert.equal(a.fields['output.owner'], 'tn_a');
    assert.equal(a.fields['output.dead_letters'], 1);
    // More failures within the interval: counted, not alerted again yet.
    for (let i = 0; i < 3; i++) d.deliver(sampleAlert());
    await d.idle();
    assert.equal(d.stats(def.id)!.deadLetters, 4);
    // They come summed once the interval has passed: every failure reported, in fewer alerts than failures.
    const reported = (): number => raised.reduce((n, x) => n + Number(x.fields['output.dead_letters']), 0);
    await until(() => reported() === 4, { what: 'the summed failure alert', ms: 15_000 });
    assert.ok(raised.length < 4, `rate-limited: ${raised.length} alerts for 4 dead letters`);
    assert.ok(raised.every((x) => x.rule === FAILURE_RULE && x.level === 'host'));
    // The failure alert never goes to the output it is about.
    d.deliver({ ...sampleAlert(), rule: FAILURE_RULE, tenantId: 'tn_a', fields: { 'output.id': def.id } });
    assert.equal(d.stats(def.id)!.queued, 0);
  } finally {
    await d.close();
    await rx.close();
  }
});

test("tenant isolation: a tenant's output receives only alerts carrying its tenant id; the provider's receives all, host-level too", async () => {
  const [ra, rb, rp] = await Promise.all([Receiver.start(), Receiver.start(), Receiver.start()]);
  const d = dispatcher();
  try {
    d.set([
      definition({ type: 'webhook', url: ra.url }, { tenantId: 'tn_a', name: 'hook' }),
      definition({ type: 'webhook', url: rb.url }, { tenantId: 'tn_b', name: 'hook' }),
      definition({ type: 'webhook', url: rp.url }, { tenantId: null, name: 'hook' }),
    ]);
    const alerts = [
      sampleAlert({ tenantId: 'tn_a' }), sampleAlert({ tenantId: 'tn_b' }), sampleAlert({ tenantId: null, level: 'host', instanceId: null }),
      // A tenant's name in the evidence is not its identity.
      sampleAlert({ tenantId: 'tn_b', fields: { 'tenant.name': 'tn_a' } }),
    ];
    for (const a of alerts) d.deliver(a);
    await d.idle();
    const ids = (rx: Receiver): string[] => rx.received.map((r) => (JSON.parse(r.body) as Alert).id);
    assert.deepEqual(ids(ra), [alerts[0]!.id]);
    assert.deepEqual(ids(rb), [alerts[1]!.id, alerts[3]!.id]);
    assert.deepEqual(ids(rp), alerts.map((a) => a.id));
  } finally {
    await d.close();
    await Promise.all([ra.close(), rb.close(), rp.close()]);
  }
});

test('filters: a minimum priority and a list of rules', async () => {
  const rx = await Receiver.start();
  const d = dispatcher();
  try {
    d.set([
      definition({ type: 'webhook', url: rx.url }, { filter: { minPriority: 'error', rules: null }, name: 'urgent' }),
      definition({ type: 'webhook', url: rx.url }, { filter: { minPriority: null, rules: ['Crypto miner'] }, name: 'miners' }),
    ]);
    d.deliver(sampleAlert({ priority: 'critical', rule: 'Shell in web instance' })); // urgent
    d.deliver(sampleAlert({ priority: 'error', rule: 'Crypto miner' })); // both
    d.deliver(sampleAlert({ priority: 'warning', rule: 'Crypto miner' })); // miners
    d.deliver(sampleAlert({ priority: 'notice', rule: 'Other' })); // none
    await d.idle();
    const got = rx.received.map((r) => JSON.parse(r.body) as Alert).map((a) => `${a.priority} ${a.rule}`).sort();
    assert.deepEqual(got, ['critical Shell in web instance', 'error Crypto miner', 'error Crypto miner', 'warning Crypto miner']);
  } finally {
    await d.close();
    await rx.close();
  }
});

test("a tenant's output may not reach loopback or private addresses (literal or resolved): refused at once, not retried", async () => {
  const rx = await Receiver.start();
  const d = new AlertDispatcher({ fileRoot: tempDir('outputs'), backoffMs: 5 });
  try {
    const literal = definition({ type: 'webhook', url: rx.url }, { tenantId: 'tn_a' });
    const named = definition({ type: 'webhook', url: rx.url.replace('127.0.0.1', 'localhost') }, { tenantId: 'tn_a' });
    const provider = definition({ type: 'webhook', url: rx.url });
    d.set([literal, named, provider]);
    d.deliver(sampleAlert());
    await d.idle();
    assert.equal(rx.received.length, 1, "only the provider's output reached the receiver");
    for (const def of [literal, named]) {
      const s = d.stats(def.id)!;
      assert.equal(s.failedAttempts, 1, 'not retried');
      assert.equal(s.deadLetters, 1);
      assert.match(s.lastError!, /private address/);
    }
  } finally {
    await d.close();
    await rx.close();
  }
  // What a name resolves to is checked at connection time (a name that is not plainly local, rebinding to loopback).
  const resolved = await new Promise<NodeJS.ErrnoException | null>((resolve) => publicLookup('localhost', {}, (err) => resolve(err)));
  assert.equal(resolved?.code, 'STRATA_PRIVATE_ADDRESS');
  // As dgram calls it: the family alone.
  const byFamily = await new Promise<NodeJS.ErrnoException | null>((resolve) => publicLookup('localhost', 4, (err) => resolve(err)));
  assert.equal(byFamily?.code, 'STRATA_PRIVATE_ADDRESS');
  assert.ok(isPrivateAddress('::ffff:10.1.2.3') && isPrivateAddress('169.254.169.254') && isPrivateAddress('fd00::1') && !isPrivateAddress('93.184.216.34'));
  assert.ok(isPrivateHost('[::1]') && isPrivateHost('LOCALHOST') && !isPrivateHost('example.com'));
});

test('a webhook secret is sealed (AES-GCM): opened with its key only, a flipped byte refused', () => {
  const key = Buffer.alloc(32, 7);
  const sealed = seal(key, 'whsec_x');
  assert.ok(!sealed.includes('whsec_x'));
  assert.equal(unseal(key, sealed), 'whsec_x');
  assert.throws(() => unseal(Buffer.alloc(32, 8), sealed));
  const parts = sealed.split('.');
  parts[3] = parts[3]!.replace(/^./, (c) => (c === 'A' ? 'B' : 'A'));
  assert.throws(() => unseal(key, parts.join('.')));
});

test('a receiver that hangs cannot slow the guard: every event is evaluated and alerted while it hangs; its queue drops are counted', async () => {
  const rx = await Receiver.start(() => 'hang');
  const d = dispatcher({ queueSize: 5 });
  const target = new FakeTarget();
  target.alert = (a: Alert): void => { target.alerts.push(a); d.deliver(a); };
  const guard = new Guard({ ruleset: await loadDefaultRuleset(), target, audit: new MemoryAudit(), events: recordingBus().bus });
  const def = definition({ type: 'webhook', url: rx.url, timeoutMs: 60_000, retries: 0 });
  try {
    d.set([def]);
    await guard.start();
    // The first alert reaches the receiver, which never answers.
    guard.ingest(event('net.connect', { 'net.direction': 'out', 'net.dip': '10.0.0.9', 'net.dport': 6667 }, { instanceId: 'i0' }));
    await until(() => rx.received.length === 1, { what: 'the receiver to hold the first request' });
    for (let i = 1; i <= 200; i++) {
      guard.ingest(event('net.connect', { 'net.direction': 'out', 'net.dip': '10.0.0.9', 'net.dport': 6667 + i }, { instanceId: `i${i}` }));
    }
    await guard.drained();
    assert.equal(guard.stats().alerts, 201, 'every event alerted');
    assert.equal(target.alerts.length, 201);
    assert.equal(rx.received.length, 1, 'the receiver still holds the first request: nothing waited for it');
    const s = d.stats(def.id)!;
    assert.equal(s.delivered, 0);
    assert.equal(s.queued, 5, 'the queue is bounded');
    assert.equal(s.dropped, 195, 'the rest dropped and counted');
  } finally {
    await guard.stop();
    await d.close();
    await rx.close();
  }
});
