/**
 * The gateway's ACME hooks, without a CA: HTTP-01 answers come from the
 * challenge directory for that name only (anything else reaches the site), and
 * a ClientHello offering only `acme-tls/1` gets the validation certificate for
 * its SNI name — or nothing — and never reaches routing.
 */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createServer, type Socket } from 'node:net';
import { connect } from 'node:tls';
import { before, test } from 'node:test';
import { parseClientHello } from '../../src/gateway/client-hello.js';
import { createCaCertificate, newP256KeyPair, privateKeyPem } from '../../src/control/certificates/x509.js';
import { rawExchange, statuses, withGateway } from './helpers.js';
import { tempDir } from '../support/temp.js';

let dir: string;
let validationPem: string;

before(async () => {
  dir = tempDir('acme-hooks');
  mkdirSync(join(dir, 'site.test', 'http-01'), { recursive: true });
  writeFileSync(join(dir, 'site.test', 'http-01', 'tok_en-1'), 'tok_en-1.thumbprint');
  const keys = await newP256KeyPair();
  validationPem = await createCaCertificate(keys, 'site.test', 1); // any certificate will do for the hook
  writeFileSync(join(dir, 'site.test', 'tls-alpn-01.pem'), `${validationPem}${await privateKeyPem(keys.privateKey)}`, { mode: 0o600 });
});

const config = {
  listeners: [
    { id: 'web', address: '127.0.0.1', port: 0, protocol: 'http' as const },
    { id: 'tls', address: '127.0.0.1', port: 0, protocol: 'https' as const },
  ],
  sites: [
    { hostname: 'site.test', tenantId: 't1', target: { kind: 'redirect' as const, to: 'https://elsewhere.test', status: 308 as const } },
    { hostname: 'other.test', tenantId: 't2', target: { kind: 'redirect' as const, to: 'https://elsewhere.test', status: 308 as const } },
  ],
};

const get = (port: number, host: string, path: string) =>
  rawExchange(port, `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);

test('HTTP-01: the key authorization for that name and token; other names, tokens and paths go to the site', async () => {
  await withGateway(config, { acmeChallengeDir: dir }, async (_gw, port) => {
    const hit = await get(port('web'), 'site.test', '/.well-known/acme-challenge/tok_en-1');
    assert.deepEqual(statuses(hit.text), [200]);
    assert.ok(hit.text.endsWith('\r\n\r\ntok_en-1.thumbprint'));
    for (const [host, path] of [['other.test', '/.well-known/acme-challenge/tok_en-1'], ['site.test', '/.well-known/acme-challenge/nope'],
      ['site.test', '/.well-known/acme-challenge/../http-01/tok_en-1'], ['site.test', '/']]) {
      assert.deepEqual(statuses((await get(port('web'), host!, path!)).text), [308], `${host}${path}`);
    }
  });
});

test('HTTP-01 is off without a challenge directory', async () => {
  await withGateway(config, {}, async (_gw, port) => {
    assert.deepEqual(statuses((await get(port('web'), 'site.test', '/.well-known/acme-challenge/tok_en-1')).text), [308]);
  });
});

function alpnHandshake(port: number, name: string): Promise<{ protocol: string | false | null; raw: Buffer } | null> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port, servername: name, ALPNProtocols: ['acme-tls/1'], rejectUnauthorized: false });
    s.once('secureConnect', () => {
      resolve({ protocol: s.alpnProtocol, raw: s.getPeerCertificate().raw });
      s.destroy();
    });
    s.once('error', () => resolve(null));
    s.once('close', () => resolve(null));
  });
}

test('TLS-ALPN-01: acme-tls/1 gets the validation certificate for its name; a name without one is closed', async () => {
  await withGateway(config, { acmeChallengeDir: dir }, async (_gw, port) => {
    const got = await alpnHandshake(port('tls'), 'site.test');
    assert.ok(got, 'handshake completed');
    assert.equal(got.protocol, 'acme-tls/1');
    const der = Buffer.from(validationPem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
    assert.ok(got.raw.equals(der), 'the validation certificate');
    assert.equal(await alpnHandshake(port('tls'), 'other.test'), null);
  });
});

test('the ClientHello parser flags exactly the acme-tls/1 offer', async () => {
  const hello = (alpn: string[]): Promise<Buffer> => new Promise((resolve) => {
    const server = createServer((sock: Socket) => {
      sock.once('data', (b: Buffer) => {
        resolve(b);
        sock.destroy();
        server.close();
      });
    });
    server.listen(0, '127.0.0.1', () => {
      const c = connect({ host: '127.0.0.1', port: (server.address() as { port: number }).port, servername: 'site.test', ALPNProtocols: alpn, rejectUnauthorized: false });
      c.on('error', () => {});
    });
  });
  assert.deepEqual(parseClientHello(await hello(['acme-tls/1'])), { kind: 'hello', sni: 'site.test', acmeTls: true });
  assert.deepEqual(parseClientHello(await hello(['h2', 'acme-tls/1'])), { kind: 'hello', sni: 'site.test' });
  assert.deepEqual(parseClientHello(await hello(['http/1.1'])), { kind: 'hello', sni: 'site.test' });
});
