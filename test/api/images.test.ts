/**
 * `/v1/images` over the real os driver: the built-in images listed with digest
 * and size; an OCI layout imported through the API by a provider-admin (an
 * operation, audited) and then listed and launchable; tenants list but never import.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { cp } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { OsDriver } from '../../src/levels/os/driver.js';
import { builtinImages, claimSlot, testDriverOptions } from '../levels/os/helpers.js';
import { tar, writeLayout } from '../levels/os/oci-layout.js';
import { TestDaemon } from '../support/harness.js';
import { tempDir } from '../support/temp.js';

let d: TestDaemon;
let work: string;
let member: string;
let driver: OsDriver;

before(async () => {
  await builtinImages();
  work = tempDir('images-api');
  // A store of this test's own, seeded with the built-in busybox: imports here never touch the machine's store.
  await cp('/var/lib/strata/images/busybox', join(work, 'images', 'busybox'), { recursive: true });
  driver = new OsDriver(testDriverOptions(await claimSlot(), { imagesDir: join(work, 'images') }));
  d = await TestDaemon.start({ drivers: [driver] });
  await d.tenantWithUser('acme', 'tenant-admin');
  member = await d.userToken('acme-member', 'tenant-member', 'acme');
});
after(async () => {
  await d.close();
});

test('lists the built-in images with digest and size, to tenants too', async () => {
  const r = await d.request('GET', '/v1/images', { token: member });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const busybox = r.body.items.find((i: { name: string }) => i.name === 'busybox');
  assert.ok(busybox, JSON.stringify(r.body));
  assert.equal(busybox.level, 'os');
  assert.equal(busybox.builtin, true);
  assert.match(busybox.digest, /^[0-9a-f]{64}$/);
  const manifest = JSON.parse(readFileSync(join(work, 'images', 'busybox', 'manifest.json'), 'utf8')) as { digest: string };
  assert.equal(busybox.digest, manifest.digest);
  assert.ok(busybox.sizeBytes >= readFileSync('/bin/busybox').length, `size ${busybox.sizeBytes}`);
  assert.deepEqual((await d.request('GET', '/v1/images?level=vm')).body.items, []);
});

test('a provider-admin imports an OCI layout through the API; it is listed and audited; tenants may not import', async () => {
  const layout = join(work, 'layout');
  const layer = gzipSync(tar([
    { path: 'bin', type: 'dir' },
    { path: 'bin/busybox', content: readFileSync('/bin/busybox'), mode: 0o755 },
    { path: 'www', type: 'dir' },
    { path: 'www/index.html', content: 'via the api\n' },
  ]));
  await writeLayout(layout, [{ blob: layer, gzip: true }], { Cmd: ['/bin/busybox', 'httpd', '-f', '-p', '8080', '-h', '/www'], User: '1000:1000' });

  const refused = await d.request('POST', '/v1/images', { token: member, body: { name: 'mine', path: layout } });
  assert.equal(refused.status, 403);
  const relative = await d.request('POST', '/v1/images', { body: { name: 'rel', path: 'layout' } });
  assert.equal(relative.status, 400);

  const r = await d.request('POST', '/v1/images?wait=30', { body: { name: 'tiny', path: layout } });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.operation.status, 'succeeded', JSON.stringify(r.body.operation));
  const imported = r.body.operation.result.image;
  assert.equal(imported.name, 'tiny');
  assert.equal(imported.builtin, false);
  assert.match(imported.source, /^oci:sha256:/);
  const listed = (await d.request('GET', '/v1/images', { token: member })).body.items.map((i: { name: string }) => i.name);
  assert.deepEqual(listed, ['busybox', 'tiny']);

  const bad = await d.request('POST', '/v1/images?wait=30', { body: { name: 'nothing', path: join(work, 'no-such-layout') } });
  assert.equal(bad.body.operation.status, 'failed');

  const audit = ((await d.request('GET', '/v1/audit/entries?limit=1000')).body.items as Array<{ entry: { action: string; target: string; result: string } }>).map((x) => x.entry);
  assert.ok(audit.some((e) => e.action === 'image.import' && e.target === 'tiny'));
  assert.ok(audit.some((e) => e.action === 'image.import.done' && e.target === 'tiny' && e.result === 'ok'));
  assert.ok(audit.some((e) => e.action === 'image.import.done' && e.target === 'nothing' && e.result === 'error'));
});
