import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import net from 'node:net';
import tls from 'node:tls';
import type { CertificateConfig, GatewayConfig, SiteRoute } from '../../src/gateway/index.js';
import { parseClientHello } from '../../src/gateway/client-hello.js';
import { makeEcCert, startBackend, upstream, withGateway, type Backend } from './helpers.js';
import { tempDir } from '../support/temp.js';

let dir: string;
let alpha: Backend;
let beta: Backend;
const pems = new Map<string, { certPem: string; keyPem: string }>();

/** A self-signed ECDSA P-256 certificate for `names` (first one the CN) from the openssl CLI. */
const makeCert = (label: string, names: string[]): { certPem: string; keyPem: string } => makeEcCert(dir, label, names);

before(async () => {
  dir = tempDir('tls');
  pems.set('a', makeCert('a', ['a.test']));
  pems.set('a2', makeCert('a2', ['a.test', 'www.a.test']));
  pems.set('b', makeCert('b', ['b.test']));
  pems.set('wild', makeCert('wild', ['*.w.test']));
  pems.set('neutral', makeCert('neutral', ['gateway.invalid']));
  [alpha, beta] = await Promise.all([startBackend('alpha'), startBackend('beta')]);
});
after(async () => {
  await Promise.all([alpha.close(), beta.close()]);
});

const cert = (id: string, pem: string, hostnames: string[], tenantId: string | null): CertificateConfig => ({ id, hostnames, tenantId, ...pems.get(pem)! });
const site = (hostname: string, b: Backend, tenantId: string): SiteRoute => ({ hostname, tenantId, target: upstream(b) });

function config(over: { strictSni?: boolean; defaultCertificate?: string; certificates?: CertificateConfig[] } = {}): GatewayConfig {
  return {
    listeners: [{
      id: 'tls', address: '127.0.0.1', port: 0, protocol: 'https',
      ...(over.strictSni === undefined ? {} : { strictSni: over.strictSni }),
      ...(over.defaultCertificate === undefined ? {} : { defaultCertificate: over.defaultCertificate }),
    }],
    sites: [site('a.test', alpha, 'ta'), site('b.test', beta, 'tb'), site('*.w.test', alpha, 'tw')],
    certificates: over.certificates ?? [
      cert('ca', 'a', ['a.test'], 'ta'), cert('cb', 'b', ['b.test'], 'tb'),
      cert('cw', 'wild', ['*.w.test'], 'tw'), cert('neutral', 'neutral', ['gateway.invalid'], null),
    ],
  };
}

interface Handshake {
  error?: Error;
  subject?: string;
  san?: string;
  alpn?: string | false | null;
  reused?: boolean;
  version?: string | null;
  session?: Buffer;
  /** The raw response to `request`, when one was sent. */
  response?: string;
}

/** One TLS connection; sends `request` (raw HTTP) when given and reads until the server closes or goes quiet. */
function handshake(port: number, opts: tls.ConnectionOptions & { request?: string } = {}): Promise<Handshake> {
  return new Promise((resolve) => {
    const { request, ...connect } = opts;
    const out: Handshake = {};
    let data = '';
    const socket = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'], ...connect });
    let timer: NodeJS.Timeout | undefined;
    const done = (): void => {
      clearTimeout(timer);
      if (request !== undefined) out.response = data;
      socket.destroy();
      resolve(out);
    };
    socket.on('secureConnect', () => {
      const peer = socket.getPeerCertificate();
      out.subject = peer.subject?.CN as string | undefined;
      out.san = peer.subjectaltname;
      out.alpn = socket.alpnProtocol;
      out.reused = socket.isSessionReused();
      out.version = socket.getProtocol();
      if (request === undefined) {
        // Wait a moment for a TLS 1.3 session ticket.
        timer = setTimeout(done, 100);
      } else {
        socket.write(request);
        timer = setTimeout(done, 1000);
      }
    });
    socket.on('session', (s) => { out.session ??= s; });
    socket.on('data', (d) => {
      data += d.toString('latin1');
      if (/\r\n\r\n/.test(data) && /Content-Length: (\d+)/i.test(data)) {
        const len = Number(/Content-Length: (\d+)/i.exec(data)![1]);
        if (data.length - data.indexOf('\r\n\r\n') - 4 >= len) done();
      }
    });
    socket.on('error', (err) => { out.error = err; done(); });
    socket.on('close', done);
  });
}

const get = (host: string): string => `GET / HTTP/1.1\r\nHost: ${host}\r\n\r\n`;

test('SNI picks each tenant\'s certificate; requests reach their own site; ALPN http/1.1 for clients that offer only it', async () => {
  await withGateway(config(), {}, async (_gw, port) => {
    const a = await handshake(port(), { servername: 'a.test', request: get('a.test') });
    assert.equal(a.error, undefined);
    assert.equal(a.subject, 'a.test');
    assert.equal(a.san, 'DNS:a.test');
    assert.equal(a.alpn, 'http/1.1');
    assert.match(a.response!, /^HTTP\/1\.1 200 /);
    assert.match(a.response!, /"backend":"alpha"/);
    assert.match(a.response!, /"x-forwarded-proto":"https"/);
    const b = await handshake(port(), { servername: 'B.TEST.', request: get('b.test:443') });
    assert.equal(b.subject, 'b.test');
    assert.equal(b.san, 'DNS:b.test');
    assert.match(b.response!, /"backend":"beta"/);
    const h2 = await handshake(port(), { servername: 'a.test', ALPNProtocols: ['h2', 'http/1.1'] });
    assert.equal(h2.alpn, 'h2', 'a client offering h2 gets it (test/gateway/h2.test.ts)');
  });
});

test('a wildcard certificate serves names under it; an exact name wins over it', async () => {
  const certs = [cert('cw', 'wild', ['*.w.test'], 'tw'), cert('cx', 'b', ['x.w.test'], 'tb')];
  await withGateway(config({ certificates: certs }), {}, async (_gw, port) => {
    const w = await handshake(port(), { servername: 'shop.w.test', request: get('shop.w.test') });
    assert.equal(w.san, 'DNS:*.w.test');
    assert.match(w.response!, /"backend":"alpha"/);
    const exact = await handshake(port(), { servername: 'x.w.test' });
    assert.equal(exact.san, 'DNS:b.test', 'the exact name\'s certificate wins over the wildcard');
  });
});

test('no SNI: the neutral default certificate, or a refused handshake without one or under strictSni', async () => {
  await withGateway(config({ defaultCertificate: 'neutral' }), {}, async (gw, port) => {
    const plain = await handshake(port(), { servername: '' });
    assert.equal(plain.error, undefined);
    assert.equal(plain.subject, 'gateway.invalid');
    const unknown = await handshake(port(), { servername: 'nobody.test' });
    assert.equal(unknown.subject, 'gateway.invalid', 'a name no certificate covers gets the neutral one too');

    await gw.update(config({ defaultCertificate: 'neutral', strictSni: true }));
    const strict = await handshake(port(), { servername: '' });
    assert.ok(strict.error !== undefined, 'strictSni refuses a client without SNI');
    assert.equal(strict.subject, undefined);
    const strictUnknown = await handshake(port(), { servername: 'nobody.test' });
    assert.ok(strictUnknown.error !== undefined, 'strictSni refuses a name no certificate covers');
    const named = await handshake(port(), { servername: 'a.test' });
    assert.equal(named.subject, 'a.test');

    await gw.update(config());
    const none = await handshake(port(), { servername: '' });
    assert.ok(none.error !== undefined, 'no default certificate: refused');

    // A neutral certificate listed under no name (the daemon's) is a default only: never chosen by SNI.
    const certificates = config().certificates!.map((c) => (c.id === 'neutral' ? { ...c, hostnames: [] } : c));
    await gw.update(config({ defaultCertificate: 'neutral', certificates }));
    assert.equal((await handshake(port(), { servername: '' })).subject, 'gateway.invalid');
    assert.equal((await handshake(port(), { servername: 'a.test' })).subject, 'a.test');
    const nameless = certificates.map((c) => (c.id === 'cb' ? { ...c, hostnames: [] } : c));
    await assert.rejects(gw.update(config({ defaultCertificate: 'neutral', certificates: nameless })), (e: any) => e.code === 'STRATA_ERR_CONFIG' && /needs at least one hostname/.test(e.message));
  });
});

test('a default certificate must be neutral and must exist; keys that do not match are refused', async () => {
  await withGateway(config(), {}, async (gw) => {
    await assert.rejects(gw.update(config({ defaultCertificate: 'ca' })), (e: any) => e.code === 'STRATA_ERR_CONFIG' && /neutral/.test(e.message));
    await assert.rejects(gw.update(config({ defaultCertificate: 'nope' })), (e: any) => e.code === 'STRATA_ERR_CONFIG');
    const mismatched = { ...cert('ca', 'a', ['a.test'], 'ta'), keyPem: pems.get('b')!.keyPem };
    await assert.rejects(gw.update(config({ certificates: [mismatched] })), (e: any) => {
      assert.equal(e.code, 'STRATA_ERR_CONFIG');
      assert.doesNotMatch(JSON.stringify({ m: e.message, d: e.details }), /PRIVATE KEY/);
      return true;
    });
    await assert.rejects(gw.update({ ...config(), listeners: [{ id: 'p', address: '127.0.0.1', port: 0, protocol: 'tls-passthrough', defaultCertificate: 'neutral' }] }),
      (e: any) => e.code === 'STRATA_ERR_CONFIG');
  });
});

test('421 when Host disagrees with the SNI name (no domain fronting across tenants)', async () => {
  await withGateway(config(), {}, async (_gw, port) => {
    const seenBefore = beta.seen.length;
    const fronted = await handshake(port(), { servername: 'a.test', request: get('b.test') });
    assert.equal(fronted.subject, 'a.test');
    assert.match(fronted.response!, /^HTTP\/1\.1 421 /);
    assert.doesNotMatch(fronted.response!, /beta|alpha/);
    assert.equal(beta.seen.length, seenBefore, 'tenant b\'s backend never saw the fronted request');
    const absolute = await handshake(port(), { servername: 'a.test', request: 'GET https://b.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n' });
    assert.match(absolute.response!, /^HTTP\/1\.1 421 /);
    const normalised = await handshake(port(), { servername: 'a.test', request: get('A.Test.:443') });
    assert.match(normalised.response!, /^HTTP\/1\.1 200 /, 'compared after normalisation');
    const wild = await handshake(port(), { servername: 'one.w.test', request: get('two.w.test') });
    assert.match(wild.response!, /^HTTP\/1\.1 421 /, 'even under one wildcard certificate, the name must match');
  });
});

test('TLS 1.1 (and below) is refused', async () => {
  await withGateway(config(), {}, async (_gw, port) => {
    const old = await handshake(port(), { servername: 'a.test', minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' });
    assert.ok(old.error !== undefined, 'the handshake fails');
    assert.match(String(old.error!.message), /version|protocol/i);
    const v12 = await handshake(port(), { servername: 'a.test', maxVersion: 'TLSv1.2' });
    assert.equal(v12.version, 'TLSv1.2');
    const v13 = await handshake(port(), { servername: 'a.test' });
    assert.equal(v13.version, 'TLSv1.3');
  });
});

for (const version of ['TLSv1.2', 'TLSv1.3'] as const) {
  test(`${version} session resumption works per certificate and never crosses tenants`, async () => {
    await withGateway(config(), { workers: 2 }, async (_gw, port) => {
      const first = await handshake(port(), { servername: 'a.test', maxVersion: version });
      assert.ok(first.session !== undefined, 'a session was issued');
      const again = await handshake(port(), { servername: 'a.test', maxVersion: version, session: first.session });
      assert.equal(again.reused, true, 'the same certificate resumes (on either worker)');
      const cross = await handshake(port(), { servername: 'b.test', maxVersion: version, session: first.session });
      assert.equal(cross.reused, false, 'a session for tenant a does not resume under tenant b');
      assert.equal(cross.subject, 'b.test');
    });
  });
}

test('certificates change live: a replaced one is served on new connections, a removed one no longer', async () => {
  await withGateway(config(), { workers: 2 }, async (gw, port) => {
    const before = await handshake(port(), { servername: 'a.test' });
    assert.equal(before.san, 'DNS:a.test');
    const replaced = config().certificates!.map((c) => (c.id === 'ca' ? cert('ca', 'a2', ['a.test', 'www.a.test'], 'ta') : c));
    await gw.update(config({ certificates: replaced }));
    for (let i = 0; i < 4; i++) {
      const now = await handshake(port(), { servername: 'a.test' });
      assert.equal(now.san, 'DNS:a.test, DNS:www.a.test', 'the replacement is served');
      const resumed = await handshake(port(), { servername: 'a.test', session: before.session });
      assert.equal(resumed.reused, false, 'sessions of the replaced certificate do not resume');
    }
    const added = [...replaced, cert('cc', 'b', ['c.test'], 'tc')];
    await gw.update({ ...config({ certificates: added }), sites: [...config().sites, site('c.test', beta, 'tc')] });
    const c = await handshake(port(), { servername: 'c.test', request: get('c.test') });
    assert.match(c.response!, /"backend":"beta"/);
    await gw.update(config({ certificates: replaced.filter((x) => x.id !== 'cb') }));
    for (let i = 0; i < 4; i++) {
      const gone = await handshake(port(), { servername: 'b.test' });
      assert.ok(gone.error !== undefined, 'the removed certificate is no longer served (no default: refused)');
    }
  });
});

test('ClientHello parser: SNI, none, fragments, garbage', () => {
  const capture = (servername: string | undefined): Promise<Buffer> => new Promise((resolve) => {
    const server = net.createServer((s) => s.once('data', (d: Buffer) => { resolve(d); s.destroy(); server.close(); }));
    server.listen(0, '127.0.0.1', () => {
      const c = tls.connect({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port, servername, rejectUnauthorized: false });
      c.on('error', () => {});
    });
  });
  return (async () => {
    const hello = await capture('Shop.Example.com');
    assert.deepEqual(parseClientHello(hello), { kind: 'hello', sni: 'shop.example.com' });
    for (let cut = 0; cut < hello.length; cut += 37) assert.equal(parseClientHello(hello.subarray(0, cut)).kind, 'partial');
    // The same hello split across two records.
    const body = hello.subarray(5);
    const split = Buffer.concat([Buffer.from([22, 3, 1, 0, 10]), body.subarray(0, 10), Buffer.from([22, 3, 1, (body.length - 10) >> 8, (body.length - 10) & 255]), body.subarray(10)]);
    assert.deepEqual(parseClientHello(split), { kind: 'hello', sni: 'shop.example.com' });
    const none = await capture('');
    assert.deepEqual(parseClientHello(none), { kind: 'hello', sni: null });
    assert.equal(parseClientHello(Buffer.from('GET / HTTP/1.1\r\nHost: a\r\n\r\n')).kind, 'invalid');
    for (let i = 0; i < 2000; i++) {
      const fuzzed = Buffer.from(hello);
      for (let k = 0; k < 4; k++) fuzzed[Math.floor(Math.random() * fuzzed.length)] = Math.floor(Math.random() * 256);
      const r = parseClientHello(fuzzed);
      assert.ok(['partial', 'invalid', 'hello'].includes(r.kind));
    }
  })();
});

test('a client that never finishes its ClientHello is closed at the handshake timeout; TLS connections count per IP', async () => {
  await withGateway(config(), { tlsHandshakeTimeoutMs: 300, maxConnectionsPerIp: 2 }, async (_gw, port) => {
    const started = Date.now();
    const closedAfter = await new Promise<number>((resolve) => {
      const s = net.connect(port(), '127.0.0.1', () => s.write(Buffer.from([22, 3, 1, 0, 200, 1, 0]))); // a truncated hello
      s.on('error', () => {});
      s.on('close', () => resolve(Date.now() - started));
    });
    assert.ok(closedAfter >= 250 && closedAfter < 2000, `closed after ${closedAfter} ms`);

    const hold = (): Promise<tls.TLSSocket> => new Promise((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port: port(), servername: 'a.test', rejectUnauthorized: false }, () => resolve(s));
      s.on('error', reject);
    });
    const [one, two] = [await hold(), await hold()];
    const third = await handshake(port(), { servername: 'a.test' });
    assert.ok(third.error !== undefined, 'a third connection from one IP is refused');
    one.destroy();
    await new Promise((r) => setTimeout(r, 100));
    const again = await handshake(port(), { servername: 'a.test', request: get('a.test') });
    assert.match(again.response!, /^HTTP\/1\.1 200 /, 'a closed TLS connection gives its slot back');
    two.destroy();
  });
});
