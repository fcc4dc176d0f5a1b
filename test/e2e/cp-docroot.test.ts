/**
 * `strata cp` into and out of a static site's docroot, end to end: bin/strata
 * against a daemon with its gateway and guard. A tree with modes and symlinks
 * goes in and comes back out the same; the gateway serves the new content; the
 * guard raises no alert for it and takes it as the new baseline (a later tamper
 * is reverted to the copied content, not the old one). Escapes, a planted
 * symlink, a copy over the disk quota and another tenant are refused, with
 * nothing written.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, chmodSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { writeTar, type TarEntry } from '../../src/core/tar.js';
import { viaGateway } from '../support/net.js';
import { TestDaemon } from '../support/harness.js';
import { tempDir } from '../support/temp.js';
import { until } from '../support/until.js';

const BIN = fileURLToPath(new URL('../../../bin/strata', import.meta.url));
const work = tempDir('cp-docroot');
let d: TestDaemon;
let acme: string;
let other: string;
let gatewayPort = 0;

const strata = (args: string[], token: string): Promise<{ code: number; stdout: string; stderr: string }> =>
  new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env: { PATH: process.env.PATH ?? '', HOME: work, STRATA_URL: d.url, STRATA_TOKEN: token }, timeout: 30_000 },
      (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr }));
  });

const entry = (path: string, type: TarEntry['type'], extra: Partial<TarEntry> = {}): TarEntry =>
  ({ path, type, mode: type === 'dir' ? 0o755 : 0o644, uid: 0, gid: 0, mtime: 1_700_000_000, linkname: '', data: Buffer.alloc(0), ...extra });

const put = (site: string, path: string, archive: Buffer, token: string) =>
  fetch(`${d.url}/v1/tenants/acme/sites/${site}/files?path=${encodeURIComponent(path)}`, {
    method: 'PUT', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-tar' }, body: archive as unknown as BodyInit,
  }).then(async (r) => ({ status: r.status, body: await r.json() as any }));

/** Every path under dir with its type, mode and link target: what a copy must keep. */
function tree(dir: string, rel = ''): string[] {
  return readdirSync(join(dir, rel)).sort().flatMap((name) => {
    const p = rel ? `${rel}/${name}` : name;
    const st = lstatSync(join(dir, p));
    if (st.isSymbolicLink()) return [`${p} -> ${readlinkSync(join(dir, p))}`];
    if (st.isDirectory()) return [`${p}/ ${(st.mode & 0o7777).toString(8)}`, ...tree(dir, p)];
    return [`${p} ${(st.mode & 0o7777).toString(8)} ${readFileSync(join(dir, p), 'utf8')}`];
  });
}

const alertsOf = (tenant: string) => {
  const id = d.daemon.services.store.getTenantByName(tenant)!.id;
  return d.daemon.services.guard.alerts({}).filter((a) => a.tenantId === id).map((a) => `${a.rule} ${String(a.fields['file.path'])}`);
};

before(async () => {
  d = await TestDaemon.start({ gateway: { listeners: [{ id: 'http', address: '127.0.0.1', port: 0, protocol: 'http' }] } });
  gatewayPort = d.daemon.services.gateway!.addresses()[0]!.port;
  acme = await d.tenantWithUser('acme');
  other = await d.tenantWithUser('other');
  mkdirSync(d.docroot('acme', 'www'), { recursive: true });
  writeFileSync(d.docroot('acme', 'www', 'index.html'), 'old');
  assert.equal((await d.request('POST', '/v1/tenants/acme/sites', { token: acme, body: { hostname: 'www.acme.test', target: { kind: 'static', root: 'www' } } })).status, 201);
  await until(() => d.daemon.integrity.monitor.tree(`docroot:${d.daemon.services.store.getTenantByName('acme')!.id}/www`), { ms: 5000, what: 'the docroot baseline' });
});
after(() => d.close());

test('a tree with modes and symlinks goes in and out; served at once, no alert, and the new baseline', async () => {
  const src = join(work, 'site');
  mkdirSync(join(src, 'cgi'), { recursive: true });
  mkdirSync(join(src, 'private'));
  writeFileSync(join(src, 'index.html'), 'new');
  writeFileSync(join(src, 'cgi', 'run.sh'), '#!/bin/sh\necho hi\n');
  chmodSync(join(src, 'cgi', 'run.sh'), 0o755);
  writeFileSync(join(src, 'private', 'notes'), 'n');
  chmodSync(join(src, 'private', 'notes'), 0o600);
  chmodSync(join(src, 'private'), 0o750);
  symlinkSync('index.html', join(src, 'home.html'));
  symlinkSync('../index.html', join(src, 'cgi', 'up.html'));

  const r = await strata(['cp', `${src}/.`, 'site:acme/www.acme.test:/'], acme);
  assert.equal(r.code, 0, r.stderr);
  const root = d.docroot('acme', 'www');
  assert.deepEqual(tree(root), tree(src));
  assert.equal((await viaGateway(gatewayPort, 'www.acme.test', '/')).body, 'new');
  assert.equal((await viaGateway(gatewayPort, 'www.acme.test', '/home.html')).body, 'new');

  const scope = `docroot:${d.daemon.services.store.getTenantByName('acme')!.id}/www`;
  await until(() => d.daemon.integrity.monitor.tree(scope), { ms: 5000, what: 'the docroot watched again' });
  await d.daemon.integrity.monitor.sweep(scope);
  await d.daemon.services.guard.drained();
  assert.deepEqual(alertsOf('acme'), [], 'an authorised copy is no tamper');

  // The copy is the baseline now: a tamper is reverted to it, not to the old content.
  writeFileSync(join(root, 'index.html'), 'defaced');
  await until(async () => (await viaGateway(gatewayPort, 'www.acme.test', '/')).body === 'new', { ms: 5000, what: 'the copied content back' });

  const out = join(work, 'out');
  const back = await strata(['cp', 'site:acme/www.acme.test:/', out], acme);
  assert.equal(back.code, 0, back.stderr);
  assert.deepEqual(tree(out), tree(src));
  const one = await strata(['cp', 'site:acme/www.acme.test:/cgi/run.sh', join(work, 'run.sh')], acme);
  assert.equal(one.code, 0, one.stderr);
  assert.equal((lstatSync(join(work, 'run.sh')).mode & 0o777), 0o755);

  const entries = (await d.request('GET', '/v1/audit/entries?limit=1000')).body.items.map((x: any) => x.entry);
  assert.ok(entries.some((e: any) => e.action === 'site.files.write' && e.target === 'www.acme.test' && e.result === 'ok' && e.details.entries === 7));
});

test('escapes are refused whole, with nothing written', async () => {
  const root = d.docroot('acme', 'www');
  // Planted before its site exists, so it is part of the guard's baseline (planted later, the guard would remove it first).
  const outside = join(work, 'outside');
  mkdirSync(outside, { recursive: true });
  mkdirSync(d.docroot('acme', 'p'), { recursive: true });
  symlinkSync(outside, d.docroot('acme', 'p', 'planted'));
  assert.equal((await d.request('POST', '/v1/tenants/acme/sites', { token: acme, body: { hostname: 'p.acme.test', target: { kind: 'static', root: 'p' } } })).status, 201);
  const before = tree(root);
  const plantedBefore = tree(d.docroot('acme', 'p'));
  const ok = entry('fine.txt', 'file', { data: Buffer.from('x') });
  const cases: Array<[string, Buffer, string, string?]> = [
    ['..', writeTar([ok, entry('../evil', 'file', { data: Buffer.from('x') })]), '/'],
    ['absolute name', writeTar([ok, entry('/etc/evil', 'file', { data: Buffer.from('x') })]), '/'],
    ['absolute symlink', writeTar([ok, entry('etc', 'symlink', { linkname: '/etc' })]), '/'],
    ['climbing symlink', writeTar([ok, entry('a/up', 'symlink', { linkname: '../../x' })]), '/'],
    ['symlink climbing after descending', writeTar([ok, entry('dot', 'symlink', { linkname: '.' }), entry('up', 'symlink', { linkname: 'dot/..' })]), '/'],
    ['hard link out', writeTar([ok, entry('passwd', 'hardlink', { linkname: '/etc/passwd' })]), '/'],
    ['write through its own symlink', writeTar([ok, entry('l', 'symlink', { linkname: 'sub' }), entry('l/x', 'file', { data: Buffer.from('x') })]), '/'],
    ['write through a planted symlink', writeTar([ok, entry('planted/x', 'file', { data: Buffer.from('x') })]), '/', 'p.acme.test'],
    ['destination through a planted symlink', writeTar([ok]), '/planted', 'p.acme.test'],
    ['destination with ..', writeTar([ok]), '/../www'],
  ];
  // A device node: writeTar leaves 'other' out, so the header is patched by hand (typeflag 3, checksum redone).
  const device = writeTar([ok, entry('null', 'file')]);
  device[512 * 2 + 156] = '3'.charCodeAt(0);
  device.fill(32, 512 * 2 + 148, 512 * 2 + 156);
  let sum = 0;
  for (let i = 512 * 2; i < 512 * 3; i++) sum += device[i]!;
  device.write(sum.toString(8).padStart(6, '0') + '\0 ', 512 * 2 + 148, 8, 'ascii');
  cases.push(['device node', device, '/']);
  for (const [what, archive, path, site] of cases) {
    const r = await put(site ?? 'www.acme.test', path, archive, acme);
    assert.equal(r.status, 422, `${what}: ${JSON.stringify(r.body)}`);
    assert.equal(r.body.error.code, 'STRATA_ERR_PATH_ESCAPE', what);
  }
  assert.deepEqual(tree(root), before, 'nothing of a refused copy is left');
  assert.deepEqual(tree(d.docroot('acme', 'p')), plantedBefore);
  assert.deepEqual(readdirSync(outside), [], 'nothing written through the planted symlink');

  const setuid = await put('www.acme.test', '/bin', writeTar([entry('tool', 'file', { mode: 0o4755, data: Buffer.from('x') })]), acme);
  assert.equal(setuid.status, 200, JSON.stringify(setuid.body));
  assert.deepEqual(setuid.body.stripped, ['tool']);
  assert.equal(lstatSync(join(root, 'bin', 'tool')).mode & 0o7777, 0o755);
});

test('a copy over the disk quota is refused before anything is written', async () => {
  const small = await d.tenantWithUser('small', 'tenant-admin', { diskMiB: 1 });
  mkdirSync(d.docroot('small', 'w'), { recursive: true });
  assert.equal((await d.request('POST', '/v1/tenants/small/sites', { token: small, body: { hostname: 'w.small.test', target: { kind: 'static', root: 'w' } } })).status, 201);
  const big = writeTar([entry('a.bin', 'file', { data: Buffer.alloc(600 * 1024) }), entry('b.bin', 'file', { data: Buffer.alloc(600 * 1024) })]);
  const r = await fetch(`${d.url}/v1/tenants/small/sites/w.small.test/files?path=/`, { method: 'PUT', headers: { authorization: `Bearer ${small}`, 'content-type': 'application/x-tar' }, body: big as unknown as BodyInit });
  assert.equal(r.status, 422);
  assert.equal(((await r.json()) as any).error.code, 'STRATA_ERR_QUOTA_EXCEEDED');
  assert.deepEqual(readdirSync(d.docroot('small', 'w')), []);
  const fits = writeTar([entry('a.bin', 'file', { data: Buffer.alloc(600 * 1024) })]);
  const ok = await fetch(`${d.url}/v1/tenants/small/sites/w.small.test/files?path=/`, { method: 'PUT', headers: { authorization: `Bearer ${small}`, 'content-type': 'application/x-tar' }, body: fits as unknown as BodyInit });
  assert.equal(ok.status, 200);
});

test("another tenant's docroot and instances are not found", async () => {
  const archive = writeTar([entry('x', 'file', { data: Buffer.from('x') })]);
  assert.equal((await put('www.acme.test', '/', archive, other)).status, 404);
  assert.equal((await d.request('GET', '/v1/tenants/acme/sites/www.acme.test/files?path=/', { token: other })).status, 404);
  assert.equal((await d.request('GET', '/v1/tenants/acme/instances/web/files?path=/', { token: other })).status, 404);
  assert.ok(!existsSync(d.docroot('acme', 'www', 'x')));
  const r = await strata(['cp', join(work, 'site', 'index.html'), 'site:acme/www.acme.test:/x'], other);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /not found/);
});
