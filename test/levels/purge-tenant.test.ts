/**
 * A deleted tenant's files held by the level drivers — the env level's KV file,
 * the os level's snapshot store — go with it (or to quarantine), through the
 * registry, whether or not the driver could be provisioned on this machine;
 * another tenant's stay.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { EnvDriver } from '../../src/levels/env/driver.js';
import { KvStores } from '../../src/levels/env/kv.js';
import { OsDriver } from '../../src/levels/os/driver.js';
import { DriverRegistry } from '../../src/levels/registry.js';
import { tempDir } from '../support/temp.js';

const dir = tempDir('purge');

const GONE = 'tn_gonegonegone';
const STAYS = 'tn_staysstaysst';

function seed(root: string): { env: string; os: string } {
  const env = join(root, 'env');
  const os = join(root, 'os');
  const kv = new KvStores(join(env, 'tenants'));
  for (const tenantId of [GONE, STAYS]) {
    kv.put({ tenantId, namespace: 'default', quotaBytes: 1 << 20 }, 'k', tenantId);
    mkdirSync(join(os, 'snapshots', tenantId, 'snapshots'), { recursive: true });
    writeFileSync(join(os, 'snapshots', tenantId, 'snapshots', 's1.json'), tenantId);
  }
  kv.close();
  return { env, os };
}

const registryOver = (s: { env: string; os: string }): DriverRegistry =>
  new DriverRegistry().register(new EnvDriver({ stateDir: s.env })).register(new OsDriver({ stateDir: s.os, runRoot: join(s.os, 'run') }));

test("purgeTenant removes the tenant's KV file and snapshot store, and only its", async () => {
  const s = seed(join(dir, 'remove'));
  assert.deepEqual(await registryOver(s).purgeTenant(GONE, null), []);
  assert.ok(!existsSync(join(s.env, 'tenants', GONE)));
  assert.ok(!existsSync(join(s.os, 'snapshots', GONE)));
  assert.ok(existsSync(join(s.env, 'tenants', STAYS, 'kv.sqlite')));
  assert.equal(readFileSync(join(s.os, 'snapshots', STAYS, 'snapshots', 's1.json'), 'utf8'), STAYS);
});

test('with a quarantine dir, the same files are moved there instead', async () => {
  const s = seed(join(dir, 'keep'));
  const q = join(dir, 'keep', 'quarantine', 'x');
  assert.deepEqual(await registryOver(s).purgeTenant(GONE, { dir: q, prefix: '' }), []);
  assert.ok(!existsSync(join(s.env, 'tenants', GONE)));
  assert.ok(!existsSync(join(s.os, 'snapshots', GONE)));
  assert.ok(existsSync(join(q, 'env-kv', 'kv.sqlite')), 'the KV file');
  assert.equal(readFileSync(join(q, 'os-snapshots', 'snapshots', 's1.json'), 'utf8'), GONE);
});
