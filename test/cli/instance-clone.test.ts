/**
 * The CLI's `instance clone`, `instance launch --restart` and `image list`, run
 * as `bin/strata` child processes against a live daemon whose os driver is a
 * fake that can clone and has images.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, test } from 'node:test';
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
}

let d: TestDaemon;
const strata = (args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
  new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], {
      env: { PATH: process.env.PATH ?? '', STRATA_URL: d.url, STRATA_TOKEN: d.adminToken, STRATA_REASON: 'cli test' },
    }, (error, stdout, stderr) => resolve({ code: error ? Number(error.code ?? 1) : 0, stdout, stderr }));
  });

before(async () => {
  d = await TestDaemon.start({ drivers: [new CloningFake()] });
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
