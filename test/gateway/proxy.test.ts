import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { rawExchange, request, startBackend, statuses, upstream, withGateway, type Backend } from './helpers.js';

let alpha: Backend;
before(async () => {
  alpha = await startBackend('alpha');
});
after(async () => {
  await alpha.close();
});

const listeners = [{ id: 'web', address: '127.0.0.1', port: 0, protocol: 'http' as const }];

test('forwarding headers are set, and replaced unless the client is a trusted proxy', async () => {
  await withGateway({ listeners, sites: [{ hostname: 'alpha.test', tenantId: 't', target: upstream(alpha) }] }, {}, async (gw, port) => {
    const spoofed = { 'x-forwarded-for': '6.6.6.6', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'evil.test', forwarded: 'for=6.6.6.6' };
    let seen = (await request(port(), { host: 'alpha.test:8080', headers: spoofed })).json().headers;
    assert.equal(seen['x-forwarded-for'], '127.0.0.1');
    assert.equal(seen['x-forwarded-proto'], 'http');
    assert.equal(seen['x-forwarded-host'], 'alpha.test:8080');
    assert.equal(seen.forwarded, 'for=127.0.0.1;host="alpha.test:8080";proto=http');
    assert.equal(seen.host, 'alpha.test:8080', 'Host passes through unchanged');

    await gw.update({ listeners, sites: [{ hostname: 'alpha.test', tenantId: 't', target: upstream(alpha) }], trustedProxies: ['127.0.0.1'] });
    seen = (await request(port(), { host: 'alpha.test', headers: spoofed })).json().headers;
    assert.equal(seen['x-forwarded-for'], '6.6.6.6, 127.0.0.1');
    assert.equal(seen['x-forwarded-proto'], 'https');
    assert.equal(seen['x-forwarded-host'], 'evil.test');
    assert.equal(seen.forwarded, 'for=6.6.6.6, for=127.0.0.1;host="alpha.test";proto=http');
  });
});

test('hop-by-hop headers are stripped both ways; end-to-end ones pass', async () => {
  await withGateway({ listeners, sites: [{ hostname: 'alpha.test', tenantId: 't', target: upstream(alpha) }] }, {}, async (_gw, port) => {
    const r = await rawExchange(port(), [
      'GET /hop HTTP/1.1\r\nHost: alpha.test\r\nConnection: keep-alive, X-Drop-Me\r\nX-Drop-Me: 1\r\nKeep-Alive: timeout=9\r\n',
      'TE: trailers\r\nTrailer: x\r\nUpgrade: h2c\r\nProxy-Authorization: Basic Zm9v\r\nProxy-Connection: keep-alive\r\nX-Keep: yes\r\n\r\n',
    ]);
    const [head, body] = r.text.split('\r\n\r\n');
    const seen = JSON.parse(body!).headers as Record<string, string>;
    for (const gone of ['x-drop-me', 'keep-alive', 'te', 'trailer', 'upgrade', 'proxy-authorization', 'proxy-connection']) assert.equal(seen[gone], undefined, gone);
    assert.equal(seen['x-keep'], 'yes');
    assert.ok(seen.connection === undefined || seen.connection === 'keep-alive', 'no client Connection tokens reach the backend');
    const lower = head!.toLowerCase();
    for (const gone of ['x-secret-hop', 'keep-alive:', 'proxy-authenticate', 'upgrade:']) assert.ok(!lower.includes(gone), gone);
    assert.ok(lower.includes('x-end-to-end: kept'));
  });
});

test('request bodies: Content-Length and chunked both arrive whole; chunked responses are re-framed', async () => {
  await withGateway({ listeners, sites: [{ hostname: 'alpha.test', tenantId: 't', target: upstream(alpha) }] }, {}, async (_gw, port) => {
    const big = 'x'.repeat(300_000);
    const r1 = await request(port(), { host: 'alpha.test', method: 'POST', body: big, headers: { 'content-type': 'text/plain' } });
    assert.equal(r1.json().body.length, big.length);
    const raw = await rawExchange(port(), 'POST /chunked HTTP/1.1\r\nHost: alpha.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n');
    assert.match(raw.text, /Transfer-Encoding: chunked/i);
    assert.match(raw.text, /"body":"hello world"/);
    assert.equal(alpha.seen.at(-1)!.headers['transfer-encoding'], 'chunked');
    assert.equal(alpha.seen.at(-1)!.headers['content-length'], undefined);
  });
});

test('HEAD answers carry no body, and keep-alive goes on after them', async () => {
  await withGateway({ listeners, sites: [{ hostname: 'alpha.test', tenantId: 't', target: upstream(alpha) }] }, {}, async (_gw, port) => {
    const r = await rawExchange(port(), 'HEAD / HTTP/1.1\r\nHost: alpha.test\r\n\r\nGET /second HTTP/1.1\r\nHost: alpha.test\r\n\r\n');
    assert.deepEqual(statuses(r.text), [200, 200]);
    assert.match(r.text, /"url":"\/second"/);
    assert.equal(r.text.match(/"backend"/g)!.length, 1);
  });
});

test('pipelined requests are answered in order on one connection', async () => {
  await withGateway({ listeners, sites: [{ hostname: 'alpha.test', tenantId: 't', target: upstream(alpha) }] }, {}, async (_gw, port) => {
    const reqs = [1, 2, 3, 4, 5].map((i) => `GET /${i === 2 ? 'slow?ms=50&n=2' : `n${i}`} HTTP/1.1\r\nHost: alpha.test\r\n\r\n`).join('');
    const r = await rawExchange(port(), reqs);
    const urls = [...r.text.matchAll(/"url":"([^"]+)"/g)].map((m) => m[1]);
    assert.deepEqual(urls, ['/n1', '/slow?ms=50&n=2', '/n3', '/n4', '/n5']);
  });
});

test('502 when the backend refuses, 504 when it does not answer in time', async () => {
  const closed = net.createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  const deadPort = (closed.address() as net.AddressInfo).port;
  await new Promise<void>((r) => closed.close(() => r()));
  await withGateway({
    listeners,
    sites: [
      { hostname: 'dead.test', tenantId: 't', target: { kind: 'upstream', host: '127.0.0.1', port: deadPort } },
      { hostname: 'alpha.test', tenantId: 't', target: upstream(alpha) },
    ],
  }, { upstreamResponseTimeoutMs: 300 }, async (gw, port) => {
    const dead = await request(port(), { host: 'dead.test' });
    assert.equal(dead.status, 502);
    assert.match(dead.body, /502 Bad Gateway/);
    const start = Date.now();
    const slow = await request(port(), { host: 'alpha.test', path: '/slow?ms=2000' });
    assert.equal(slow.status, 504);
    assert.ok(Date.now() - start < 1500, 'answered at the response timeout');
    assert.equal((await request(port(), { host: 'alpha.test' })).status, 200, 'the site still works');
    // Each failure is counted against its site, by kind; the answered request is not.
    const text = await (await gw.metrics()).metrics();
    assert.match(text, /^strata_gateway_upstream_errors_total\{site="dead.test",tenant="t",kind="error"\} 1$/m);
    assert.match(text, /^strata_gateway_upstream_errors_total\{site="alpha.test",tenant="t",kind="timeout"\} 1$/m);
    assert.match(text, /^strata_gateway_upstream_errors_total\{site="alpha.test",tenant="t",kind="error"\} 0$/m);
    assert.match(text, /^strata_gateway_connections_active \d+$/m);
  });
});

test('a pooled connection the backend drops as it is reused is retried once for a GET, never for a POST', async () => {
  // Each connection answers its first request and drops the second unanswered: the keep-alive race.
  const served = new WeakMap<net.Socket, number>();
  const racy = http.createServer((req, res) => {
    const n = (served.get(req.socket) ?? 0) + 1;
    served.set(req.socket, n);
    if (n > 1) {
      req.socket.destroy();
      return;
    }
    res.writeHead(200, { 'content-length': '2' });
    res.end('ok');
  });
  await new Promise<void>((r) => racy.listen(0, '127.0.0.1', r));
  const racyPort = (racy.address() as net.AddressInfo).port;
  try {
    await withGateway({ listeners, sites: [{ hostname: 'r.test', tenantId: 't', target: { kind: 'upstream', host: '127.0.0.1', port: racyPort } }] }, {}, async (gw, port) => {
      const errors = async (): Promise<string | undefined> => /^strata_gateway_upstream_errors_total\{site="r.test",tenant="t",kind="error"\} (\d+)$/m.exec(await (await gw.metrics()).metrics())?.[1];
      for (let i = 0; i < 4; i++) assert.equal((await request(port(), { host: 'r.test' })).status, 200, `GET ${i}`);
      assert.equal(await errors(), '0', 'a GET retried on a fresh connection is no upstream error');
      assert.equal((await request(port(), { host: 'r.test', method: 'POST', body: 'x' })).status, 502, 'a POST may have had effects: not resent');
      assert.equal(await errors(), '1', 'the POST that was not resent is');
    });
  } finally {
    racy.closeAllConnections();
    await new Promise<void>((r) => racy.close(() => r()));
  }
});

test('HTTP/1.0 clients get close-delimited bodies when the length is unknown', async () => {
  await withGateway({ listeners, sites: [{ hostname: 'alpha.test', tenantId: 't', target: upstream(alpha) }] }, {}, async (_gw, port) => {
    const r = await rawExchange(port(), 'GET /chunked HTTP/1.0\r\nHost: alpha.test\r\n\r\n');
    assert.ok(r.closed);
    assert.doesNotMatch(r.text, /Transfer-Encoding/i);
    assert.match(r.text, /Connection: close/i);
    assert.match(r.text, /"backend":"alpha"/);
  });
});

test('Expect: 100-continue: the backend decides; a final answer before the body closes the connection', async () => {
  await withGateway({ listeners, sites: [{ hostname: 'alpha.test', tenantId: 't', target: upstream(alpha) }] }, {}, async (_gw, port) => {
    const socket = net.connect(port(), '127.0.0.1');
    let text = '';
    socket.on('data', (d) => { text += d.toString('latin1'); });
    socket.write('POST /upload HTTP/1.1\r\nHost: alpha.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n');
    for (let i = 0; i < 50 && !text.includes('100 Continue'); i++) await new Promise((r) => setTimeout(r, 20));
    assert.match(text, /^HTTP\/1\.1 100 Continue\r\n\r\n/);
    socket.write('hello');
    for (let i = 0; i < 50 && !text.includes('"body":"hello"'); i++) await new Promise((r) => setTimeout(r, 20));
    assert.match(text, /HTTP\/1\.1 200 OK/);
    socket.destroy();
    // No site: the 404 comes before the body, so the body's bytes can never be read as a request.
    const early = await rawExchange(port(), 'POST / HTTP/1.1\r\nHost: nobody.test\r\nContent-Length: 40\r\nExpect: 100-continue\r\n\r\n');
    assert.deepEqual(statuses(early.text), [404]);
    assert.match(early.text, /Connection: close/);
    assert.ok(early.closed);
  });
});

/** A raw TCP backend: `answer` gets each connection's first request bytes and writes whatever it likes. */
async function rawBackend(answer: (socket: net.Socket, request: string) => void): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
    socket.once('data', (d) => answer(socket, d.toString('latin1')));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => new Promise<void>((r) => { for (const s of sockets) s.destroy(); server.close(() => r()); }),
  };
}

test('misbehaving backends cannot crash a worker or desynchronise a connection', async () => {
  const ok = 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok';
  const behaviours: Record<string, (s: net.Socket) => void> = {
    // A second, unasked-for response right behind the first.
    extra: (s) => s.write(`${ok}HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged`),
    // A 101 to a request that asked for no upgrade.
    upgrade: (s) => s.write('HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\nraw'),
    // A response, then more bytes later, on what is by then an idle pooled connection.
    late: (s) => { s.write(ok); setTimeout(() => s.write('HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlate'), 50); },
    // Garbage instead of HTTP.
    garbage: (s) => s.end('SSH-2.0-OpenSSH\r\n'),
    // A head with a bare LF (response splitting attempt).
    split: (s) => s.end('HTTP/1.1 200 OK\r\nX: a\nSet-Cookie: evil=1\r\nContent-Length: 2\r\n\r\nok'),
    // Stalls in the middle of the body.
    stall: (s) => s.write('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf'),
  };
  const backends = await Promise.all(Object.values(behaviours).map((b) => rawBackend((s) => b(s))));
  const names = Object.keys(behaviours);
  try {
    await withGateway({
      listeners,
      sites: [
        ...names.map((name, i) => ({ hostname: `${name}.test`, tenantId: 't', target: { kind: 'upstream' as const, host: '127.0.0.1', port: backends[i]!.port } })),
        { hostname: 'alpha.test', tenantId: 't2', target: upstream(alpha) },
      ],
    }, { upstreamResponseTimeoutMs: 500 }, async (_gw, port) => {
      const extra = await rawExchange(port(), 'GET / HTTP/1.1\r\nHost: extra.test\r\n\r\nGET /2 HTTP/1.1\r\nHost: alpha.test\r\n\r\n');
      assert.doesNotMatch(extra.text, /forged/);
      assert.match(extra.text, /"backend":"alpha"/, 'the next request still gets its own answer');
      assert.equal((await request(port(), { host: 'upgrade.test' })).status, 502);
      assert.equal((await request(port(), { host: 'late.test' })).body, 'ok');
      await new Promise((r) => setTimeout(r, 100));
      assert.equal((await request(port(), { host: 'garbage.test' })).status, 502);
      assert.equal((await request(port(), { host: 'split.test' })).status, 502);
      const stall = await rawExchange(port(), 'GET / HTTP/1.1\r\nHost: stall.test\r\n\r\n', { idleMs: 3000 });
      assert.ok(stall.closed, 'a stalled body is cut off at the response timeout');
      assert.equal((await request(port(), { host: 'alpha.test' })).json().backend, 'alpha');
    });
  } finally {
    await Promise.all(backends.map((b) => b.close()));
  }
});

test('a slow-reading client gets a large response whole (backpressure, no timeout)', async () => {
  // The client stalls for 2.5 response timeouts; the timeout is long enough that a busy machine's pauses while the body goes up do not fire it.
  await withGateway({ listeners, sites: [{ hostname: 'alpha.test', tenantId: 't', target: upstream(alpha) }] }, { upstreamResponseTimeoutMs: 1_000 }, async (_gw, port) => {
    const body = 'z'.repeat(4_000_000);
    const socket = net.connect(port(), '127.0.0.1');
    socket.on('error', () => undefined); // a reset shows as a short answer below, not as an uncaught error
    socket.write(`POST / HTTP/1.1\r\nHost: alpha.test\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
    socket.pause();
    await new Promise((r) => setTimeout(r, 2_500));
    const chunks: Buffer[] = [];
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.resume();
    await new Promise((r) => socket.once('close', r));
    const text = Buffer.concat(chunks).toString('latin1');
    assert.match(text, /^HTTP\/1\.1 200 /);
    assert.ok(text.includes(body), 'the echoed body arrived whole');
  });
});
