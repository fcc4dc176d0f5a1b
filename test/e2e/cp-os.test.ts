/**
 * `strata cp` into and out of a running os instance (runc, busybox), through
 * the API, into its data volume (the container's root is read-only): a tree with modes and symlinks round-trips; escapes in the archive
 * are refused; a copy over the instance's disk is refused with nothing left;
 * another tenant gets 404; a stopped instance is refused. The planted-symlink
 * attack is test/attacks/os/cp-symlink.test.ts.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { readTar, writeTar, type TarEntry } from '../../src/core/tar.js';
import { OsDriver } from '../../src/levels/os/driver.js';
import { builtinImages, claimSlot, leftovers, testDriverOptions } from '../levels/os/helpers.js';
import { TestDaemon } from '../support/harness.js';

const options = testDriverOptions(await claimSlot());
let d: TestDaemon;
let driver: OsDriver;
let acme: string;
let other: string;
let id = '';

const entry = (path: string, type: TarEntry['type'], extra: Partial<TarEntry> = {}): TarEntry =>
  ({ path, type, mode: type === 'dir' ? 0o755 : 0o644, uid: 0, gid: 0, mtime: 1_700_000_000, linkname: '', data: Buffer.alloc(0), ...extra });

const put = (tenant: string, name: string, path: string, archive: Buffer, token: string) =>
  fetch(`${d.url}/v1/tenants/${tenant}/instances/${name}/files?path=${encodeURIComponent(path)}`, {
    method: 'PUT', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-tar' }, body: archive as unknown as BodyInit,
  }).then(async (r) => ({ status: r.status, body: await r.json() as any }));

const get = async (path: string, token: string) => {
  const r = await fetch(`${d.url}/v1/tenants/acme/instances/web/files?path=${encodeURIComponent(path)}`, { headers: { authorization: `Bearer ${token}` } });
  return { status: r.status, name: r.headers.get('x-strata-copy-name'), bytes: Buffer.from(await r.arrayBuffer()) };
};

/** What a copy must keep, per member: type, mode, content or link target. */
const shape = (entries: TarEntry[]): string[] => entries
  .map((e) => `${e.path} ${e.type} ${(e.mode & 0o7777).toString(8)} ${e.type === 'symlink' ? e.linkname : e.data.toString('utf8')}`).sort();

const inside = async (cmd: string): Promise<string> => (await driver.run(id, ['sh', '-c', cmd])).stdout;

before(async () => {
  await builtinImages();
  driver = new OsDriver(options);
  d = await TestDaemon.start({ drivers: [driver] });
  acme = await d.tenantWithUser('acme', 'tenant-admin', { instances: 2, vcpus: 2, memoryMiB: 512, diskMiB: 2048 });
  other = await d.tenantWithUser('other');
  const l = await d.request('POST', '/v1/tenants/acme/instances?wait=60', { token: acme, body: { name: 'web', level: 'os', source: 'busybox', limits: { memoryMiB: 64, diskMiB: 16 }, config: { volumeMiB: 16 } } });
  assert.equal(l.status, 200, JSON.stringify(l.body));
  assert.equal(l.body.operation.status, 'succeeded', JSON.stringify(l.body.operation));
  id = l.body.instance.id;
});

after(async () => {
  await d.request('DELETE', '/v1/tenants/acme/instances/web?wait=60', { token: acme });
  await d.close();
  assert.deepEqual(await leftovers(options), { containers: [], mounts: [], links: [], cgroups: [], firewall: [], instances: [] });
});

test('a tree with modes and symlinks goes into a running container and comes back the same', async () => {
  const tree = [
    entry('app', 'dir', { mode: 0o750 }),
    entry('app/index.html', 'file', { data: Buffer.from('hello') }),
    entry('app/run.sh', 'file', { mode: 0o755, data: Buffer.from('#!/bin/sh\necho hi\n') }),
    entry('app/secret', 'file', { mode: 0o600, data: Buffer.from('s') }),
    entry('app/home.html', 'symlink', { mode: 0o777, linkname: 'index.html' }),
    entry('app/lib', 'dir'),
    entry('app/lib/up', 'symlink', { mode: 0o777, linkname: '../run.sh' }),
  ];
  const r = await put('acme', 'web', '/data', writeTar(tree), acme);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(await inside('cat /data/app/home.html; sh /data/app/lib/up'), 'hellohi\n');
  assert.equal(await inside('stat -c "%a %U" /data/app /data/app/run.sh /data/app/secret'), '750 root\n755 root\n600 root\n');

  const out = await get('/data/app', acme);
  assert.equal(out.status, 200);
  assert.equal(out.name, 'app');
  assert.deepEqual(shape(readTar(out.bytes)), shape(tree));
  assert.equal((await get('/no/such/path', acme)).status, 404);

  const entries = (await d.request('GET', '/v1/audit/entries?limit=1000')).body.items.map((x: any) => x.entry);
  assert.ok(entries.some((e: any) => e.action === 'instance.files.write' && e.target === 'acme/web' && e.details.path === '/data'));
});

test('escapes in the archive are refused, with nothing written', async () => {
  const ok = entry('fine', 'file', { data: Buffer.from('x') });
  for (const [what, archive] of [
    ['..', writeTar([ok, entry('../../etc/evil', 'file', { data: Buffer.from('x') })])],
    ['absolute symlink', writeTar([ok, entry('etc', 'symlink', { linkname: '/etc' })])],
    ['climbing symlink', writeTar([ok, entry('up', 'symlink', { linkname: '../../..' })])],
  ] as const) {
    const r = await put('acme', 'web', '/data/esc', archive, acme);
    assert.equal(r.status, 422, `${what}: ${JSON.stringify(r.body)}`);
    assert.equal(r.body.error.code, 'STRATA_ERR_PATH_ESCAPE');
  }
  assert.equal(await inside('ls /data/esc 2>&1 || true'), 'ls: /data/esc: No such file or directory\n');
});

test("a copy over the instance's disk (its 16 MiB volume) is refused before anything is written; the read-only root too", async () => {
  const r = await put('acme', 'web', '/data/big', writeTar([entry('a', 'file', { data: Buffer.alloc(8 * 1024 * 1024) }), entry('b', 'file', { data: Buffer.alloc(9 * 1024 * 1024) })]), acme);
  assert.equal(r.status, 422, JSON.stringify(r.body));
  assert.equal(r.body.error.code, 'STRATA_ERR_QUOTA_EXCEEDED');
  assert.equal(await inside('ls /data/big 2>&1 || true'), 'ls: /data/big: No such file or directory\n');
  const ro = await put('acme', 'web', '/srv', writeTar([entry('x', 'file', { data: Buffer.from('x') })]), acme);
  assert.equal(ro.status, 409, JSON.stringify(ro.body));
});

test('another tenant gets 404; a stopped instance is refused', async () => {
  const archive = writeTar([entry('x', 'file', { data: Buffer.from('x') })]);
  assert.equal((await put('acme', 'web', '/data', archive, other)).status, 404);
  assert.equal((await get('/data/app', other)).status, 404);
  assert.equal(await inside('ls /data/x 2>&1 || true'), 'ls: /data/x: No such file or directory\n');
  const stop = await d.request('POST', '/v1/tenants/acme/instances/web/stop?wait=60', { token: acme });
  assert.equal(stop.body.operation.status, 'succeeded', JSON.stringify(stop.body));
  const r = await put('acme', 'web', '/data', archive, acme);
  assert.equal(r.status, 409, JSON.stringify(r.body));
});
