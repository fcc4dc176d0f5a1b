/**
 * The OCI importer, against a tiny image this test builds itself (a tar writer
 * and an OCI layout writer below): two layers — the second with a file whiteout
 * and an opaque directory — as a layout directory and as a tarball; corrupt
 * blobs, climbing paths, symlink tricks and a /proc working directory refused;
 * and the imported image launched by the driver, serving HTTP.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { isStrataError } from '../../../src/core/errors.js';
import { OsDriver } from '../../../src/levels/os/driver.js';
import { ImageStore } from '../../../src/levels/os/images.js';
import { importOciImage, type ImportProgress } from '../../../src/levels/os/oci-import.js';
import { claimSlot, spec, testDriverOptions, waitFor200 } from './helpers.js';

import { sha, tar, writeLayout, type TarInput } from './oci-layout.js';
import { tempDir } from '../../support/temp.js';

const busybox = readFileSync('/bin/busybox');
const baseLayer = (): Buffer => gzipSync(tar([
  { path: 'bin', type: 'dir' },
  { path: 'bin/busybox', content: busybox, mode: 0o755 },
  { path: 'bin/sh', type: 'symlink', linkname: 'busybox' },
  { path: 'bin/httpd', type: 'symlink', linkname: 'busybox' },
  { path: 'etc', type: 'dir' },
  { path: 'etc/hello', content: 'layer one\n' },
  { path: 'gone', content: 'deleted by layer two\n' },
  { path: 'opaque', type: 'dir' },
  { path: 'opaque/a', content: 'a' },
  { path: 'opaque/b', content: 'b' },
  { path: 'www', type: 'dir' },
  { path: 'www/index.html', content: 'imported ok\n' },
  ...['proc', 'sys', 'dev', 'tmp', 'data'].map((d) => ({ path: d, type: 'dir' as const })),
]));
const upperLayer = (): Buffer => tar([
  { path: '.wh.gone', content: '' },
  { path: 'opaque', type: 'dir' },
  { path: 'opaque/c', content: 'c' },
  { path: 'opaque/.wh..wh..opq', content: '' },
  { path: 'etc/hello', content: 'layer two\n' },
]);
const httpdConfig = { Cmd: ['/bin/httpd', '-f', '-p', '8080', '-h', '/www'], Env: ['GREETING=hi'], WorkingDir: '/', ExposedPorts: { '8080/tcp': {} } };

const rejectsValidation = (p: Promise<unknown>, pattern: RegExp): Promise<void> =>
  assert.rejects(p, (e: unknown) => {
    assert.ok(isStrataError(e), String(e));
    assert.equal(e.code, 'STRATA_ERR_VALIDATION');
    assert.match(e.message, pattern);
    return true;
  });

describe('os image import', () => {
  let work: string;
  let store: ImageStore;

  before(async () => {
    work = tempDir('import-test');
    store = new ImageStore(join(work, 'images'));
  });

  const layout = async (name: string, layers = [{ blob: baseLayer(), gzip: true }, { blob: upperLayer(), gzip: false }], config: Record<string, unknown> = httpdConfig): Promise<string> => {
    const dir = join(work, name);
    await writeLayout(dir, layers, config);
    return dir;
  };

  const assertApplied = (rootfs: string): void => {
    assert.equal(readFileSync(join(rootfs, 'etc/hello'), 'utf8'), 'layer two\n');
    assert.ok(!existsSync(join(rootfs, 'gone')), 'the whiteout deleted gone');
    assert.deepEqual(readdirSync(join(rootfs, 'opaque')).sort(), ['c'], 'the opaque dir keeps only its own layer');
    assert.ok(!readdirSync(rootfs).some((n) => n.startsWith('.wh.')), 'no whiteout file lands in the rootfs');
    assert.equal(sha(readFileSync(join(rootfs, 'bin/busybox'))), sha(busybox));
  };

  test('a layout directory: layers applied in order with whiteouts; run config from the image config; progress reported', async () => {
    const progress: ImportProgress[] = [];
    const { manifest } = await importOciImage(store, await layout('plain'), 'tiny', (p) => progress.push(p));
    const image = await store.resolve('tiny');
    assertApplied(image.rootfs);
    assert.deepEqual(manifest.config, { args: ['/bin/httpd', '-f', '-p', '8080', '-h', '/www'], env: ['GREETING=hi'], cwd: '/', port: 8080 });
    assert.match(manifest.source, /^oci:sha256:[0-9a-f]{64}$/);
    assert.equal(manifest.files['etc/hello'], sha(Buffer.from('layer two\n')));
    assert.deepEqual(progress.map((p) => p.layer), [1, 2]);
    assert.equal(progress.at(-1)!.doneBytes, progress.at(-1)!.bytes);
  });

  test('a tarball of the layout, gzipped', async () => {
    const dir = await layout('for-tarball');
    const files: TarInput[] = [];
    const walk = (rel: string): void => {
      for (const entry of readdirSync(join(dir, rel), { withFileTypes: true })) {
        const path = rel ? `${rel}/${entry.name}` : entry.name;
        if (entry.isDirectory()) {
          files.push({ path, type: 'dir' });
          walk(path);
        } else files.push({ path, content: readFileSync(join(dir, path)) });
      }
    };
    walk('');
    const tarball = join(work, 'image.tar.gz');
    await writeFile(tarball, gzipSync(tar(files)));
    await importOciImage(store, tarball, 'from-tarball');
    assertApplied((await store.resolve('from-tarball')).rootfs);
  });

  test('a layer that does not match its digest is refused and nothing reaches the store', async () => {
    const dir = await layout('corrupt');
    const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
    const manifest = JSON.parse(await readFile(join(dir, 'blobs/sha256', index.manifests[0]!.digest.slice(7)), 'utf8')) as { layers: Array<{ digest: string }> };
    const layerPath = join(dir, 'blobs/sha256', manifest.layers[1]!.digest.slice(7));
    const bytes = await readFile(layerPath);
    bytes[600] = bytes[600]! ^ 0xff;
    await writeFile(layerPath, bytes);
    await rejectsValidation(importOciImage(store, dir, 'corrupt'), /does not match its digest/);
    await assert.rejects(store.resolve('corrupt'));
    assert.ok(!readdirSync(store.dir).some((n) => n.startsWith('.staging')), 'the staging dir is gone');
  });

  test('an entry climbing out with .. is refused', async () => {
    const evil = tar([{ path: '../../escape', content: 'x' }]);
    await rejectsValidation(importOciImage(store, await layout('climb', [{ blob: evil, gzip: false }]), 'climb'), /climbs out/);
  });

  test('a symlink to a host directory, then a file through it, stays inside the rootfs', async () => {
    const hostDir = join(work, 'host-target');
    await mkdir(hostDir);
    const layer1 = tar([{ path: 'bin', type: 'dir' }, { path: 'bin/sh', content: '' }, { path: 'link', type: 'symlink', linkname: hostDir }, { path: 'rel', type: 'symlink', linkname: '../../../../..' }]);
    const layer2 = tar([{ path: 'link/pwned', content: 'pwned' }, { path: 'rel/tmp-pwned', content: 'pwned' }]);
    await importOciImage(store, await layout('symlinks', [{ blob: layer1, gzip: false }, { blob: layer2, gzip: false }], { Cmd: ['/bin/sh'] }), 'symlinks');
    assert.deepEqual(readdirSync(hostDir), [], 'nothing was written to the host directory');
    const rootfs = (await store.resolve('symlinks')).rootfs;
    assert.equal(readFileSync(join(rootfs, hostDir, 'pwned'), 'utf8'), 'pwned', 'the file landed at the same path inside the rootfs');
    assert.equal(readFileSync(join(rootfs, 'tmp-pwned'), 'utf8'), 'pwned', '.. stops at the rootfs');
  });

  test('a working directory under /proc (CVE-2024-21626) is refused', async () => {
    await rejectsValidation(importOciImage(store, await layout('cwd', undefined, { ...httpdConfig, WorkingDir: '/proc/self/fd/7' }), 'cwd'), /outside \/proc/);
  });

  test('a missing oci-layout and a missing blob are refused', async () => {
    const dir = await layout('broken');
    await rm(join(dir, 'oci-layout'));
    await rejectsValidation(importOciImage(store, dir, 'broken'), /not an OCI image layout/);
    const dir2 = await layout('missing-blob');
    for (const blob of readdirSync(join(dir2, 'blobs/sha256'))) if (readFileSync(join(dir2, 'blobs/sha256', blob))[0] === 0x1f) await rm(join(dir2, 'blobs/sha256', blob));
    await rejectsValidation(importOciImage(store, dir2, 'missing'), /is missing/);
  });

  test('the imported image runs as an instance and serves HTTP', { timeout: 60_000 }, async () => {
    const images = join(work, 'run-images');
    await importOciImage(new ImageStore(images), await layout('runnable'), 'tiny');
    const options = testDriverOptions(await claimSlot(), { imagesDir: images });
    const driver = new OsDriver(options);
    assert.ok((await driver.provision()).available);
    const id = `import-${process.pid}`;
    try {
      await driver.create(spec(id, 'importer', { source: 'tiny' }));
      await driver.start(id);
      const { address, port } = await driver.address(id);
      assert.equal(port, 8080);
      assert.equal((await waitFor200(address, port!)).body, 'imported ok\n');
      assert.match((await driver.run(id, ['sh', '-c', 'echo $GREETING'])).stdout, /^hi$/m);
    } finally {
      await driver.stop(id, { graceMs: 100 }).catch(() => undefined);
      await driver.delete(id);
      await driver.cleanup();
    }
  });

  test("the image's User (a name from its /etc/passwd) runs the process, with its groups; config.user overrides it", { timeout: 60_000 }, async () => {
    const images = join(work, 'user-images');
    const users = tar([
      { path: 'etc/passwd', content: 'root:x:0:0::/:/bin/sh\nweb:x:1000:1000::/www:/bin/sh\n' },
      { path: 'etc/group', content: 'root:x:0:\nweb:x:1000:\nstaff:x:50:web\n' },
    ]);
    const imported = await importOciImage(new ImageStore(images), await layout('with-user', [{ blob: baseLayer(), gzip: true }, { blob: users, gzip: false }], { ...httpdConfig, User: 'web' }), 'tiny-user');
    assert.equal(imported.manifest.config.user, 'web');
    const options = testDriverOptions(await claimSlot(), { imagesDir: images });
    const driver = new OsDriver(options);
    assert.ok((await driver.provision()).available);
    const ids = [`user-${process.pid}-a`, `user-${process.pid}-b`];
    const status = async (id: string): Promise<{ uid: string; gid: string; groups: string }> => {
      const text = (await driver.run(id, ['/bin/busybox', 'cat', '/proc/1/status'])).stdout;
      const field = (name: string): string => new RegExp(`^${name}:[ \\t]*(.*)$`, 'm').exec(text)?.[1]?.trim() ?? '';
      return { uid: field('Uid').split(/\s+/)[0]!, gid: field('Gid').split(/\s+/)[0]!, groups: field('Groups') };
    };
    try {
      await driver.create(spec(ids[0]!, 'importer', { source: 'tiny-user' }));
      await driver.start(ids[0]!);
      const { address, port } = await driver.address(ids[0]!);
      assert.equal((await waitFor200(address, port!)).body, 'imported ok\n', 'serves as an unprivileged user');
      assert.deepEqual(await status(ids[0]!), { uid: '1000', gid: '1000', groups: '50' });
      await driver.create(spec(ids[1]!, 'importer', { source: 'tiny-user', config: { user: '4242:4343' } }));
      await driver.start(ids[1]!);
      const b = await driver.address(ids[1]!);
      await waitFor200(b.address, b.port!);
      assert.deepEqual(await status(ids[1]!), { uid: '4242', gid: '4343', groups: '' });
      await assert.rejects(driver.create(spec(`user-${process.pid}-c`, 'importer', { source: 'tiny-user', config: { user: 'ghost' } })),
        (e: unknown) => isStrataError(e) && e.code === 'STRATA_ERR_VALIDATION' && /ghost/.test(e.message));
    } finally {
      for (const id of ids) {
        await driver.stop(id, { graceMs: 100 }).catch(() => undefined);
        await driver.delete(id).catch(() => undefined);
      }
      await driver.cleanup();
    }
  });

  test("exec runs as the image's User, as docker exec does (with and without a tty); another user only inside the tenant's ids", { timeout: 60_000 }, async () => {
    const images = join(work, 'exec-user-images');
    const users = tar([
      { path: 'etc/passwd', content: 'root:x:0:0::/:/bin/sh\nweb:x:1000:1000::/www:/bin/sh\n' },
      { path: 'etc/group', content: 'root:x:0:\nweb:x:1000:\nstaff:x:50:web\n' },
    ]);
    await importOciImage(new ImageStore(images), await layout('exec-user', [{ blob: baseLayer(), gzip: true }, { blob: users, gzip: false }], { ...httpdConfig, User: '1000' }), 'tiny-exec-user');
    const options = testDriverOptions(await claimSlot(), { imagesDir: images });
    const driver = new OsDriver(options);
    assert.ok((await driver.provision()).available);
    const id = `exec-user-${process.pid}`;
    const exec = async (argv: string[], opts: { tty: boolean; user?: string }): Promise<string> => {
      const session = await driver.exec(id, argv, opts);
      let out = '';
      session.stdout.on('data', (c: Buffer) => (out += c.toString('utf8')));
      session.stderr?.on('data', (c: Buffer) => (out += c.toString('utf8')));
      session.stdin.end();
      assert.equal(await session.exit, 0, out);
      return out.replace(/\r/g, '').trim();
    };
    try {
      await driver.create(spec(id, 'importer', { source: 'tiny-exec-user' }));
      await driver.start(id);
      for (const tty of [false, true]) {
        assert.equal(await exec(['/bin/busybox', 'id', '-u'], { tty }), '1000', `tty=${tty}: the image's User`);
      }
      assert.equal((await driver.run(id, ['/bin/busybox', 'id', '-u'])).stdout.trim(), '1000', 'run too');
      assert.equal(await exec(['/bin/busybox', 'id', '-u'], { tty: false, user: '0' }), '0', 'root on request');
      assert.equal(await exec(['/bin/sh', '-c', '/bin/busybox id -u; /bin/busybox id -g'], { tty: true, user: 'web:staff' }), '1000\n50', 'a name from the image');
      assert.equal((await driver.run(id, ['/bin/busybox', 'id', '-u'], { user: '4242' })).stdout.trim(), '4242');
      await rejectsValidation(driver.exec(id, ['/bin/busybox', 'id'], { tty: false, user: '70000' }), /outside the ids/);
      await rejectsValidation(driver.exec(id, ['/bin/busybox', 'id'], { tty: false, user: 'ghost' }), /ghost/);
    } finally {
      await driver.stop(id, { graceMs: 100 }).catch(() => undefined);
      await driver.delete(id).catch(() => undefined);
      await driver.cleanup();
    }
  });
});
