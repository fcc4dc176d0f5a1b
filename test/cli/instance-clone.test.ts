/**
 * The CLI's `instance clone`, `instance launch --restart`, `image list` and
 * `image import`, run as `bin/strata` child processes against a live daemon
 * whose os driver is a fake that can clone, has images and imports them.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, test } from 'node:test';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ImageInfo, InstanceSpec } from '../../src/levels/driver.js';
import { FakeDriver } from '../support/fake-driver.js';
import { TestDaemon } from '../support/harness.js';

const BIN = fileURLToPath(new URL('../../../bin/strata', import.meta.url));

class CloningFake extends FakeDriver {
  constructor() {
    super({ level: 'os', supports: ['pause', 'resume', 'snapshot', 'restore', 'clone'] });
  }
  async clone(spec: InstanceSpec): Promise<void> {
    await this.create(spec);
  }
  async listImages(): Promise<ImageInfo[]> {
    return [{ name: 'busybox', level: 'os', source: 'builtin:busybox', builtin: true, digest: 'ab'.repeat(32), sizeBytes: 2_200_000, createdAt: new Date().toISOString() }];
  }
  readonly imported: Array<{ path: string; name: string }> = [];
  async importImage(path: string, name: string): Promise<ImageInfo> {
    this.imported.push({ path, name });
    return { name, level: 'os', source: `oci:${path}`, builtin: false, digest: 'cd'.repeat(32), sizeBytes: 4096, createdAt: new Date().toISOString() };
  }
}

let fake: CloningFake;

let d: TestDaemon;
const strata = (args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
  new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], {
      env: { PATH: process.env.PATH ?? '', STRATA_URL: d.url, STRATA_TOKEN: d.adminToken, STRATA_REASON: 'cli test' },
    }, (error, stdout, stderr) => resolve({ code: error ? Number(error.code ?? 1) : 0, stdout, stderr }));
  });

before(async () => {
  fake = new CloningFake();
  d = await TestDaemon.start({ drivers: [fake] });
  await d.tenantWithUser('acme', 'tenant-admin');
});
after(() => d.close());

test('launch --restart sets the policy; clone makes a running copy from a snapshot', async () => {
  const launched = await strata(['--reason', 'cli test', 'instance', 'launch', 'acme/web', '--level', 'os', '--source', 'busybox', '--restart', 'always']);
  assert.equal(launched.code, 0, launched.stderr);
  const shown = await strata(['--json', 'instance', 'show', 'acme/web']);
  assert.equal(JSON.parse(shown.stdout).config.restart, 'always');
  const bad = await strata(['--reason', 'cli test', 'instance', 'launch', 'acme/x', '--level', 'os', '--restart', 'sometimes']);
  assert.notEqual(bad.code, 0);

  assert.equal((await strata(['--reason', 'cli test', 'snapshot', 'create', 'acme/web', 'snap'])).code, 0);
  const cloned = await strata(['--reason', 'cli test', 'instance', 'clone', 'acme/web', 'snap', 'copy']);
  assert.equal(cloned.code, 0, cloned.stderr);
  assert.match(cloned.stdout, /cloned acme\/copy: running/);
  const missing = await strata(['--reason', 'cli test', 'instance', 'clone', 'acme/web', 'nope', 'copy2']);
  assert.notEqual(missing.code, 0);
  assert.match(missing.stderr, /not found|no snapshot/i);
});

test('image list shows the daemon\'s images with digest and size', async () => {
  const listed = await strata(['image', 'list']);
  assert.equal(listed.code, 0, listed.stderr);
  assert.match(listed.stdout, /busybox\s+os\s+built-in\s+abababababab/);
  const json = JSON.parse((await strata(['--json', 'image', 'list'])).stdout);
  assert.equal(json.items[0].sizeBytes, 2_200_000);
});

test('image import goes through the daemon: the file as its absolute path, the operation waited for', async () => {
  const imported = await strata(['--reason', 'cli test', 'image', 'import', 'some/layout', '--name', 'mine']);
  assert.equal(imported.code, 0, imported.stderr);
  assert.match(imported.stdout, /imported mine \(cdcdcdcdcdcd/);
  assert.deepEqual(fake.imported, [{ path: resolve('some/layout'), name: 'mine' }]);
  const wrongLevel = await strata(['--reason', 'cli test', 'image', 'import', '/x', '--name', 'other', '--level', 'nope']);
  assert.notEqual(wrongLevel.code, 0);
  assert.equal(fake.imported.length, 1);
});
