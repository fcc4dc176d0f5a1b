/**
 * Request smuggling and malformed requests, as raw bytes. Every case is sent
 * to tenant A's site (alpha.test) with a request for tenant B's site
 * (beta.test) hidden behind ambiguous framing; the gateway must answer 4xx
 * (400 unless noted) and close, and neither the malformed request nor the
 * hidden one may reach a backend whole (a body found broken mid-stream is
 * cut off, and the backend sees an aborted request). Most cases are rejected
 * by llhttp in strict mode (Node's parser, which the gateway drives
 * directly); the rest by the gateway's own checks (Host, target, upgrade,
 * size).
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { rawExchange, request, startBackend, statuses, upstream, withGateway, type Backend } from './helpers.js';

const SMUGGLED = 'GET /smuggled HTTP/1.1\r\nHost: beta.test\r\n\r\n';
const smuggledLength = Buffer.byteLength(SMUGGLED);

interface Case {
  name: string;
  bytes: string;
  /** The status the gateway answers with (before closing); 400 unless noted. */
  status?: number;
}

const head = (lines: string): string => `POST / HTTP/1.1\r\nHost: alpha.test\r\n${lines}\r\n`;

export const CORPUS: Case[] = [
  // Content-Length / Transfer-Encoding conflicts (CL.TE, TE.CL).
  { name: 'CL.TE: both headers, CL first', bytes: head(`Content-Length: 6\r\nTransfer-Encoding: chunked\r\n`) + `0\r\n\r\n${SMUGGLED}` },
  { name: 'TE.CL: both headers, TE first', bytes: head(`Transfer-Encoding: chunked\r\nContent-Length: ${smuggledLength + 5}\r\n`) + `0\r\n\r\n${SMUGGLED}` },
  { name: 'duplicate Content-Length, differing', bytes: head(`Content-Length: 0\r\nContent-Length: ${smuggledLength}\r\n`) + SMUGGLED },
  { name: 'duplicate Content-Length, equal', bytes: head(`Content-Length: ${smuggledLength}\r\nContent-Length: ${smuggledLength}\r\n`) + SMUGGLED },
  { name: 'Content-Length as a list', bytes: head(`Content-Length: 0, ${smuggledLength}\r\n`) + SMUGGLED },
  { name: 'negative Content-Length', bytes: head('Content-Length: -1\r\n') + SMUGGLED },
  { name: 'Content-Length with a plus sign', bytes: head(`Content-Length: +${smuggledLength}\r\n`) + SMUGGLED },
  { name: 'Content-Length with inner space', bytes: head('Content-Length: 1 0\r\n') + SMUGGLED },
  { name: 'Content-Length in hex', bytes: head('Content-Length: 0x2a\r\n') + SMUGGLED },
  { name: 'Content-Length overflow', bytes: head('Content-Length: 99999999999999999999999\r\n') + SMUGGLED },
  // Obfuscated Transfer-Encoding.
  { name: 'TE folded onto the next line (obs-fold)', bytes: head('Transfer-Encoding:\r\n chunked\r\n') + `0\r\n\r\n${SMUGGLED}` },
  { name: 'TE with space before the colon', bytes: head('Transfer-Encoding : chunked\r\n') + `0\r\n\r\n${SMUGGLED}` },
  { name: 'TE xchunked', bytes: head('Transfer-Encoding: xchunked\r\n') + `0\r\n\r\n${SMUGGLED}` },
  { name: 'TE chunked then identity', bytes: head('Transfer-Encoding: chunked, identity\r\n') + `0\r\n\r\n${SMUGGLED}` },
  { name: 'TE gzip without chunked', bytes: head('Transfer-Encoding: gzip\r\n') + SMUGGLED },
  { name: 'TE header twice', bytes: head('Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n') + `0\r\n\r\n${SMUGGLED}` },
  { name: 'TE with a vertical tab', bytes: head('Transfer-Encoding:\x0bchunked\r\n') + `0\r\n\r\n${SMUGGLED}` },
  // Line endings and forbidden characters.
  { name: 'bare LF line endings', bytes: `POST / HTTP/1.1\nHost: alpha.test\nContent-Length: ${smuggledLength}\n\n${SMUGGLED}` },
  { name: 'bare LF inside the head', bytes: `GET / HTTP/1.1\r\nHost: alpha.test\nX: y\r\n\r\n${SMUGGLED}` },
  { name: 'bare CR inside a header value', bytes: head('X-A: a\rTransfer-Encoding: chunked\r\n') + `0\r\n\r\n${SMUGGLED}` },
  { name: 'NUL in a header value', bytes: head('X-A: a\0b\r\n') + SMUGGLED },
  { name: 'DEL in a header value', bytes: head('X-A: a\x7fb\r\n') + SMUGGLED },
  { name: 'NUL in a header name', bytes: head('X\0A: b\r\n') + SMUGGLED },
  { name: 'space inside a header name', bytes: head('Content Length: 5\r\n') + SMUGGLED },
  { name: 'obs-fold on an ordinary header', bytes: head('X-A: a\r\n b\r\n') + SMUGGLED },
  // Chunked framing.
  { name: 'chunk size not hex', bytes: head('Transfer-Encoding: chunked\r\n') + `5g\r\nhello\r\n0\r\n\r\n${SMUGGLED}` },
  { name: 'chunk size overflow', bytes: head('Transfer-Encoding: chunked\r\n') + `ffffffffffffffffff\r\nx\r\n0\r\n\r\n${SMUGGLED}` },
  { name: 'chunk data longer than its size', bytes: head('Transfer-Encoding: chunked\r\n') + `5\r\nhelloXX\r\n0\r\n\r\n${SMUGGLED}` },
  { name: 'chunk extension with a bare LF', bytes: head('Transfer-Encoding: chunked\r\n') + `5;a\nb\r\nhello\r\n0\r\n\r\n${SMUGGLED}` },
  { name: 'space after the chunk size', bytes: head('Transfer-Encoding: chunked\r\n') + `5 \r\nhello\r\n0\r\n\r\n${SMUGGLED}` },
  { name: 'unterminated chunked body swallowing a request', bytes: head('Transfer-Encoding: chunked\r\n') + `1\r\nA\r\n${SMUGGLED}` },
  { name: 'chunk size with a bare LF', bytes: head('Transfer-Encoding: chunked\r\n') + `5\nhello\r\n0\r\n\r\n${SMUGGLED}` },
  // Request line.
  { name: 'unknown HTTP version', bytes: `GET / HTTP/3.0\r\nHost: alpha.test\r\n\r\n${SMUGGLED}` },
  { name: 'HTTP/0.9 simple request', bytes: `GET /\r\n\r\n${SMUGGLED}`, status: 505 },
  { name: 'space inside the target', bytes: `GET /a b HTTP/1.1\r\nHost: alpha.test\r\n\r\n${SMUGGLED}` },
  { name: 'invalid method characters', bytes: `G<T / HTTP/1.1\r\nHost: alpha.test\r\n\r\n${SMUGGLED}` },
  { name: 'target without a leading slash', bytes: `GET alpha HTTP/1.1\r\nHost: alpha.test\r\n\r\n${SMUGGLED}` },
  // Routing confusion: the gateway's own checks.
  { name: 'two Host headers', bytes: `GET / HTTP/1.1\r\nHost: alpha.test\r\nHost: beta.test\r\n\r\n${SMUGGLED}` },
  { name: 'Host with a path', bytes: `GET / HTTP/1.1\r\nHost: alpha.test/../beta.test\r\n\r\n${SMUGGLED}` },
  { name: 'Host with userinfo', bytes: `GET / HTTP/1.1\r\nHost: beta.test@alpha.test\r\n\r\n${SMUGGLED}` },
  { name: 'absolute-form with userinfo', bytes: `GET http://beta.test@alpha.test/ HTTP/1.1\r\nHost: alpha.test\r\n\r\n${SMUGGLED}` },
  { name: 'HTTP/1.1 without Host', bytes: `GET / HTTP/1.1\r\n\r\n${SMUGGLED}` },
  { name: 'CONNECT tunnel request', bytes: `CONNECT beta.test:80 HTTP/1.1\r\nHost: beta.test:80\r\n\r\n${SMUGGLED}`, status: 405 },
  { name: 'WebSocket upgrade carrying a body', bytes: `GET / HTTP/1.1\r\nHost: alpha.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: ${smuggledLength}\r\n\r\n${SMUGGLED}` },
  { name: 'oversized head', bytes: `GET / HTTP/1.1\r\nHost: alpha.test\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n${SMUGGLED}`, status: 431 },
  { name: 'too many header lines', bytes: `GET / HTTP/1.1\r\nHost: alpha.test\r\n${Array.from({ length: 120 }, (_, i) => `X-${i}: v\r\n`).join('')}\r\n${SMUGGLED}`, status: 431 },
];

let alpha: Backend;
let beta: Backend;
before(async () => {
  [alpha, beta] = await Promise.all([startBackend('alpha'), startBackend('beta')]);
});
after(async () => {
  await Promise.all([alpha.close(), beta.close()]);
});

test(`smuggling corpus (${CORPUS.length} cases): 4xx or close, and the hidden request reaches no backend`, async () => {
  assert.ok(CORPUS.length >= 30);
  await withGateway({
    listeners: [{ id: 'web', address: '127.0.0.1', port: 0, protocol: 'http' }],
    sites: [
      { hostname: 'alpha.test', tenantId: 'tenant-a', target: upstream(alpha) },
      { hostname: 'beta.test', tenantId: 'tenant-b', target: upstream(beta) },
    ],
  }, { workers: 2 }, async (_gw, port) => {
    for (const c of CORPUS) {
      const before = { alpha: alpha.seen.length, beta: beta.seen.length };
      const r = await rawExchange(port(), [c.bytes], { idleMs: 300 });
      assert.deepEqual(statuses(r.text), [c.status ?? 400], `${c.name}: ${r.text.slice(0, 80)}`);
      assert.ok(r.closed, `${c.name}: the connection is closed`);
      assert.equal(beta.seen.length, before.beta, `${c.name}: tenant B's backend was reached`);
      assert.equal(alpha.seen.length, before.alpha, `${c.name}: tenant A's backend got a whole malformed request`);
    }
    // Nothing was desynchronised: both sites answer normally afterwards.
    assert.equal((await request(port(), { host: 'alpha.test' })).json().backend, 'alpha');
    assert.equal((await request(port(), { host: 'beta.test' })).json().backend, 'beta');
  });
});

test('a rejected request never lets a follow-up on its connection through', async () => {
  await withGateway({
    listeners: [{ id: 'web', address: '127.0.0.1', port: 0, protocol: 'http' }],
    sites: [
      { hostname: 'alpha.test', tenantId: 'tenant-a', target: upstream(alpha) },
      { hostname: 'beta.test', tenantId: 'tenant-b', target: upstream(beta) },
    ],
  }, {}, async (_gw, port) => {
    const seenBefore = beta.seen.length;
    // A valid request, then a malformed one, then one for tenant B, each its own write.
    const r = await rawExchange(port(), [
      'GET /first HTTP/1.1\r\nHost: alpha.test\r\n\r\n',
      head('Content-Length: 1\r\nTransfer-Encoding: chunked\r\n') + '0\r\n\r\n',
      SMUGGLED,
    ], { idleMs: 300 });
    assert.deepEqual(statuses(r.text), [200, 400]);
    assert.ok(r.closed);
    assert.equal(beta.seen.length, seenBefore);
  });
});
