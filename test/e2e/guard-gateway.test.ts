/**
 * The gateway interceptor end to end, one firing case and one benign case per
 * kind of refusal: request-smuggling attempts, malformed requests, a site's
 * rate limit and the per-client connection limit are counted by the gateway's
 * workers and reach the guard in batched counts (not per request); failed API
 * authentications feed the brute-force rule. A few of each — a broken client,
 * a mistyped token, a page load's burst, connections up to the limit — raise
 * nothing; past each rule's threshold, its alert names the client.
 */
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Guard } from '../../src/guard/guard.js';
import { GatewayInterceptor } from '../../src/guard/interceptors/gateway.js';
import { loadDefaultRuleset } from '../../src/guard/rules.js';
import { request, startBackend, upstream, withGateway } from '../gateway/helpers.js';
import { FakeTarget, MemoryAudit, recordingBus } from '../guard/fakes.js';
import { TestDaemon } from '../support/harness.js';
import { until } from '../support/until.js';

/** How long this file's checks wait, and how often they look. */
const WAIT = { ms: 5000 };

let d: TestDaemon;
let port = 0;

before(async () => {
  d = await TestDaemon.start({ gateway: { listeners: [{ id: 'http', address: '127.0.0.1', port: 0, protocol: 'http' }], options: { workers: 1, maxConnectionsPerIp: 4 } } });
  port = d.daemon.services.gateway!.addresses()[0]!.port;
});
after(() => d.close());

const SMUGGLE = 'POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: a.test\r\n\r\n';
/** A request line no parser accepts (a space in the method): malformed, not a framing conflict. */
const MALFORMED = 'G@T / HTTP/1.1\r\nHost: a.test\r\n\r\n';

/** Sends raw bytes and resolves with the answer's status line (or '' when the gateway hung up). */
function raw(bytes: string): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1', () => s.write(bytes));
    let got = '';
    s.on('data', (c) => { got += c.toString('latin1'); });
    s.on('close', () => resolve(got.split('\r\n')[0] ?? ''));
    s.on('error', () => resolve(''));
    s.setTimeout(2000, () => s.destroy());
  });
}

const gatewayAlerts = (): string[] => d.daemon.services.guard.alerts({}).filter((a) => a.level === 'gateway').map((a) => `${a.rule}: ${a.output}`);

// First, so that no threshold of the cases below is already counting.
test('benign: a few refusals of each kind, and connections up to the limit, raise no alert', async () => {
  const guard = d.daemon.services.guard;
  const received = guard.stats().received;
  for (let i = 0; i < 10; i++) assert.match(await raw('GET / HTTP/1.1\r\nHost: nobody.test\r\nConnection: close\r\n\r\n'), /^HTTP\/1\.1 404/);
  for (let i = 0; i < 3; i++) assert.match(await raw(SMUGGLE), /^HTTP\/1\.1 400/);
  for (let i = 0; i < 5; i++) assert.match(await raw(MALFORMED), /^HTTP\/1\.1 400/);
  for (let i = 0; i < 5; i++) assert.equal((await d.request('GET', '/v1/tenants', { token: `strata_typo${i}.nope` })).status, 401);
  const open = await Promise.all(Array.from({ length: 4 }, () => new Promise<Socket>((resolve) => { const s = connect(port, '127.0.0.1', () => resolve(s)); })));
  await sleep(200);
  for (const s of open) s.destroy();
  await sleep(1200); // the workers' batched counts
  await guard.drained();
  assert.ok(guard.stats().received - received >= 3 + 5 + 5, `the guard saw the refusals (${guard.stats().received - received} events)`);
  assert.deepEqual(gatewayAlerts(), []);
});

test('smuggling attempts are refused by the gateway and alerted by the guard', async () => {
  for (let i = 0; i < 20; i++) assert.match(await raw(SMUGGLE), /^HTTP\/1\.1 400/);
  const alert = await until(() => d.daemon.services.guard.alerts({}).find((a) => a.rule === 'Request smuggling attempts'), WAIT);
  assert.equal(alert.fields['client.ip'], '127.0.0.1');
  assert.equal(alert.level, 'gateway');
});

test('connections over the per-client limit are counted and reach the guard', async () => {
  const open: Socket[] = [];
  for (let i = 0; i < 140; i++) open.push(connect(port, '127.0.0.1'));
  const alert = await until(() => d.daemon.services.guard.alerts({}).find((a) => a.rule === 'Connection flood'), WAIT);
  for (const s of open) s.destroy();
  assert.equal(alert.fields['gateway.reason'], 'conn_limit');
});

test('failed API authentications feed the brute-force rule', async () => {
  for (let i = 0; i < 21; i++) assert.equal((await d.request('GET', '/v1/tenants', { token: `strata_bad${i}.nope` })).status, 401);
  const alert = await until(() => d.daemon.services.guard.alerts({}).find((a) => a.rule === 'Gateway authentication brute force'), WAIT);
  assert.equal(alert.fields['gateway.reason'], 'auth');
  assert.equal(alert.fields['http.path'], '/v1/tenants');
});

test('a flood of malformed requests is alerted, naming the client', async () => {
  for (let i = 0; i < 55; i++) assert.match(await raw(MALFORMED), /^HTTP\/1\.1 400/);
  const alert = await until(() => d.daemon.services.guard.alerts({}).find((a) => a.rule === 'Malformed request flood'), WAIT);
  assert.equal(alert.fields['client.ip'], '127.0.0.1');
  assert.equal(alert.fields['gateway.reason'], 'malformed');
});

// Site rate limits are the gateway's own configuration (no API field yet): a gateway of its own, with a guard attached as the daemon attaches it.
test('rate limit: a page-load burst raises nothing; a client that keeps going past the limit is alerted', async () => {
  const backend = await startBackend('shop');
  const guard = new Guard({ ruleset: await loadDefaultRuleset(), target: new FakeTarget(), audit: new MemoryAudit(), events: recordingBus().bus });
  const refusals = new GatewayInterceptor();
  await guard.addInterceptor(refusals);
  await guard.start();
  try {
    await withGateway({
      listeners: [{ id: 'web', address: '127.0.0.1', port: 0, protocol: 'http' }],
      sites: [{ hostname: 'shop.test', tenantId: 'shop', target: upstream(backend), limits: { ratePerSecond: 5 } }],
    }, {}, async (gw, gwPort) => {
      refusals.attach(gw);
      const burst = await Promise.all(Array.from({ length: 30 }, () => request(gwPort(), { host: 'shop.test', localAddress: '127.0.0.2' })));
      assert.ok(burst.some((r) => r.status === 429), 'the burst met the limit');
      await sleep(1200);
      await guard.drained();
      assert.ok(guard.stats().received > 0, 'the 429s reached the guard');
      assert.deepEqual(guard.alerts({}).map((a) => a.rule), []);

      let limited = 0;
      for (let i = 0; i < 150; i++) if ((await request(gwPort(), { host: 'shop.test', localAddress: '127.0.0.3' })).status === 429) limited++;
      assert.ok(limited >= 100, `${limited} answered 429`);
      const alert = await until(() => guard.alerts({}).find((a) => a.rule === 'Gateway rate limit flood'), WAIT);
      assert.equal(alert.fields['client.ip'], '127.0.0.3');
      assert.equal(alert.fields['gateway.site'], 'shop.test');
      assert.equal(alert.tenantId, 'shop');
      refusals.attach(null);
    });
  } finally {
    await guard.stop();
    await backend.close();
  }
});
