/**
 * Tenant ty attacks the alert outputs: to read tenant ta's alerts (its
 * outputs by name, evidence naming ta, ta's name taken again after ta is
 * gone) and to make the daemon send requests into the host for it (its API on
 * loopback, a metadata address, the many spellings of 127.0.0.1, IPv4 inside
 * IPv6, a redirect). Every attempt fails: 404 for ta's objects, 400 for
 * addresses into the host, nothing delivered where it does not belong.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Alert } from '../../../src/guard/actuator.js';
import { AlertDispatcher } from '../../../src/guard/outputs/dispatcher.js';
import { TestDaemon } from '../../support/harness.js';
import { tempDir } from '../../support/temp.js';
import { definition, Receiver, sampleAlert } from '../../guard/outputs-fixtures.js';

let d: TestDaemon;
let strict: TestDaemon;
let rxA: Receiver, rxY: Receiver;
let tokenA: string, tokenY: string;

before(async () => {
  [rxA, rxY] = await Promise.all([Receiver.start(), Receiver.start()]);
  // Receivers on loopback need the test-only allowance; `strict` is what a real daemon does.
  d = await TestDaemon.start({ outputs: { allowPrivateTargets: true } });
  strict = await TestDaemon.start();
  tokenA = await d.tenantWithUser('ta', 'tenant-admin');
  tokenY = await d.tenantWithUser('ty', 'tenant-admin');
});
after(async () => {
  await d.close();
  await strict.close();
  await Promise.all([rxA.close(), rxY.close()]);
});

const idOf = (t: TestDaemon, name: string): string => t.daemon.services.store.getTenantByName(name)!.id;
const raise = async (t: TestDaemon, tenantId: string | null, fields: Record<string, string | number> = {}): Promise<void> => {
  t.daemon.services.guard.ingest({
    time: Date.now(), tenantId, instanceId: null, level: 'host', kind: 'net.connect',
    fields: { 'net.direction': 'out', 'net.dip': '10.9.8.7', 'net.dport': 6667, 'proc.name': 'bot', ...fields },
  });
  await t.daemon.services.guard.drained();
  await t.daemon.services.outputs!.dispatcher.idle();
};
const received = (rx: Receiver): Alert[] => rx.received.map((r) => JSON.parse(r.body) as Alert);

test("ty cannot reach ta's outputs: create, list, show, test and delete under ta answer 404", async () => {
  assert.equal((await d.request('POST', '/v1/tenants/ta/outputs', { token: tokenA, body: { name: 'hook', type: 'webhook', url: rxA.url } })).status, 201);
  const tries: Array<[string, string, unknown?]> = [
    ['POST', '/v1/tenants/ta/outputs', { name: 'mine', type: 'webhook', url: rxY.url }],
    ['GET', '/v1/tenants/ta/outputs'], ['GET', '/v1/tenants/ta/outputs/hook'],
    ['POST', '/v1/tenants/ta/outputs/hook/test'], ['DELETE', '/v1/tenants/ta/outputs/hook'],
  ];
  for (const [method, path, body] of tries) {
    const r = await d.request(method, path, { token: tokenY, body });
    assert.equal(r.status, 404, `${method} ${path} → ${r.status}`);
  }
  assert.equal((await d.request('GET', '/v1/outputs', { token: tokenY })).status, 403, "the provider's outputs are not a tenant's");
  assert.equal((await d.request('POST', '/v1/outputs', { token: tokenY, body: { name: 'all', type: 'webhook', url: rxY.url } })).status, 403);
});

test("evidence naming ta does not route ty's alert to ta; ta's alerts never reach ty's output", async () => {
  assert.equal((await d.request('POST', '/v1/tenants/ty/outputs', { token: tokenY, body: { name: 'hook', type: 'webhook', url: rxY.url } })).status, 201);
  const ta = idOf(d, 'ta'), ty = idOf(d, 'ty');
  await raise(d, ty, { 'proc.name': ta, 'tenant.name': 'ta', 'net.dport': 6001 });
  await raise(d, ta, { 'net.dport': 6002 });
  assert.deepEqual(received(rxA).map((a) => a.fields['net.dport']), [6002]);
  assert.deepEqual(received(rxY).map((a) => a.fields['net.dport']), [6001]);
});

test("ta's name taken again: the new tenant's output never receives the old ta's alerts (identity, not name)", async () => {
  const oldTa = idOf(d, 'ta');
  assert.equal((await d.request('DELETE', '/v1/tenants/ta')).status, 204);
  const newToken = await d.tenantWithUser('ta', 'tenant-admin');
  assert.notEqual(idOf(d, 'ta'), oldTa);
  assert.deepEqual((await d.request('GET', '/v1/tenants/ta/outputs', { token: newToken })).body.items, [], "the old ta's outputs went with it");
  const before = rxA.received.length;
  assert.equal((await d.request('POST', '/v1/tenants/ta/outputs', { token: newToken, body: { name: 'hook', type: 'webhook', url: rxA.url } })).status, 201);
  await raise(d, oldTa, { 'net.dport': 6003 }); // a late alert about the old ta
  await raise(d, idOf(d, 'ta'), { 'net.dport': 6004 });
  assert.deepEqual(received(rxA).slice(before).map((a) => a.fields['net.dport']), [6004]);
});

test('ty cannot point an output into the host: every spelling of loopback, private and metadata addresses, IPv4 inside IPv6, is a 400', async () => {
  const ty = await strict.tenantWithUser('ty', 'tenant-admin');
  const api = new URL(strict.url);
  const urls = [
    `http://127.0.0.1:${api.port}/v1/tenants`, `http://localhost:${api.port}/`, `http://LOCALHOST./`, 'http://127.1/', 'http://2130706433/', 'http://0x7f.0.0.1/',
    'http://0177.0.0.1/', 'http://0.0.0.0/', 'http://[::1]/', 'http://[::ffff:127.0.0.1]/', 'http://[::ffff:7f00:1]/', 'http://[2002:7f00:1::]/', 'http://[64:ff9b::a00:1]/',
    'http://169.254.169.254/latest/meta-data/', 'http://10.0.0.1/', 'http://172.16.0.1/', 'http://192.168.1.1/', 'http://100.64.0.1/', 'http://[fd00::1]/', 'http://[fe80::1]/',
    'http://x.localhost/',
  ];
  for (const url of urls) {
    const r = await strict.request('POST', '/v1/tenants/ty/outputs', { token: ty, body: { name: 'x', type: 'webhook', url } });
    assert.equal(r.status, 400, `${url} → ${r.status} ${JSON.stringify(r.body)}`);
  }
  for (const host of ['127.1', '2130706433', '::1', '[::1]', '169.254.169.254', 'localhost', '10.1.2.3']) {
    const r = await strict.request('POST', '/v1/tenants/ty/outputs', { token: ty, body: { name: 'x', type: 'syslog', host, transport: 'tcp' } });
    assert.equal(r.status, 400, `${host} → ${r.status} ${JSON.stringify(r.body)}`);
  }
  assert.equal((await strict.request('POST', '/v1/tenants/ty/outputs', { token: ty, body: { name: 'f', type: 'file', path: 'x.jsonl' } })).status, 400, 'no files for tenants');
});

test('a redirect is never followed: a receiver answering 302 to somewhere else sends nothing there', async () => {
  const elsewhere = await Receiver.start();
  const redirecting = await Receiver.start();
  const target = elsewhere.url;
  redirecting.server.removeAllListeners('request');
  redirecting.server.on('request', (_req, res) => { res.writeHead(302, { location: target }).end(); });
  const disp = new AlertDispatcher({ fileRoot: tempDir('outputs'), backoffMs: 5, allowPrivateTargets: true });
  try {
    const def = definition({ type: 'webhook', url: redirecting.url, retries: 2 });
    disp.set([def]);
    disp.deliver(sampleAlert());
    await disp.idle();
    assert.equal(elsewhere.received.length, 0);
    assert.equal(disp.stats(def.id)!.lastError, 'HTTP 302');
    assert.equal(disp.stats(def.id)!.deadLetters, 1);
    assert.equal(disp.stats(def.id)!.failedAttempts, 1, 'a redirect is the receiver\'s final word, not retried');
  } finally {
    await disp.close();
    await Promise.all([elsewhere.close(), redirecting.close()]);
  }
});
