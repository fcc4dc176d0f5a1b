/**
 * The gateway interceptor end to end: request-smuggling attempts refused by the
 * gateway's workers and per-client connection-limit hits reach the guard (in
 * the workers' batched counts, not per request), and failed API
 * authentications feed the brute-force rule.
 */
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { TestDaemon } from '../support/harness.js';

let d: TestDaemon;
let port = 0;

before(async () => {
  d = await TestDaemon.start({ gateway: { listeners: [{ id: 'http', address: '127.0.0.1', port: 0, protocol: 'http' }], options: { workers: 1, maxConnectionsPerIp: 4 } } });
  port = d.daemon.services.gateway!.addresses()[0]!.port;
});
after(() => d.close());

async function until<T>(what: () => T | undefined, ms = 5000): Promise<T> {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(20)) {
    const v = what();
    if (v) return v;
  }
  throw new Error('timed out');
}

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

test('smuggling attempts are refused by the gateway and alerted by the guard', async () => {
  const smuggle = 'POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: a.test\r\n\r\n';
  for (let i = 0; i < 20; i++) assert.match(await raw(smuggle), /^HTTP\/1\.1 400/);
  const alert = await until(() => d.daemon.services.guard.alerts({}).find((a) => a.rule === 'Request smuggling attempts'));
  assert.equal(alert.fields['client.ip'], '127.0.0.1');
  assert.equal(alert.level, 'gateway');
});

test('connections over the per-client limit are counted and reach the guard', async () => {
  const open: Socket[] = [];
  for (let i = 0; i < 140; i++) open.push(connect(port, '127.0.0.1'));
  const alert = await until(() => d.daemon.services.guard.alerts({}).find((a) => a.rule === 'Connection flood'));
  for (const s of open) s.destroy();
  assert.equal(alert.fields['gateway.reason'], 'conn_limit');
});

test('failed API authentications feed the brute-force rule', async () => {
  for (let i = 0; i < 21; i++) assert.equal((await d.request('GET', '/v1/tenants', { token: `strata_bad${i}.nope` })).status, 401);
  const alert = await until(() => d.daemon.services.guard.alerts({}).find((a) => a.rule === 'Gateway authentication brute force'));
  assert.equal(alert.fields['gateway.reason'], 'auth');
  assert.equal(alert.fields['http.path'], '/v1/tenants');
});
