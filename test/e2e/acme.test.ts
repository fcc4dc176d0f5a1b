/**
 * ACME end to end against Debian's pebble on loopback: pebble validates
 * through the daemon's own gateway (its httpPort/tlsPort are the gateway's
 * listener ports; pebble-challtestsrv answers every name with 127.0.0.1), one
 * site by HTTP-01, another by TLS-ALPN-01; HTTPS to each then verifies against
 * pebble's issuing root, fetched from its management port. A name that is not
 * a configured site is refused before the CA sees an order, and renewal swaps
 * the certificate without dropping an open connection.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { Agent } from 'node:https';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import pino from 'pino';
import { createCaCertificate, createLeafCertificate, newP256KeyPair, privateKeyPem } from '../../src/control/certificates/x509.js';
import { startDaemon, type Daemon } from '../../src/daemon.js';
import { freePort } from '../support/net.js';
import { httpsGet } from '../support/tls-client.js';
import { until } from '../support/until.js';
import { tempDir } from '../support/temp.js';

const PEBBLE = '/usr/bin/pebble';
const CHALLTESTSRV = '/usr/bin/pebble-challtestsrv';

let dir: string;
let daemon: Daemon;
let token: string;
let httpPort: number;
let tlsPort: number;
let mgmtPort: number;
let directoryCa: string;
let pebbleLog = '';
const children: ChildProcess[] = [];

const freeTcp = (): Promise<number> => freePort();
const freeUdp = (): Promise<number> => new Promise((resolve) => {
  const s = createSocket('udp4');
  s.bind(0, '127.0.0.1', () => {
    const { port } = s.address();
    s.close(() => resolve(port));
  });
});

function run(cmd: string, args: string[], env: Record<string, string> = {}): ChildProcess {
  const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const keep = (b: Buffer): void => { if (cmd === PEBBLE) pebbleLog += b.toString(); };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  children.push(child);
  return child;
}

async function api(method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(`${daemon.url}${path}`, {
    method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'x-strata-reason': 'acme test' },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  return { status: res.status, body: await res.json().catch(() => null) };
}

/** Waits up to 10 s until `check` resolves true (a rejection counts as not yet). */
const waitFor = (what: string, check: () => Promise<boolean>): Promise<boolean> =>
  until(() => check().catch(() => false), { ms: 10_000, every: 50, what: `${what} to come up` });

let root: string;
const orders = (): number => (pebbleLog.match(/POST \/order-plz/g) ?? []).length;

before(async () => {
  dir = tempDir('acme');
  [httpPort, tlsPort, mgmtPort] = await Promise.all([freeTcp(), freeTcp(), freeTcp()]);
  const acmePort = await freeTcp();
  const dnsPort = await freeUdp();
  // Pebble's own TLS (the directory): a throwaway CA and a leaf for 127.0.0.1.
  const caKeys = await newP256KeyPair();
  directoryCa = await createCaCertificate(caKeys, 'pebble directory test CA', 1);
  const leafKeys = await newP256KeyPair();
  const leaf = await createLeafCertificate({ keys: caKeys, certPem: directoryCa }, leafKeys.publicKey, ['127.0.0.1'], new Date(Date.now() + 86_400_000));
  const pebbleDir = join(dir, 'pebble');
  mkdirSync(pebbleDir);
  writeFileSync(join(pebbleDir, 'cert.pem'), leaf);
  writeFileSync(join(pebbleDir, 'key.pem'), await privateKeyPem(leafKeys.privateKey), { mode: 0o600 });
  writeFileSync(join(pebbleDir, 'config.json'), JSON.stringify({
    pebble: {
      listenAddress: `127.0.0.1:${acmePort}`, managementListenAddress: `127.0.0.1:${mgmtPort}`,
      certificate: join(pebbleDir, 'cert.pem'), privateKey: join(pebbleDir, 'key.pem'),
      httpPort, tlsPort, ocspResponderURL: '', externalAccountBindingRequired: false,
    },
  }));
  run(CHALLTESTSRV, ['-dns01', `127.0.0.1:${dnsPort}`, '-http01', '', '-https01', '', '-tlsalpn01', '', '-management', `127.0.0.1:${await freeTcp()}`,
    '-defaultIPv4', '127.0.0.1', '-defaultIPv6', '']);
  run(PEBBLE, ['-config', join(pebbleDir, 'config.json'), '-dnsserver', `127.0.0.1:${dnsPort}`],
    { PEBBLE_VA_NOSLEEP: '1', PEBBLE_VA_ALWAYS_VALID: '0', PEBBLE_WFE_NONCEREJECT: '0', PEBBLE_AUTHZREUSE: '0' });
  await waitFor('pebble', async () => (await httpsGet(acmePort, directoryCa, { path: '/dir' })).status === 200);

  daemon = await startDaemon({
    dataDir: join(dir, 'data'), host: '127.0.0.1', port: 0, logger: pino({ level: 'silent' }), reconcileIntervalMs: 3_600_000,
    gateway: {
      listeners: [
        { id: 'web', address: '127.0.0.1', port: httpPort, protocol: 'http' },
        { id: 'tls', address: '127.0.0.1', port: tlsPort, protocol: 'https' },
      ],
      options: { workers: 1 },
    },
    acme: { directoryUrl: `https://127.0.0.1:${acmePort}/dir`, directoryCaPem: directoryCa },
  });
  token = readFileSync(daemon.tokenPath, 'utf8').trim();
  const shop = await api('POST', '/v1/tenants', { name: 'shop' });
  assert.equal(shop.status, 201);
  const docroot = join(dir, 'data', 'docroots', shop.body.id, 'www');
  mkdirSync(docroot, { recursive: true });
  writeFileSync(join(docroot, 'index.html'), 'the shop\n');
  for (const hostname of ['http01.shop.test', 'alpn.shop.test']) {
    assert.equal((await api('POST', '/v1/tenants/shop/sites', { hostname, target: { kind: 'static', root: 'www' } })).status, 201);
  }
  root = (await httpsGet(mgmtPort, directoryCa, { path: '/roots/0' })).body;
  assert.match(root, /BEGIN CERTIFICATE/);
});

after(async () => {
  await daemon?.close();
  for (const c of children) c.kill('SIGTERM');
  await Promise.all(children.map((c) => (c.exitCode !== null || c.signalCode !== null ? null : new Promise((r) => c.once('exit', r)))));
});

async function order(hostname: string, challenge: string): Promise<any> {
  const r = await api('POST', '/v1/tenants/shop/certificates/acme?wait=60', { hostnames: [hostname], challenge });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.operation.status, 'succeeded', JSON.stringify(r.body.operation));
  assert.equal(r.body.certificate.status, 'active');
  assert.equal(r.body.certificate.source, 'acme');
  return r.body.certificate;
}

test('HTTP-01: pebble validates through the gateway, and HTTPS to the site verifies against pebble\'s root', async () => {
  const cert = await order('http01.shop.test', 'http-01');
  assert.match(pebbleLog, /validate w\/ HTTP: http:\/\/http01\.shop\.test:\d+\/\.well-known\/acme-challenge\//);
  await waitFor('the certificate on the gateway', async () => (await httpsGet(tlsPort, root, { name: 'http01.shop.test' })).status === 200);
  const got = await httpsGet(tlsPort, root, { name: 'http01.shop.test' });
  assert.equal(got.body, 'the shop\n');
  assert.equal(got.fingerprint, cert.fingerprint);
});

test('TLS-ALPN-01: the acme-tls/1 handshake gets the validation certificate; then the site serves the issued one', async () => {
  const cert = await order('alpn.shop.test', 'tls-alpn-01');
  // Pebble logs HTTP-01 attempts but not TLS-ALPN-01 ones: this name was never tried over HTTP.
  assert.doesNotMatch(pebbleLog, /validate w\/ HTTP: http:\/\/alpn\.shop\.test/);
  assert.match(pebbleLog, /Value:"alpn\.shop\.test"/);
  await waitFor('the certificate on the gateway', async () => (await httpsGet(tlsPort, root, { name: 'alpn.shop.test' })).status === 200);
  assert.equal((await httpsGet(tlsPort, root, { name: 'alpn.shop.test' })).fingerprint, cert.fingerprint);
});

test('a name that is not a configured site is refused before any order reaches the CA', async () => {
  const before = orders();
  assert.ok(before >= 2, 'the order counter sees the earlier orders');
  const r = await api('POST', '/v1/tenants/shop/certificates/acme?wait=60', { hostnames: ['stranger.test'], challenge: 'http-01' });
  assert.equal(r.status, 422);
  assert.equal(r.body.error.code, 'STRATA_ERR_CERTIFICATE_NAME');
  await new Promise((res) => setTimeout(res, 100));
  assert.equal(orders(), before);
});

test('renewal replaces a certificate past two thirds of its life, through pebble, without dropping an open connection', async () => {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  try {
    const before = await httpsGet(tlsPort, root, { name: 'http01.shop.test', agent });
    const listed = (await api('GET', '/v1/tenants/shop/certificates')).body.items as Array<{ id: string; hostnames: string[]; notBefore: string; notAfter: string; fingerprint: string }>;
    const cert = listed.find((c) => c.hostnames.includes('http01.shop.test'))!;
    const ordersBefore = orders();
    const lifetime = Date.parse(cert.notAfter) - Date.parse(cert.notBefore);
    await daemon.services.certificates!.renewDue(Date.parse(cert.notBefore) + lifetime * 0.7);
    assert.ok(orders() > ordersBefore, 'a new order went to the CA');
    const renewed = (await api('GET', `/v1/tenants/shop/certificates/${cert.id}`)).body;
    assert.notEqual(renewed.fingerprint, cert.fingerprint);
    assert.equal(renewed.error, null);
    const same = await httpsGet(tlsPort, root, { name: 'http01.shop.test', agent });
    assert.equal(same.status, 200);
    assert.equal(same.fingerprint, before.fingerprint, 'the open connection is the same one, on its old certificate');
    await waitFor('the renewed certificate', async () => (await httpsGet(tlsPort, root, { name: 'http01.shop.test' })).fingerprint === renewed.fingerprint);
    const audit = await api('GET', '/v1/audit/entries?limit=10000');
    assert.ok(audit.body.items.some((x: any) => x.entry.action === 'certificate.renew' && x.entry.result === 'ok' && x.entry.target === 'http01.shop.test'));
  } finally {
    agent.destroy();
  }
});
