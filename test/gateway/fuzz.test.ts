/**
 * Mutated requests (flipped bytes, cuts, injected CRLF / NUL / framing
 * headers, random write boundaries) against proxied, static and WebSocket
 * sites: no worker may crash (withGateway fails the test on a restart) and
 * the gateway must keep serving. Seeded, so a failure replays.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { rawExchange, request, startBackend, upstream, withGateway, type Backend } from './helpers.js';

let alpha: Backend;
before(async () => {
  alpha = await startBackend('alpha');
});
after(async () => {
  await alpha.close();
});

const SEEDS = [
  'GET / HTTP/1.1\r\nHost: a.test\r\n\r\n',
  'POST /x HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n\r\nhello',
  'POST /chunked HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
  'GET /ws HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: eA==\r\n\r\nabc',
  'GET /units.test.js HTTP/1.1\r\nHost: s.test\r\nRange: bytes=1-5\r\nAccept-Encoding: gzip\r\n\r\n',
  'HEAD / HTTP/1.0\r\n\r\n',
];
const INSERTS = ['\r\n', ':', ' ', '\0', '0\r\n\r\n', 'Content-Length: 3\r\n', 'Transfer-Encoding: chunked\r\n', '\n', 'Host: s.test\r\n', '%2e%2e/'];

function generator(seed: number): (n: number) => number {
  let s = seed;
  return (n) => {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    return s % n;
  };
}

function mutate(rnd: (n: number) => number): Buffer[] {
  let b = Buffer.from(SEEDS[rnd(SEEDS.length)]!.repeat(1 + rnd(3)), 'latin1');
  for (let i = 1 + rnd(4); i > 0; i--) {
    const at = rnd(b.length);
    switch (rnd(4)) {
      case 0: b[at] = rnd(256); break;
      case 1: b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + rnd(5))]); break;
      case 2: b = Buffer.concat([b.subarray(0, at), Buffer.from(INSERTS[rnd(INSERTS.length)]!, 'latin1'), b.subarray(at)]); break;
      default: b = b.subarray(0, at);
    }
  }
  const parts: Buffer[] = [];
  for (let i = 0; i < b.length;) {
    const len = 1 + rnd(b.length);
    parts.push(b.subarray(i, i + len));
    i += len;
  }
  return parts;
}

test('600 mutated requests crash no worker and leave the gateway serving', async () => {
  const here = fileURLToPath(new URL('.', import.meta.url));
  await withGateway({
    listeners: [{ id: 'web', address: '127.0.0.1', port: 0, protocol: 'http', defaultSite: 'a.test' }],
    sites: [
      { hostname: 'a.test', tenantId: 't', target: upstream(alpha) },
      { hostname: 's.test', tenantId: 't', target: { kind: 'static', root: here } },
    ],
  }, { workers: 2, headersTimeoutMs: 1000 }, async (_gw, port) => {
    const rnd = generator(20240601);
    for (let i = 0; i < 600; i += 20) {
      await Promise.all(Array.from({ length: 20 }, () => rawExchange(port(), mutate(rnd), { idleMs: 100 })));
    }
    assert.equal((await request(port(), { host: 'a.test' })).json().backend, 'alpha');
    assert.equal((await request(port(), { host: 's.test', path: '/fuzz.test.js' })).status, 200);
  });
});
