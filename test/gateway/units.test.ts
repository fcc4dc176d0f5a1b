import assert from 'node:assert/strict';
import { test } from 'node:test';
import { StrataError } from '../../src/core/errors.js';
import { validateConfig } from '../../src/gateway/config.js';
import { normaliseHost, normaliseSiteHostname } from '../../src/gateway/host.js';
import { RESPONSE, createParser } from '../../src/gateway/http-parser.js';
import { redirectLocation } from '../../src/gateway/redirect.js';
import { parseSimpleHead } from '../../src/gateway/response-head.js';
import { RouteTable } from '../../src/gateway/routes.js';
import { parseRange, preferredEncoding } from '../../src/gateway/static.js';
import type { GatewayConfig, SiteRoute } from '../../src/gateway/types.js';

test('host names are normalised: case, port, trailing dot, IDNA, IP literals', () => {
  assert.deepEqual(normaliseHost('Example.COM'), { name: 'example.com', isIp: false });
  assert.deepEqual(normaliseHost('example.com.:8080'), { name: 'example.com', isIp: false });
  assert.deepEqual(normaliseHost('www.example.com'), { name: 'www.example.com', isIp: false });
  // 'bücher.example' as UTF-8 bytes arriving as latin1, the way llhttp hands it over.
  const utf8AsLatin1 = Buffer.from('Bücher.example', 'utf8').toString('latin1');
  assert.deepEqual(normaliseHost(utf8AsLatin1), { name: 'xn--bcher-kva.example', isIp: false });
  assert.deepEqual(normaliseHost('127.0.0.1:80'), { name: '127.0.0.1', isIp: true });
  assert.deepEqual(normaliseHost('[::1]:443'), { name: '[::1]', isIp: true });
  for (const bad of ['', ':80', 'a..b', 'a b', 'a/b', 'exa mple.com', 'a:port', '[::1', '[zz]', 'x'.repeat(64) + '.com', 'a@b', '\u00ff\u00fe']) {
    assert.equal(normaliseHost(bad), null, bad);
  }
  assert.equal(normaliseSiteHostname('*.Example.com'), '*.example.com');
  assert.equal(normaliseSiteHostname('*.127.0.0.1'), null);
});

const route = (hostname: string, tenantId = hostname, listeners?: string[]): SiteRoute => ({
  hostname, tenantId, listeners, target: { kind: 'redirect', to: 'https://x.example', status: 302 },
});

test('routes: exact first, then the longest wildcard, then the listener default', () => {
  const config: GatewayConfig = {
    listeners: [{ id: 'a', address: '127.0.0.1', port: 0, protocol: 'http', defaultSite: 'default.test' }, { id: 'b', address: '127.0.0.1', port: 0, protocol: 'http' }],
    sites: [route('example.com'), route('*.example.com'), route('*.b.example.com'), route('default.test', 'default', ['a']), route('only-b.test', 'b', ['b'])],
  };
  validateConfig(config);
  const table = RouteTable.compile(config.listeners, config.sites.map((route) => ({ route, site: route.tenantId })));
  const at = (listener: string, host: string) => table.lookup(listener, normaliseHost(host));
  assert.equal(at('a', 'example.com'), 'example.com');
  assert.equal(at('a', 'www.example.com'), '*.example.com');
  assert.equal(at('a', 'deep.www.example.com'), '*.example.com');
  assert.equal(at('a', 'x.b.example.com'), '*.b.example.com');
  assert.equal(at('a', 'b.example.com'), '*.example.com');
  assert.equal(at('a', 'unknown.test'), 'default');
  assert.equal(at('a', '127.0.0.1'), 'default');
  assert.equal(table.lookup('a', null), 'default');
  assert.equal(at('b', 'unknown.test'), null);
  assert.equal(at('b', 'only-b.test'), 'b');
  assert.equal(at('a', 'only-b.test'), 'default');
});

test('routes: exact lookup stays O(1) with 10,000 sites', () => {
  const sites = Array.from({ length: 10_000 }, (_, i) => route(`site${i}.example.net`));
  const config: GatewayConfig = { listeners: [{ id: 'a', address: '127.0.0.1', port: 0, protocol: 'http' }], sites };
  validateConfig(config);
  const table = RouteTable.compile(config.listeners, sites.map((route) => ({ route, site: route.hostname })));
  const host = normaliseHost('site9999.example.net');
  const start = performance.now();
  for (let i = 0; i < 100_000; i++) table.lookup('a', host);
  assert.ok(performance.now() - start < 200, 'lookups are map hits');
  assert.equal(table.lookup('a', host), 'site9999.example.net');
});

test('routes: a patched table answers like one compiled from scratch, and the old one is untouched', () => {
  const listeners = [{ id: 'a', address: '127.0.0.1', port: 0, protocol: 'http' as const, defaultSite: 'd.test' }, { id: 'b', address: '127.0.0.1', port: 0, protocol: 'http' as const }];
  const before = [route('d.test', 'd1'), route('x.test', 'x1'), route('*.w.test', 'w1'), route('only-b.test', 'b1', ['b'])];
  const after = [route('d.test', 'd2'), route('*.w.test', 'w1'), route('only-b.test', 'b1', ['b']), route('new.test', 'n1', ['a'])];
  const old = RouteTable.compile(listeners, before.map((r) => ({ route: r, site: r.tenantId })));
  const patched = old.withChanges([before[0]!, before[1]!], [{ route: after[0]!, site: 'd2' }, { route: after[3]!, site: 'n1' }]);
  const fresh = RouteTable.compile(listeners, after.map((r) => ({ route: r, site: r.tenantId })));
  for (const l of ['a', 'b']) {
    for (const h of ['d.test', 'x.test', 'q.w.test', 'only-b.test', 'new.test', 'none.test']) {
      assert.equal(patched.lookup(l, normaliseHost(h)), fresh.lookup(l, normaliseHost(h)), `${l} ${h}`);
    }
  }
  assert.equal(old.lookup('a', normaliseHost('x.test')), 'x1');
  assert.equal(old.lookup('a', normaliseHost('none.test')), 'd1');
  assert.equal(patched.lookup('a', normaliseHost('none.test')), 'd2', 'the default follows the changed site');
});

test('configuration errors are refused with STRATA_ERR_CONFIG', () => {
  const listener = { id: 'a', address: '127.0.0.1', port: 0, protocol: 'http' as const };
  const bad: GatewayConfig[] = [
    { listeners: [listener, listener], sites: [] },
    { listeners: [{ ...listener, address: 'localhost' }], sites: [] },
    { listeners: [{ ...listener, protocol: 'tls-passthrough' }], sites: [{ ...route('a.test'), target: { kind: 'static', root: '/srv' } }] },
    { listeners: [{ ...listener, strictSni: true }], sites: [] },
    { listeners: [{ ...listener, protocol: 'https', defaultCertificate: 'missing' }], sites: [] },
    { listeners: [listener], sites: [route('Example.com')] },
    { listeners: [listener], sites: [route('a.test'), route('a.test', 'other')] },
    { listeners: [listener], sites: [route('a.test', 't', ['nope'])] },
    { listeners: [{ ...listener, defaultSite: 'missing.test' }], sites: [] },
    { listeners: [listener], sites: [{ ...route('a.test'), target: { kind: 'static', root: 'relative/dir' } }] },
    { listeners: [listener], sites: [{ ...route('a.test'), target: { kind: 'redirect', to: 'javascript:alert(1)', status: 301 } }] },
    { listeners: [listener], sites: [], trustedProxies: ['not-an-ip'] },
  ];
  for (const config of bad) {
    assert.throws(() => validateConfig(config), (e: unknown) => e instanceof StrataError && e.code === 'STRATA_ERR_CONFIG', JSON.stringify(config));
  }
});

test('byte ranges: single ranges, suffixes, and what is unsatisfiable', () => {
  assert.deepEqual(parseRange('bytes=0-9', 100), [0, 9]);
  assert.deepEqual(parseRange('bytes=90-', 100), [90, 99]);
  assert.deepEqual(parseRange('bytes=-10', 100), [90, 99]);
  assert.deepEqual(parseRange('bytes=95-200', 100), [95, 99]);
  assert.equal(parseRange('bytes=100-', 100), 'unsatisfiable');
  assert.equal(parseRange('bytes=-0', 100), 'unsatisfiable');
  assert.equal(parseRange('bytes=0-1,5-6', 100), null);
  assert.equal(parseRange('items=0-1', 100), null);
  assert.equal(parseRange('bytes=5-1', 100), null);
});

test('content coding: brotli preferred, q=0 refuses', () => {
  assert.equal(preferredEncoding('gzip, deflate, br'), 'br');
  assert.equal(preferredEncoding('gzip'), 'gzip');
  assert.equal(preferredEncoding('br;q=0, gzip;q=0.5'), 'gzip');
  assert.equal(preferredEncoding('identity'), null);
  assert.equal(preferredEncoding(null), null);
});

test('redirects keep the path for an origin target, not for a full URL', () => {
  assert.equal(redirectLocation('https://new.example', '/a?b=1'), 'https://new.example/a?b=1');
  assert.equal(redirectLocation('https://new.example/', '/a'), 'https://new.example/a');
  assert.equal(redirectLocation('https://new.example/landing', '/a'), 'https://new.example/landing');
});

test('simple response heads: a strict subset, read exactly as llhttp reads it', () => {
  const heads = [
    'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello',
    'HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\ncontent-length: 0\r\nConnection: close\r\n\r\n',
    'HTTP/1.1 200 \r\nX-A:b\r\nContent-Length:  3 \r\nKeep-Alive: timeout=5\r\nConnection: Keep-Alive\r\n\r\nabc',
    'HTTP/1.1 500 Oops \u00e9\r\nContent-Length: 007\r\nProxy-Authenticate: x\r\nTE: y\r\nUpgrade: z\r\n\r\n1234567',
    // Each of these must be left to llhttp:
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
    'HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx',
    'HTTP/1.1 200 OK\r\nContent-Length: 1, 1\r\n\r\nx',
    'HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 1\r\n\r\nx',
    'HTTP/1.1 200 OK\nContent-Length: 1\n\nx',
    'HTTP/1.1 200 OK\r\nX: a\rb\r\nContent-Length: 1\r\n\r\nx',
    'HTTP/1.1 200 OK\r\nX: a\x00b\r\nContent-Length: 1\r\n\r\nx',
    'HTTP/1.1 200 OK\r\nX : a\r\nContent-Length: 1\r\n\r\nx',
    'HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n',
    'HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n',
    'HTTP/1.1 100 Continue\r\n\r\n',
    'HTTP/1.1 101 Switching\r\nConnection: upgrade\r\nUpgrade: websocket\r\nContent-Length: 0\r\n\r\n',
    'HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx',
    'HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Drop\r\nContent-Length: 1\r\n\r\nx',
    'HTTP/1.1 200 OK\r\n\r\nclose-delimited',
    'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n',
  ];
  // Plus mutations of the simple ones: whatever the fast path still takes, llhttp must read the same way.
  let seed = 7;
  const rnd = (n: number): number => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n;
  const alphabet = '\r\n :\t0123456789aA,\x00\x7f\xff';
  const mutants: string[] = [];
  for (let i = 0; i < 3000; i++) {
    const base = heads[rnd(4)]!;
    const at = rnd(base.length);
    mutants.push(base.slice(0, at) + alphabet[rnd(alphabet.length)] + base.slice(at + rnd(2)));
  }
  let simple = 0;
  for (const text of [...heads, ...mutants]) {
    const buf = Buffer.from(text, 'latin1');
    const out = Buffer.alloc(buf.length);
    const fast = parseSimpleHead(buf, buf.length, out);
    if (fast === null) continue;
    simple++;
    const seen: { status?: number; keepAlive?: boolean; length?: string; consumed?: number } = {};
    const parser = createParser(RESPONSE, 0, {
      onHeaders: () => {},
      onHeadersComplete: (_a, _b, h, _m, _u, status, _s, _up, keepAlive) => {
        seen.status = status;
        seen.keepAlive = keepAlive;
        for (let i = 0; i < h!.length; i += 2) if (h![i]!.toLowerCase() === 'content-length') seen.length = h![i + 1];
        return 0;
      },
      onBody: () => {},
      onMessageComplete: () => {},
    });
    // Bytes past the body are a second message the gateway never relays (the connection is dropped).
    const message = buf.subarray(0, Math.min(buf.length, fast.bodyStart + fast.contentLength));
    const ret = parser.execute(message);
    parser.close();
    assert.equal(typeof ret, 'number', `llhttp refuses what the fast path took: ${JSON.stringify(text)}`);
    assert.equal(fast.status, seen.status, text);
    assert.equal(fast.keepAlive, seen.keepAlive, text);
    assert.equal(fast.contentLength, Number(seen.length), text);
    assert.equal(ret, message.length, `framing: ${JSON.stringify(text)}`);
    const relayed = out.toString('latin1', 0, fast.relayedEnd);
    assert.doesNotMatch(relayed, /keep-alive:|proxy-|^te:|upgrade:|connection:/im, 'hop-by-hop lines are dropped');
    assert.match(relayed, /^HTTP\/1\.1 \d{3}[^\r\n]*\r\n([^\r\n]+\r\n)*$/, 'status line and header lines, each with its CRLF');
  }
  assert.ok(simple > 4, 'mutants that stay simple were compared too');
});
