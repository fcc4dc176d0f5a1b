/**
 * Certificates and listeners through the API, served live by the daemon's
 * gateway: local-CA issue verified by a client trusting only that CA, uploads
 * validated (parse, key match, expiry, names = the tenant's own sites), keys
 * kept 0600 on disk and never answered, renewal swapping a certificate under
 * an open connection, listeners added and removed live, per-site access logs.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { Agent } from 'node:https';
import { join } from 'node:path';
import { connect, type PeerCertificate } from 'node:tls';
import { after, before, test } from 'node:test';
import { LocalCa } from '../../src/control/certificates/local-ca.js';
import { createCaCertificate, createLeafCertificate, newP256KeyPair, privateKeyPem } from '../../src/control/certificates/x509.js';
import { TestDaemon } from '../support/harness.js';
import { freePort, viaGateway } from '../support/net.js';
import { httpsGet } from '../support/tls-client.js';
import { tempDir } from '../support/temp.js';

let d: TestDaemon;
let own: string;
let httpsPort: number;
let caPem: string;
let dataDir: string;

/** HTTPS GET through the gateway with SNI `name`, trusting only `ca`. */
const httpsGetVia = (name: string, ca: string, agent?: Agent) => httpsGet(httpsPort, ca, { name, ...(agent ? { agent } : {}) });

/** The subjectAltName of the certificate served for SNI `name` (no trust check), or null when the handshake is refused. */
function servedFor(name: string): Promise<string | null> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port: httpsPort, servername: name, rejectUnauthorized: false });
    s.once('secureConnect', () => { resolve(s.getPeerCertificate().subjectaltname ?? null); s.destroy(); });
    s.once('error', () => resolve(null));
    s.once('close', () => resolve(null));
  });
}
/** What a name no certificate covers gets: the listener's neutral default, naming no tenant. */
const NEUTRAL = 'DNS:strata.invalid';

/** The status of GET / with Host `host` at address:port (0 when nothing answered). */
const httpGet = async (port: number, host: string, address = '127.0.0.1'): Promise<number> => (await viaGateway(port, host, '/', { address })).status;

const site = async (tenant: string, hostname: string): Promise<void> => {
  const r = await d.request('POST', `/v1/tenants/${tenant}/sites`, { body: { hostname, target: { kind: 'static', root: 'www' } }, headers: { 'x-strata-reason': 'test' } });
  assert.equal(r.status, 201, JSON.stringify(r.body));
};

/** A leaf for `names` from a throwaway CA (so uploads are independent of the local CA). */
async function foreignPair(names: string[], notAfter = new Date(Date.now() + 86_400_000)): Promise<{ cert: string; key: string; ca: string }> {
  const caKeys = await newP256KeyPair();
  const ca = await createCaCertificate(caKeys, 'Upload test CA', 1);
  const leafKeys = await newP256KeyPair();
  const cert = await createLeafCertificate({ keys: caKeys, certPem: ca }, leafKeys.publicKey, names, notAfter);
  return { cert, key: await privateKeyPem(leafKeys.privateKey), ca };
}

before(async () => {
  httpsPort = await freePort();
  dataDir = tempDir('certs');
  d = await TestDaemon.start({ dataDir, gateway: { listeners: [{ id: 'tls', address: '127.0.0.1', port: httpsPort, protocol: 'https' }], options: { workers: 1 } } });
  own = await d.tenantWithUser('own', 'tenant-admin');
  await d.tenantWithUser('other', 'tenant-admin');
  for (const t of ['own', 'other']) {
    const dir = d.docroot(t, 'www');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'index.html'), `hello from ${t}\n`);
  }
  await site('own', 'a.own.test');
  await site('own', 'b.own.test');
  await site('own', 'c.own.test');
  await site('other', 'x.other.test');
  caPem = (await d.request('GET', '/v1/certificates/ca', { token: own })).body.certificate;
});
after(async () => {
  await d.close();
});

test('the local CA issues for a site; HTTPS to it verifies against the CA and the key stays on disk, 0600', async () => {
  const r = await d.request('POST', '/v1/tenants/own/certificates/local-ca', { token: own, body: { hostnames: ['a.own.test'] } });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  assert.equal(r.body.source, 'local-ca');
  assert.equal(r.body.status, 'active');
  assert.deepEqual(r.body.hostnames, ['a.own.test']);
  assert.ok(!JSON.stringify(r.body).includes('PRIVATE KEY'), 'no key in the answer');
  const dir = join(d.daemon.dataDir, 'certs', r.body.id);
  assert.equal(statSync(join(dir, 'key.pem')).mode & 0o777, 0o600);
  assert.equal(statSync(dir).mode & 0o777, 0o700);
  assert.equal(statSync(join(d.daemon.dataDir, 'ca', 'ca-key.pem')).mode & 0o777, 0o600);
  const got = await httpsGetVia('a.own.test', caPem);
  assert.equal(got.status, 200);
  assert.equal(got.body, 'hello from own\n');
  assert.equal(got.fingerprint, r.body.fingerprint);
  // The leaf is ECDSA P-256.
  const leaf = await new Promise<PeerCertificate>((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port: httpsPort, servername: 'a.own.test', ca: caPem }, () => { resolve(s.getPeerCertificate()); s.destroy(); });
    s.on('error', reject);
  });
  assert.equal((leaf as PeerCertificate & { asn1Curve?: string }).asn1Curve, 'prime256v1');
});

test('names that are not the tenant\'s sites are refused alike, whether another tenant serves them or nobody does', async () => {
  const theirs = await d.request('POST', '/v1/tenants/own/certificates/local-ca', { token: own, body: { hostnames: ['x.other.test'] } });
  const nobody = await d.request('POST', '/v1/tenants/own/certificates/local-ca', { token: own, body: { hostnames: ['y.other.test'] } });
  for (const r of [theirs, nobody]) {
    assert.equal(r.status, 422);
    assert.equal(r.body.error.code, 'STRATA_ERR_CERTIFICATE_NAME');
  }
  assert.equal(theirs.body.error.message.replace('x.other', 'y.other'), nobody.body.error.message);
  const upload = await foreignPair(['x.other.test']);
  const up = await d.request('POST', '/v1/tenants/own/certificates', { token: own, body: { certificate: upload.cert, key: upload.key } });
  assert.equal(up.status, 422);
  assert.equal(up.body.error.code, 'STRATA_ERR_CERTIFICATE_NAME');
});

test('uploads: a valid chain is served; bad PEM, a foreign key, an expired certificate and a taken name are refused', async () => {
  const good = await foreignPair(['b.own.test']);
  const r = await d.request('POST', '/v1/tenants/own/certificates', { token: own, body: { certificate: `${good.cert}${good.ca}`, key: good.key } });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  assert.equal(r.body.source, 'upload');
  assert.equal((await httpsGetVia('b.own.test', good.ca)).status, 200);

  const other = await foreignPair(['c.own.test']);
  const cases: Array<[unknown, number, string]> = [
    [{ certificate: 'not a pem', key: other.key }, 422, 'STRATA_ERR_CERTIFICATE_INVALID'],
    [{ certificate: other.cert, key: good.key }, 422, 'STRATA_ERR_CERTIFICATE_INVALID'],
    [{ certificate: other.cert, key: 'garbage' }, 422, 'STRATA_ERR_CERTIFICATE_INVALID'],
    [{ certificate: good.cert, key: good.key }, 409, 'STRATA_ERR_CONFLICT'],
    [{ certificate: other.cert }, 400, 'STRATA_ERR_VALIDATION'],
  ];
  for (const [body, status, code] of cases) {
    const res = await d.request('POST', '/v1/tenants/own/certificates', { token: own, body });
    assert.equal(res.status, status, JSON.stringify(res.body));
    assert.equal(res.body.error.code, code);
  }
  const expired = await foreignPair(['c.own.test'], new Date(Date.now() - 1000));
  const ex = await d.request('POST', '/v1/tenants/own/certificates', { token: own, body: { certificate: expired.cert, key: expired.key } });
  assert.equal(ex.status, 422);
  assert.match(ex.body.error.message, /expired/);
});

test('list and show never carry a key; delete removes the key files and the gateway stops serving the name', async () => {
  const issued = await d.request('POST', '/v1/tenants/own/certificates/local-ca', { token: own, body: { hostnames: ['c.own.test'] } });
  assert.equal(issued.status, 201);
  assert.equal(await servedFor('c.own.test'), 'DNS:c.own.test');
  const listed = await d.request('GET', '/v1/tenants/own/certificates', { token: own });
  assert.ok(listed.body.items.some((c: { id: string }) => c.id === issued.body.id));
  assert.ok(!JSON.stringify(listed.body).includes('PRIVATE KEY'));
  const shown = await d.request('GET', `/v1/tenants/own/certificates/${issued.body.id}`, { token: own });
  assert.equal(shown.status, 200);
  assert.equal(shown.body.certificate, issued.body.certificate);
  const hidden = await d.request('GET', `/v1/tenants/own/certificates/${issued.body.id}`, { token: await d.userToken('peeker', 'tenant-admin', 'other') });
  assert.equal(hidden.status, 404);
  const del = await d.request('DELETE', `/v1/tenants/own/certificates/${issued.body.id}`, { token: own });
  assert.equal(del.status, 204);
  assert.equal(existsSync(join(d.daemon.dataDir, 'certs', issued.body.id)), false);
  assert.equal(await servedFor('c.own.test'), NEUTRAL, 'no certificate for the name: only the neutral default');
});

test('renewal at two thirds of the lifetime replaces the certificate under the same id without dropping an open connection', async () => {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  try {
    const before = await httpsGetVia('a.own.test', caPem, agent);
    const list = (await d.request('GET', '/v1/tenants/own/certificates', { token: own })).body.items as Array<{ id: string; hostnames: string[]; notBefore: string; notAfter: string; fingerprint: string }>;
    const cert = list.find((c) => c.hostnames.includes('a.own.test'))!;
    const lifetime = Date.parse(cert.notAfter) - Date.parse(cert.notBefore);
    // Not yet due at half the lifetime…
    await d.daemon.services.certificates!.renewDue(Date.parse(cert.notBefore) + lifetime / 2);
    assert.equal((await d.request('GET', `/v1/tenants/own/certificates/${cert.id}`, { token: own })).body.fingerprint, cert.fingerprint);
    // …due past two thirds.
    await d.daemon.services.certificates!.renewDue(Date.parse(cert.notBefore) + lifetime * 0.7);
    const renewed = (await d.request('GET', `/v1/tenants/own/certificates/${cert.id}`, { token: own })).body;
    assert.notEqual(renewed.fingerprint, cert.fingerprint);
    await new Promise((r) => setTimeout(r, 300)); // the front door applies the change
    const same = await httpsGetVia('a.own.test', caPem, agent);
    assert.equal(same.status, 200);
    assert.equal(same.fingerprint, before.fingerprint, 'the open connection kept its certificate');
    const fresh = await httpsGetVia('a.own.test', caPem);
    assert.equal(fresh.fingerprint, renewed.fingerprint, 'a new connection gets the renewed one');
    const audit = await d.request('GET', '/v1/audit/entries?limit=10000');
    assert.ok(audit.body.items.some((x: { entry: { action: string; target: string } }) => x.entry.action === 'certificate.renew' && x.entry.target === 'a.own.test'));
  } finally {
    agent.destroy();
  }
});

test('a name that changes hands: the old owner\'s certificate is no longer served, and the new owner can get one', async () => {
  const otherToken = await d.userToken('z-admin', 'tenant-admin', 'other');
  await site('other', 'z.shared.test');
  const old = await d.request('POST', '/v1/tenants/other/certificates/local-ca', { token: otherToken, body: { hostnames: ['z.shared.test'] } });
  assert.equal(old.status, 201);
  assert.equal(await servedFor('z.shared.test'), 'DNS:z.shared.test');
  assert.equal((await d.request('DELETE', '/v1/tenants/other/sites/z.shared.test', { token: otherToken })).status, 204);
  await site('own', 'z.shared.test');
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(await servedFor('z.shared.test'), NEUTRAL, "the former owner's certificate is not served for the new owner's site");
  const mine = await d.request('POST', '/v1/tenants/own/certificates/local-ca', { token: own, body: { hostnames: ['z.shared.test'] } });
  assert.equal(mine.status, 201, JSON.stringify(mine.body));
  assert.equal((await httpsGetVia('z.shared.test', caPem)).fingerprint, mine.body.fingerprint);
  assert.equal((await d.request('GET', `/v1/tenants/other/certificates/${old.body.id}`, { token: otherToken })).status, 404, 'the stale claim was released');
});

test('listeners: added live on another address, listed with the command-line ones, removed live; clashes refused', async () => {
  const port = await freePort('127.0.0.2');
  const r = await d.request('POST', '/v1/listeners', { body: { name: 'ip2', address: '127.0.0.2', port, protocol: 'http' } });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  assert.equal(await httpGet(port, 'a.own.test', '127.0.0.2'), 200);
  const listed = await d.request('GET', '/v1/listeners');
  assert.deepEqual(listed.body.items.map((l: { name: string; origin: string }) => [l.name, l.origin]), [['tls', 'command-line'], ['ip2', 'api']]);
  assert.equal((await d.request('GET', '/v1/listeners', { token: own })).status, 403);
  assert.equal((await d.request('POST', '/v1/listeners', { body: { name: 'ip2', address: '127.0.0.2', port: port + 1, protocol: 'http' } })).status, 409);
  assert.equal((await d.request('POST', '/v1/listeners', { body: { name: 'again', address: '127.0.0.2', port, protocol: 'http' } })).status, 409);
  assert.equal((await d.request('POST', '/v1/listeners', { body: { name: 'bad', address: 'example.com', port, protocol: 'http' } })).status, 400);
  assert.equal((await d.request('DELETE', '/v1/listeners/tls')).status, 409);
  assert.equal((await d.request('DELETE', '/v1/listeners/ip2')).status, 204);
  assert.equal((await viaGateway(port, 'a.own.test', '/', { address: '127.0.0.2' })).error, 'ECONNREFUSED');
  assert.equal((await d.request('DELETE', '/v1/listeners/ip2')).status, 404);
});

/** The certificate a client that sends no SNI gets from 127.0.0.x:port, or null when the handshake is refused. */
function noSniCertificate(port: number, address = '127.0.0.1'): Promise<PeerCertificate | null> {
  return new Promise((resolve) => {
    const s = connect({ host: address, port, rejectUnauthorized: false }); // an IP host: Node sends no SNI
    s.once('secureConnect', () => { resolve(s.getPeerCertificate()); s.destroy(); });
    s.once('error', () => resolve(null));
    s.once('close', () => resolve(null));
  });
}

test('https listeners, from the API or the command line, give clients without SNI the neutral certificate; strictSni ones refuse them', async () => {
  const port = await freePort('127.0.0.2');
  const strictPort = await freePort('127.0.0.3');
  assert.equal((await d.request('POST', '/v1/listeners', { body: { name: 'tls2', address: '127.0.0.2', port, protocol: 'https' } })).status, 201);
  assert.equal((await d.request('POST', '/v1/listeners', { body: { name: 'strict3', address: '127.0.0.3', port: strictPort, protocol: 'https', strictSni: true } })).status, 201);
  try {
    const neutral = readFileSync(join(d.daemon.dataDir, 'gateway', 'neutral.pem'), 'utf8');
    const fingerprint = new X509Certificate(neutral).fingerprint256;
    assert.equal(statSync(join(d.daemon.dataDir, 'gateway', 'neutral-key.pem')).mode & 0o777, 0o600);
    for (const [p, address] of [[port, '127.0.0.2'], [httpsPort, '127.0.0.1']] as const) {
      const got = await noSniCertificate(p, address);
      assert.ok(got !== null, `a handshake without SNI on ${address} completes`);
      assert.equal(got.fingerprint256, fingerprint);
      assert.equal(got.subject.CN, 'strata.invalid', 'it names no tenant');
      assert.equal(got.subjectaltname, NEUTRAL);
    }
    assert.equal(await noSniCertificate(strictPort, '127.0.0.3'), null, 'strictSni: no SNI, no handshake');
    // A request by bare IP over the neutral certificate is routed like any (no site for the IP: the neutral 404).
    const status = await new Promise<number>((resolve, reject) => {
      const s = connect({ host: '127.0.0.2', port, rejectUnauthorized: false }, () => s.write('GET / HTTP/1.1\r\nHost: 127.0.0.2\r\nConnection: close\r\n\r\n'));
      let text = '';
      s.on('data', (c: Buffer) => { text += c.toString('latin1'); });
      s.on('end', () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0)));
      s.on('error', reject);
    });
    assert.equal(status, 404);
    // A client naming a site on the API listener still gets that site's certificate (the local CA's, trusted).
    const named = await new Promise<PeerCertificate>((resolve, reject) => {
      const s = connect({ host: '127.0.0.2', port, servername: 'a.own.test', ca: caPem }, () => { resolve(s.getPeerCertificate()); s.destroy(); });
      s.on('error', reject);
    });
    assert.notEqual(named.fingerprint256, fingerprint);
    assert.equal(named.subjectaltname, 'DNS:a.own.test');
  } finally {
    assert.equal((await d.request('DELETE', '/v1/listeners/tls2')).status, 204);
    assert.equal((await d.request('DELETE', '/v1/listeners/strict3')).status, 204);
  }
});

test('the CA certificate is what signed the issued leaves (a fresh LocalCa over the same dir loads the same CA)', async () => {
  const again = await LocalCa.open(join(d.daemon.dataDir, 'ca'));
  assert.equal(again.certPem, caPem);
  assert.equal(readFileSync(join(d.daemon.dataDir, 'ca', 'ca.pem'), 'utf8'), caPem);
});

test('per-site access logs: JSON lines under logs/sites/<tenant id>/<site>.log', async () => {
  await httpsGetVia('a.own.test', caPem);
  await httpsGetVia('b.own.test', (await d.request('GET', '/v1/tenants/own/certificates', { token: own })).body.items.find((c: { source: string }) => c.source === 'upload').certificate.split(/(?<=-----END CERTIFICATE-----\n)/)[1]);
  const ids = new Map(['own', 'other'].map((n) => [n, d.daemon.services.store.getTenantByName(n)!.id]));
  const dir = join(d.daemon.dataDir, 'logs', 'sites', ids.get('own')!);
  // Workers flush the shared log when they stop; the daemon then drains it into the site files (before, on its timer).
  await d.daemon.close();
  assert.deepEqual(readdirSync(dir).sort(), ['a.own.test.log', 'b.own.test.log', 'z.shared.test.log']);
  assert.ok(!existsSync(join(d.daemon.dataDir, 'logs', 'sites', ids.get('other')!, 'a.own.test.log')), 'lines land under their own tenant only');
  const lines = readFileSync(join(dir, 'a.own.test.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { site: string; status: number });
  assert.ok(lines.length >= 3);
  assert.ok(lines.every((l) => l.site === 'a.own.test' && l.status === 200));
});
