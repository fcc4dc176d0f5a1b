import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { rawExchange, request, startBackend, statuses, upstream, withGateway, type Backend } from './helpers.js';

let alpha: Backend;
before(async () => {
  alpha = await startBackend('alpha');
});
after(async () => {
  await alpha.close();
});

const listeners = [{ id: 'web', address: '127.0.0.1', port: 0, protocol: 'http' as const }];

test('bodies over the site limit answer 413, declared or chunked, and reach no backend', async () => {
  await withGateway({
    listeners,
    sites: [{ hostname: 'small.test', tenantId: 't', target: upstream(alpha), limits: { maxBodyBytes: 1000 } }],
  }, {}, async (_gw, port) => {
    const seen = alpha.seen.length;
    assert.equal((await request(port(), { host: 'small.test', method: 'POST', body: 'x'.repeat(1000) })).status, 200);
    const declared = await rawExchange(port(), `POST / HTTP/1.1\r\nHost: small.test\r\nContent-Length: 5000\r\n\r\n${'x'.repeat(5000)}`);
    assert.deepEqual(statuses(declared.text), [413]);
    assert.ok(declared.closed);
    const expect = await rawExchange(port(), 'POST / HTTP/1.1\r\nHost: small.test\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n');
    assert.deepEqual(statuses(expect.text), [413], 'refused before the body is sent');
    const chunked = await rawExchange(port(), `POST / HTTP/1.1\r\nHost: small.test\r\nTransfer-Encoding: chunked\r\n\r\n${'3e8\r\n' + 'y'.repeat(1000) + '\r\n'}${'a\r\n0123456789\r\n'}0\r\n\r\n`);
    assert.deepEqual(statuses(chunked.text), [413]);
    assert.equal(alpha.seen.length, seen + 1, 'only the request within the limit arrived');
  });
});

test('a site over its request rate gets 429 with Retry-After; others are unaffected', async () => {
  await withGateway({
    listeners,
    sites: [
      { hostname: 'limited.test', tenantId: 't', target: upstream(alpha), limits: { ratePerSecond: 5 } },
      { hostname: 'free.test', tenantId: 't2', target: upstream(alpha) },
    ],
  }, {}, async (_gw, port) => {
    const codes: number[] = [];
    for (let i = 0; i < 12; i++) codes.push((await request(port(), { host: 'limited.test' })).status);
    assert.ok(codes.filter((c) => c === 200).length <= 6, codes.join(','));
    const limited = await request(port(), { host: 'limited.test' });
    assert.equal(limited.status, 429);
    assert.equal(limited.headers['retry-after'], '1');
    assert.equal((await request(port(), { host: 'free.test' })).status, 200);
    await sleep(1100);
    assert.equal((await request(port(), { host: 'limited.test' })).status, 200, 'the bucket refills');
  });
});

test('connections per client IP are capped', async () => {
  await withGateway({ listeners, sites: [{ hostname: 'alpha.test', tenantId: 't', target: upstream(alpha) }] }, { maxConnectionsPerIp: 4 }, async (_gw, port) => {
    const sockets = await Promise.all(Array.from({ length: 4 }, () => new Promise<net.Socket>((resolve) => {
      const s = net.connect(port(), '127.0.0.1', () => resolve(s));
    })));
    await sleep(100);
    const refused = await rawExchange(port(), 'GET / HTTP/1.1\r\nHost: alpha.test\r\n\r\n');
    assert.equal(refused.text, '');
    assert.ok(refused.closed);
    // From another address the client is someone else.
    const other = await request(port(), { host: 'alpha.test', localAddress: '127.0.0.9' });
    assert.equal(other.status, 200);
    for (const s of sockets) s.destroy();
    await sleep(100);
    assert.equal((await request(port(), { host: 'alpha.test' })).status, 200, 'slots free up when connections close');
  });
});

test('slowloris: slow header senders time out (408) and never starve a normal client', async () => {
  await withGateway({ listeners, sites: [{ hostname: 'alpha.test', tenantId: 't', target: upstream(alpha) }] }, { headersTimeoutMs: 600, workers: 2, maxConnectionsPerIp: 1000 }, async (_gw, port) => {
    const slow: net.Socket[] = [];
    const answers: string[] = [];
    for (let i = 0; i < 200; i++) {
      const s = net.connect(port(), '127.0.0.1');
      s.on('error', () => {});
      s.on('data', (d) => answers.push(d.toString('latin1')));
      s.write('GET / HTTP/1.1\r\nHost: alpha.test\r\n');
      slow.push(s);
    }
    const drip = setInterval(() => { for (const s of slow) if (!s.destroyed) s.write('X-A: b\r\n'); }, 100);
    try {
      for (let i = 0; i < 10; i++) {
        const start = Date.now();
        assert.equal((await request(port(), { host: 'alpha.test' })).status, 200);
        assert.ok(Date.now() - start < 500, 'served promptly');
      }
      await sleep(1500);
      assert.ok(slow.every((s) => s.destroyed || s.readableEnded), 'every slow sender was cut off');
      assert.ok(answers.length > 0 && answers.every((a) => a.startsWith('HTTP/1.1 408')), 'they were told 408');
    } finally {
      clearInterval(drip);
      for (const s of slow) s.destroy();
    }
  });
});

test('idle keep-alive connections are closed after the keep-alive timeout', async () => {
  await withGateway({ listeners, sites: [{ hostname: 'alpha.test', tenantId: 't', target: upstream(alpha) }] }, { keepAliveTimeoutMs: 300 }, async (_gw, port) => {
    const start = Date.now();
    const r = await rawExchange(port(), 'GET / HTTP/1.1\r\nHost: alpha.test\r\n\r\n', { idleMs: 3000 });
    assert.deepEqual(statuses(r.text), [200]);
    assert.ok(r.closed);
    assert.ok(Date.now() - start < 2000);
  });
});
