/**
 * Attack: a tenant plants symlinks in its own container (`/data/evil -> /etc`,
 * `/data/t -> /tmp`) and then asks `strata cp` to write through them, or to
 * read through them, hoping the copy runs on the host and follows them there.
 * The copy runs inside the container (its own tar, its mount and user
 * namespaces): the links resolve to the container's own /etc (read-only: the
 * copy is refused) and /tmp; the host's /etc and /tmp are untouched, and a copy
 * out hands back the link itself, not the host's files.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { readTar, writeTar, type TarEntry } from '../../../src/core/tar.js';
import { OsDriver } from '../../../src/levels/os/driver.js';
import { builtinImages, claimSlot, leftovers, testDriverOptions } from '../../levels/os/helpers.js';
import { TestDaemon } from '../../support/harness.js';

const options = testDriverOptions(await claimSlot());
let d: TestDaemon;
let driver: OsDriver;
let acme: string;
let id = '';

const file = (path: string, data: string): TarEntry =>
  ({ path, type: 'file', mode: 0o644, uid: 0, gid: 0, mtime: 1_700_000_000, linkname: '', data: Buffer.from(data) });

const put = (path: string, archive: Buffer) =>
  fetch(`${d.url}/v1/tenants/acme/instances/web/files?path=${encodeURIComponent(path)}`, {
    method: 'PUT', headers: { authorization: `Bearer ${acme}`, 'content-type': 'application/x-tar' }, body: archive as unknown as BodyInit,
  }).then(async (r) => ({ status: r.status, body: await r.json() as any }));

before(async () => {
  await builtinImages();
  driver = new OsDriver(options);
  d = await TestDaemon.start({ drivers: [driver] });
  acme = await d.tenantWithUser('acme', 'tenant-admin', { instances: 1, vcpus: 1, memoryMiB: 256, diskMiB: 1024 });
  const l = await d.request('POST', '/v1/tenants/acme/instances?wait=60', { token: acme, body: { name: 'web', level: 'os', source: 'busybox', limits: { memoryMiB: 64, diskMiB: 16 }, config: { volumeMiB: 16 } } });
  assert.equal(l.body.operation?.status, 'succeeded', JSON.stringify(l.body));
  id = l.body.instance.id;
  const planted = await driver.run(id, ['sh', '-c', 'ln -s /etc /data/evil && ln -s /tmp /data/t && ls -l /data']);
  assert.match(planted.stdout, /evil -> \/etc/);
});

after(async () => {
  await d.request('DELETE', '/v1/tenants/acme/instances/web?wait=60', { token: acme });
  await d.close();
  assert.deepEqual(await leftovers(options), { containers: [], mounts: [], links: [], cgroups: [], firewall: [], instances: [] });
});

test('writes through a planted symlink never reach the host', async () => {
  const probe = `strata-cp-probe-${randomUUID().slice(0, 8)}`;
  // Through the link inside the archive's path, and as the destination itself: the container's /etc is read-only.
  const through = await put('/data', writeTar([file(`evil/${probe}`, 'pwned')]));
  assert.notEqual(through.status, 200, JSON.stringify(through.body));
  assert.ok(through.status < 500, JSON.stringify(through.body));
  const asDest = await put('/data/evil', writeTar([file(probe, 'pwned')]));
  assert.notEqual(asDest.status, 200, JSON.stringify(asDest.body));
  assert.ok(!existsSync(`/etc/${probe}`), "the host's /etc is untouched");

  // A writable target: the write lands in the container's /tmp, not the host's.
  const tmp = await put('/data/t', writeTar([file(probe, 'inside')]));
  assert.equal(tmp.status, 200, JSON.stringify(tmp.body));
  assert.equal((await driver.run(id, ['cat', `/tmp/${probe}`])).stdout, 'inside');
  assert.ok(!existsSync(`/tmp/${probe}`), "the host's /tmp is untouched");
});

test('a copy out of a planted symlink is the link, not what it points at on the host', async () => {
  const r = await fetch(`${d.url}/v1/tenants/acme/instances/web/files?path=/data/evil`, { headers: { authorization: `Bearer ${acme}` } });
  assert.equal(r.status, 200);
  const entries = readTar(Buffer.from(await r.arrayBuffer()));
  assert.deepEqual(entries.map((e) => [e.path, e.type, e.linkname]), [['evil', 'symlink', '/etc']]);
});
