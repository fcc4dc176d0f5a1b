import assert from 'node:assert/strict';
import { test } from 'node:test';
import { StrataError } from '../../src/errors.js';
import { validateConfig } from '../../src/gateway/config.js';
import { normaliseHost, normaliseSiteHostname } from '../../src/gateway/host.js';
import { redirectLocation } from '../../src/gateway/redirect.js';
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
  const table = RouteTable.compile(config, (r) => r.tenantId);
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
  const table = RouteTable.compile(config, (r) => r.hostname);
  const host = normaliseHost('site9999.example.net');
  const start = performance.now();
  for (let i = 0; i < 100_000; i++) table.lookup('a', host);
  assert.ok(performance.now() - start < 200, 'lookups are map hits');
  assert.equal(table.lookup('a', host), 'site9999.example.net');
});

test('configuration errors are refused with STRATA_ERR_CONFIG', () => {
  const listener = { id: 'a', address: '127.0.0.1', port: 0, protocol: 'http' as const };
  const bad: GatewayConfig[] = [
    { listeners: [listener, listener], sites: [] },
    { listeners: [{ ...listener, address: 'localhost' }], sites: [] },
    { listeners: [{ ...listener, protocol: 'https' }], sites: [] },
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
