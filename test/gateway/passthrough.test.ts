/**
 * TLS passthrough end to end: real TLS backends (node:tls, each with its own
 * certificate) behind a `tls-passthrough` listener. The gateway never holds a
 * key: the client sees the backend's own certificate, picked by SNI.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { GatewayConfig, SiteRoute } from '../../src/gateway/index.js';
import { keepHttpSitesOffPassthrough } from '../../src/control/front-door/front-door.js';
import { validateConfig } from '../../src/gateway/config.js';
import { withGateway } from './helpers.js';
import {
  CertFactory, buildHello, echo, inRecords, peerName, rawSession, startSlicer, startTlsBackend, tlsConnect, type TlsBackend,
} from './passthrough-fixtures.js';
import { tempDir } from '../support/temp.js';

const certs = new CertFactory();
let alpha: TlsBackend;
let beta: TlsBackend;
let wild: TlsBackend;
let fallback: TlsBackend;
let proxied: TlsBackend;

before(async () => {
  [alpha, beta, wild, fallback, proxied] = await Promise.all([
    startTlsBackend('alpha', certs.make(['a.test'])),
    startTlsBackend('beta', certs.make(['b.test'])),
    startTlsBackend('wild', certs.make(['*.w.test'])),
    startTlsBackend('fallback', certs.make(['fallback.test'])),
    startTlsBackend('proxied', certs.make(['p.test']), { proxyProtocol: true }),
  ]);
});
after(async () => {
  await Promise.all([alpha, beta, wild, fallback, proxied].map((b) => b.close()));
  certs.cleanup();
});

const to = (b: TlsBackend, extra: Partial<{ proxyProtocol: 'v2' }> = {}) => ({ kind: 'upstream' as const, host: '127.0.0.1', port: b.port, ...extra });
const site = (hostname: string, b: TlsBackend, tenantId = `t-${b.name}`): SiteRoute => ({ hostname, tenantId, listeners: ['pt'], target: to(b) });

function config(over: { defaultSite?: string; sites?: SiteRoute[]; address?: string } = {}): GatewayConfig {
  return {
    listeners: [{
      id: 'pt', address: over.address ?? '127.0.0.1', port: 0, protocol: 'tls-passthrough',
      ...(over.defaultSite === undefined ? {} : { defaultSite: over.defaultSite }),
    }],
    sites: over.sites ?? [
      site('a.test', alpha), site('b.test', beta), site('*.w.test', wild), site('fallback.test', fallback),
      { hostname: 'p.test', tenantId: 't-proxied', listeners: ['pt'], target: to(proxied, { proxyProtocol: 'v2' }) },
    ],
  };
}

/** The backend's certificate name as a client naming `sni` sees it, or the error when the gateway refuses. */
async function reach(port: number, sni: string | undefined): Promise<string> {
  try {
    const s = await tlsConnect(port, sni);
    const payload = randomBytes(100);
    assert.deepEqual(await echo(s, payload), payload, 'the stream carries bytes both ways');
    const name = peerName(s);
    s.destroy();
    return name;
  } catch (err) {
    return `refused: ${(err as Error).message}`;
  }
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

test('routes by SNI: exact names, the longest wildcard, no match refused without a byte', async () => {
  await withGateway(config(), {}, async (_gw, port) => {
    assert.equal(await reach(port(), 'a.test'), 'a.test');
    assert.equal(await reach(port(), 'B.Test'), 'b.test', 'the name is normalised');
    assert.equal(await reach(port(), 'x.y.w.test'), '*.w.test');
    assert.match(await reach(port(), 'nobody.test'), /^refused/);
    assert.match(await reach(port(), undefined), /^refused/, 'no SNI and no default site');
    // What an unknown name gets: a closed connection, not one byte (no certificate, no alert naming anything).
    const r = await rawSession(port(), [inRecords(buildHello({ sni: 'nobody.test' }))]);
    assert.deepEqual([r.closed, r.received.length], [true, 0]);
  });
});

test('the listener default takes unknown names and clients without SNI', async () => {
  await withGateway(config({ defaultSite: 'fallback.test' }), {}, async (_gw, port) => {
    assert.equal(await reach(port(), 'nobody.test'), 'fallback.test');
    assert.equal(await reach(port(), undefined), 'fallback.test');
    assert.equal(await reach(port(), 'a.test'), 'a.test');
  });
});

test('PROXY v2: the backend learns the client address, the listener address and the SNI name', async () => {
  const before = proxied.proxyHeaders.length;
  await withGateway(config(), {}, async (_gw, port) => {
    const s = await tlsConnect(port(), 'p.test', { localAddress: '127.0.0.2' });
    assert.equal(peerName(s), 'p.test');
    const header = proxied.proxyHeaders[before]!;
    assert.deepEqual(
      { command: header.command, family: header.family, source: header.source, destination: header.destination, authority: header.authority },
      {
        command: 'proxy', family: 'inet', source: { address: '127.0.0.2', port: s.localPort }, destination: { address: '127.0.0.1', port: port() },
        authority: 'p.test',
      },
    );
    s.destroy();
    assert.equal(await reach(port(), 'a.test'), 'a.test', 'a site without proxyProtocol gets the TLS bytes alone');
  });
});

test('PROXY v2 over IPv6', { skip: !hasIpv6() && 'no IPv6 loopback' }, async () => {
  const before = proxied.proxyHeaders.length;
  await withGateway(config({ address: '::1' }), {}, async (_gw, port) => {
    const s = await tlsConnect(port(), 'p.test', { host: '::1' });
    const h = proxied.proxyHeaders[before]!;
    assert.deepEqual([h.family, h.source, h.destination, h.authority], ['inet6', { address: '::1', port: s.localPort }, { address: '::1', port: port() }, 'p.test']);
    s.destroy();
  });
});

test('a ClientHello in 1-3 byte TCP segments and 40-byte TLS records is read, and the handshake completes', async () => {
  await withGateway(config(), {}, async (_gw, port) => {
    for (const o of [{ recordSize: 40, segment: 3, gapMs: 1 }, { recordSize: 16384, segment: 1, gapMs: 0 }, { recordSize: 7, segment: 200, gapMs: 2 }]) {
      const slicer = await startSlicer(port(), o);
      try {
        assert.equal(await reach(slicer.port, 'b.test'), 'b.test', JSON.stringify(o));
      } finally {
        await slicer.close();
      }
    }
  });
});

test('a slow ClientHello is timed out; an oversized or malformed one is refused; none reaches a backend', async () => {
  const accepted = alpha.accepted;
  await withGateway(config(), { tlsHandshakeTimeoutMs: 600 }, async (_gw, port) => {
    const hello = inRecords(buildHello({ sni: 'a.test' }));
    const started = Date.now();
    const slow = rawSession(port(), [hello.subarray(0, 20)], { idleMs: 10_000 });
    // Meanwhile others are served.
    assert.equal(await reach(port(), 'a.test'), 'a.test');
    const s = await slow;
    assert.deepEqual([s.closed, s.received.length], [true, 0]);
    assert.ok(Date.now() - started >= 500, 'closed by the hello deadline, not at once');

    const oversized = inRecords(buildHello({ sni: 'a.test', padding: 20_000 }), [16_000]);
    const big = await rawSession(port(), [oversized]);
    assert.deepEqual([big.closed, big.received.length], [true, 0]);
    const sslv2 = await rawSession(port(), [Buffer.from([0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15])]);
    assert.deepEqual([sslv2.closed, sslv2.received.length], [true, 0]);
    const http = await rawSession(port(), [Buffer.from('GET / HTTP/1.1\r\nHost: a.test\r\n\r\n')]);
    assert.deepEqual([http.closed, http.received.length], [true, 0]);
  });
  assert.equal(alpha.accepted, accepted + 1, 'only the well-formed connection reached the backend');
});

test('a live route change applies to new connections; established streams go on', async () => {
  await withGateway(config(), {}, async (gw, port) => {
    const old = await tlsConnect(port(), 'a.test');
    assert.equal(peerName(old), 'a.test');
    const moved = config().sites.map((s) => (s.hostname === 'a.test' ? { ...s, target: to(beta) } : s));
    await gw.update({ ...config(), sites: moved });
    assert.equal(await reach(port(), 'a.test'), 'b.test', 'a new connection follows the new route');
    const payload = randomBytes(64 * 1024);
    assert.equal(sha(await echo(old, payload)), sha(payload), 'the old stream still flows');
    old.destroy();
    await gw.update({ ...config(), sites: moved.filter((s) => s.hostname !== 'b.test') });
    assert.match(await reach(port(), 'b.test'), /^refused/, 'a removed site is refused');
  });
});

test('many concurrent streams arrive intact (bytes hashed end to end), a large one included', async () => {
  await withGateway(config(), { workers: 2 }, async (_gw, port) => {
    const names = ['a.test', 'b.test', 'x.w.test', 'p.test'];
    const results = await Promise.all(Array.from({ length: 40 }, async (_, i) => {
      const s = await tlsConnect(port(), names[i % names.length]);
      const payload = randomBytes(i === 0 ? 16 * 1024 * 1024 : 128 * 1024 + i);
      const back = await echo(s, payload);
      s.destroy();
      return sha(back) === sha(payload);
    }));
    assert.deepEqual(results.filter((ok) => !ok).length, 0);
  });
});

test('half-close travels both ways, and the replayed hello reaches the backend byte for byte', async () => {
  // A raw backend: reads until the client's half-close, then answers with the hash of everything it got and closes.
  const raw = net.createServer({ allowHalfOpen: true }, (s) => {
    const got: Buffer[] = [];
    s.on('data', (d: Buffer) => got.push(d));
    s.on('end', () => s.end(`${sha(Buffer.concat(got))}`));
  });
  await new Promise<void>((resolve) => raw.listen(0, '127.0.0.1', resolve));
  const rawPort = (raw.address() as net.AddressInfo).port;
  try {
    const sites = [{ hostname: 'raw.test', tenantId: 't-raw', listeners: ['pt'], target: { kind: 'upstream' as const, host: '127.0.0.1', port: rawPort } }];
    await withGateway(config({ sites }), {}, async (_gw, port) => {
      const hello = inRecords(buildHello({ sni: 'raw.test' }), [30]);
      const rest = randomBytes(100_000);
      const answer = await new Promise<string>((resolve, reject) => {
        const s = net.connect({ port: port(), host: '127.0.0.1', allowHalfOpen: true });
        let text = '';
        s.on('data', (d: Buffer) => { text += d.toString(); });
        s.on('end', () => resolve(text));
        s.on('error', reject);
        s.on('connect', () => {
          s.write(hello.subarray(0, 10));
          setTimeout(() => s.end(Buffer.concat([hello.subarray(10), rest])), 20);
        });
      });
      assert.equal(answer, sha(Buffer.concat([hello, rest])));
    });
  } finally {
    raw.close();
  }
});

test('backpressure: a visitor that stops reading stops the backend, and then gets every byte', async () => {
  const total = 64 * 2 ** 20;
  const chunk = randomBytes(2 ** 20);
  let flushed = 0;
  // A raw backend that sends `total` bytes as fast as the connection takes them once the hello is in.
  const raw = net.createServer((s) => {
    s.once('data', () => {
      let sent = 0;
      const pump = (): void => {
        while (sent < total) {
          sent += chunk.length;
          const more = s.write(chunk, () => { flushed += chunk.length; });
          if (!more) return void s.once('drain', pump);
        }
        s.end();
      };
      pump();
    });
    s.on('error', () => {});
  });
  await new Promise<void>((resolve) => raw.listen(0, '127.0.0.1', resolve));
  const rawPort = (raw.address() as net.AddressInfo).port;
  try {
    const sites = [{ hostname: 'bulk.test', tenantId: 't-bulk', listeners: ['pt'], target: { kind: 'upstream' as const, host: '127.0.0.1', port: rawPort } }];
    await withGateway(config({ sites }), {}, async (_gw, port) => {
      const client = net.connect(port(), '127.0.0.1');
      client.pause();
      client.write(inRecords(buildHello({ sni: 'bulk.test' })));
      await new Promise((r) => setTimeout(r, 1_000));
      assert.ok(flushed < total / 2, `the backend got ${flushed} bytes out while nobody read`);
      const hash = createHash('sha256');
      let got = 0;
      await new Promise<void>((resolve, reject) => {
        client.on('data', (d: Buffer) => { got += d.length; hash.update(d); });
        client.on('end', resolve);
        client.on('error', reject);
        client.resume();
      });
      assert.equal(got, total);
      assert.equal(hash.digest('hex'), sha(Buffer.concat(Array.from({ length: total / chunk.length }, () => chunk))));
      client.destroy();
    });
  } finally {
    raw.close();
  }
});

test('limits: connections per client IP, idle streams closed, an unreachable backend closes the client', async () => {
  const closedPort = await new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
  const sites = [...config().sites, { hostname: 'down.test', tenantId: 't-down', listeners: ['pt'], target: { kind: 'upstream' as const, host: '127.0.0.1', port: closedPort } }];
  await withGateway(config({ sites }), { maxConnectionsPerIp: 2, passthroughIdleTimeoutMs: 700 }, async (_gw, port) => {
    const one = await tlsConnect(port(), 'a.test');
    const two = await tlsConnect(port(), 'b.test');
    assert.match(await reach(port(), 'a.test'), /^refused/, 'a third connection from one address');
    // Both idle past 700 ms: the gateway closes them (the client sees the end of the stream).
    await Promise.all([one, two].map((s) => new Promise((resolve) => s.once('end', resolve))));
    one.destroy();
    two.destroy();
    // The gateway frees a slot once both of the stream's sockets have closed, a moment after the client saw the end.
    let again = await reach(port(), 'a.test');
    for (let i = 0; i < 40 && again !== 'a.test'; i++) {
      await new Promise((r) => setTimeout(r, 50));
      again = await reach(port(), 'a.test');
    }
    assert.equal(again, 'a.test', 'their slots are free again');
    assert.match(await reach(port(), 'down.test'), /^refused/);
  });
});

test('metrics and the access log count streams and bytes per site', async () => {
  const dir = tempDir('pt-log');
  const path = join(dir, 'access.log');
  await withGateway(config(), { accessLog: { path } }, async (gw, port) => {
    const s = await tlsConnect(port(), 'a.test');
    await echo(s, randomBytes(50_000));
    s.destroy();
    await new Promise((r) => setTimeout(r, 100));
    assert.match(await reach(port(), 'nobody.test'), /^refused/);
    const text = await (await gw.metrics()).metrics();
    const value = (re: RegExp): number => Number(re.exec(text)?.[1] ?? NaN);
    assert.equal(value(/strata_gateway_passthrough_connections_total\{site="a\.test",tenant="t-alpha"\} (\d+)/), 1);
    assert.equal(value(/strata_gateway_passthrough_connections_total\{site="-",tenant="-"\} (\d+)/), 1);
    assert.ok(value(/strata_gateway_bytes_total\{site="a\.test",tenant="t-alpha",direction="in"\} (\d+)/) > 50_000);
    assert.ok(value(/strata_gateway_bytes_total\{site="a\.test",tenant="t-alpha",direction="out"\} (\d+)/) > 50_000);
  });
  const lines = readFileSync(path, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  const ok = lines.find((l) => l.site === 'a.test')!;
  assert.deepEqual([ok.tenant, ok.listener, ok.ip, ok.method, ok.sni, ok.status], ['t-alpha', 'pt', '127.0.0.1', 'PASSTHROUGH', 'a.test', 200]);
  assert.ok((ok.bytes as number) > 50_000 && (ok.bytesIn as number) > 50_000);
  const refused = lines.find((l) => l.site === '-')!;
  assert.deepEqual([refused.sni, refused.status, refused.bytes], ['nobody.test', 404, 0]);
});

test('configuration: only upstream sites on passthrough listeners; PROXY only on passthrough-only sites', () => {
  const listeners: GatewayConfig['listeners'] = [
    { id: 'pt', address: '127.0.0.1', port: 0, protocol: 'tls-passthrough' },
    { id: 'web', address: '127.0.0.1', port: 0, protocol: 'http' },
  ];
  const ok = (sites: SiteRoute[]): void => validateConfig({ listeners, sites });
  const refused = (sites: SiteRoute[], re: RegExp): void => assert.throws(() => ok(sites), (e: Error & { code?: string }) => e.code === 'STRATA_ERR_CONFIG' && re.test(e.message));
  ok([{ hostname: 'a.test', tenantId: 't', target: { kind: 'upstream', host: '127.0.0.1', port: 443 } }]);
  ok([{ hostname: 'a.test', tenantId: 't', listeners: ['web'], target: { kind: 'static', root: '/srv' } }]);
  ok([{ hostname: 'a.test', tenantId: 't', listeners: ['pt'], target: { kind: 'upstream', host: '127.0.0.1', port: 443, proxyProtocol: 'v2' } }]);
  refused([{ hostname: 'a.test', tenantId: 't', target: { kind: 'static', root: '/srv' } }], /static site cannot be on a tls-passthrough listener/);
  refused([{ hostname: 'a.test', tenantId: 't', listeners: ['pt'], target: { kind: 'redirect', to: 'https://b.test', status: 301 } }], /redirect site/);
  refused([{ hostname: 'a.test', tenantId: 't', target: { kind: 'upstream', host: '127.0.0.1', port: 443, proxyProtocol: 'v2' } }], /proxyProtocol/);
  refused([{ hostname: 'a.test', tenantId: 't', listeners: ['pt'], target: { kind: 'upstream', host: '127.0.0.1', port: 443, proxyProtocol: 'v1' as 'v2' } }], /proxyProtocol/);
  assert.throws(() => validateConfig({ listeners: [{ ...listeners[0]!, strictSni: true }], sites: [] }), /https listeners only/);
  // The daemon's translation keeps HTTP-only sites off passthrough listeners, so store sites stay valid.
  const stored: SiteRoute[] = [
    { hostname: 'app.test', tenantId: 't', target: { kind: 'upstream', host: '10.0.0.2', port: 443 } },
    { hostname: 'docs.test', tenantId: 't', target: { kind: 'static', root: '/srv' } },
  ];
  keepHttpSitesOffPassthrough(stored, listeners);
  ok(stored);
  assert.deepEqual(stored.map((s) => s.listeners), [undefined, ['web']]);
});

function hasIpv6(): boolean {
  return Object.values(networkInterfaces()).flat().some((a) => a?.address === '::1');
}
