/**
 * `POST /v1/admin/backups` and `strata admin restore`: a backup taken while a
 * burst of writes runs holds every write acknowledged before it began; restored
 * onto a new data dir, a daemon starts there with the audit log verifying, the
 * provider's token working and a static site serving; keys keep mode 0600. A
 * tampered, incomplete or padded backup is refused, naming the file, and a
 * non-empty data dir is never restored onto.
 */
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import Database from 'better-sqlite3';
import { restoreBackup } from '../../src/control/backup/restore.js';
import { sha256File } from '../../src/core/hash.js';
import { isStrataError } from '../../src/core/errors.js';
import { TestDaemon } from '../support/harness.js';
import { viaGateway } from '../support/net.js';
import { tempDir } from '../support/temp.js';
import { until } from '../support/until.js';

const reason = { 'x-strata-reason': 'backup test' };
const gatewayOf = (d: TestDaemon): number => d.daemon.services.gateway!.addresses()[0]!.port;
const withGateway = { listeners: [{ id: 'http', address: '127.0.0.1', port: 0, protocol: 'http' as const }], options: { workers: 1 } };

let d: TestDaemon;
/** A backup of `d` taken during the burst, and the tenants acknowledged before it was asked for. */
let backupDir: string;
let ackedBefore: string[];
let backupAnswer: { status: number; body: any };

/** Every file under `dir`, relative, with its mode. */
function modes(dir: string, rel = ''): Map<string, number> {
  const out = new Map<string, number>();
  for (const name of readdirSync(join(dir, rel))) {
    const path = join(rel, name);
    const st = statSync(join(dir, path));
    if (st.isDirectory()) for (const [p, m] of modes(dir, path)) out.set(p, m);
    else out.set(path, st.mode & 0o777);
  }
  return out;
}

async function refusal(backup: string, target: string): Promise<{ code: string; path: unknown }> {
  try {
    await restoreBackup(backup, target);
  } catch (e) {
    if (!isStrataError(e)) throw e;
    return { code: e.code, path: e.details?.path };
  }
  assert.fail('the restore went through');
}

before(async () => {
  d = await TestDaemon.start({ gateway: withGateway });
  await d.request('POST', '/v1/tenants', { body: { name: 'shop' } });
  mkdirSync(d.docroot('shop', 'www'), { recursive: true });
  writeFileSync(d.docroot('shop', 'www', 'index.html'), '<h1>the shop</h1>');
  assert.equal((await d.request('POST', '/v1/tenants/shop/sites', { body: { hostname: 'www.shop.test', target: { kind: 'static', root: 'www' } }, headers: reason })).status, 201);
  const cert = await d.request('POST', '/v1/tenants/shop/certificates/local-ca', { body: { hostnames: ['www.shop.test'] }, headers: reason });
  assert.equal(cert.status, 201, JSON.stringify(cert.body));

  // The burst: four writers creating tenants and a site in each, until the backup has answered and a few more after.
  const acked: string[] = [];
  let stop = false;
  const writer = async (w: number): Promise<void> => {
    for (let i = 0; !stop; i++) {
      const name = `burst-${w}-${i}`;
      const t = await d.request('POST', '/v1/tenants', { body: { name } });
      assert.equal(t.status, 201, JSON.stringify(t.body));
      const s = await d.request('POST', `/v1/tenants/${name}/sites`, { body: { hostname: `${name}.test`, target: { kind: 'static', root: 'www' } }, headers: reason });
      assert.equal(s.status, 201, JSON.stringify(s.body));
      acked.push(name);
    }
  };
  const writers = [0, 1, 2, 3].map(writer);
  await until(() => acked.length >= 20, { ms: 60_000 });
  backupDir = join(tempDir('backup'), 'copy');
  ackedBefore = [...acked];
  backupAnswer = await d.request('POST', '/v1/admin/backups?wait=300', { body: { dir: backupDir } });
  const after = acked.length;
  await until(() => acked.length >= after + 8, { ms: 60_000 });
  stop = true;
  await Promise.all(writers);
});

after(async () => {
  await d?.close();
});

test('a backup taken during a burst of writes restores onto a new data dir, and a daemon there serves it', async () => {
  assert.equal(backupAnswer.status, 200, JSON.stringify(backupAnswer.body));
  assert.equal(backupAnswer.body.operation.status, 'succeeded', JSON.stringify(backupAnswer.body));
  const report = backupAnswer.body.operation.result.backup;
  assert.ok(report.files > 0);
  assert.ok(report.skipped.some((s: { path: string }) => s.path === 'logs'), 'the answer says the logs are not in it');
  const entries = await d.request('GET', '/v1/audit/entries?limit=10000');
  for (const action of ['backup.create', 'backup.create.done']) {
    assert.ok(entries.body.items.some((e: any) => e.entry.action === action && e.entry.target === backupDir && e.entry.result === 'ok'), `${action} is audited`);
  }

  const dataDir = join(tempDir('restored'), 'data');
  const r = await restoreBackup(backupDir, dataDir);
  assert.ok(r.audit.ok);
  const sourceModes = modes(d.daemon.dataDir);
  const restoredModes = modes(dataDir);
  for (const secret of ['audit-key.pem', 'guard-key', 'admin.token']) assert.equal(restoredModes.get(secret), 0o600, secret);
  for (const [path, mode] of restoredModes) if (path.startsWith('certs/') || path.startsWith('ca/')) assert.equal(mode, sourceModes.get(path), path);
  assert.equal(statSync(dataDir).mode & 0o777, 0o700);

  const restored = await TestDaemon.start({ dataDir, gateway: withGateway });
  try {
    assert.equal(restored.adminToken, d.adminToken, "the provider's token is the one backed up");
    const tenants = new Set((await restored.request('GET', '/v1/tenants')).body.items.map((t: { name: string }) => t.name));
    const missing = ackedBefore.filter((n) => !tenants.has(n));
    assert.deepEqual(missing, [], 'every tenant acknowledged before the backup began is in it');
    for (const name of ackedBefore) {
      // A tenant in the copy has its site too: each write is whole.
      assert.equal((await restored.request('GET', `/v1/tenants/${name}/sites/${name}.test`)).status, 200, name);
    }
    const verify = await restored.request('GET', '/v1/audit/verify');
    assert.equal(verify.body.ok, true, JSON.stringify(verify.body));
    assert.ok(verify.body.size >= ackedBefore.length * 2, 'the audit log holds the burst');
    assert.equal((await restored.request('GET', '/v1/tenants/shop/certificates')).body.items.length, 1);
    const page = await until(async () => {
      const v = await viaGateway(gatewayOf(restored), 'www.shop.test');
      return v.status === 200 ? v : null;
    }, { ms: 20_000 });
    assert.equal(page.body, '<h1>the shop</h1>');
  } finally {
    await restored.close();
  }
});

test('restore refuses a tampered, padded or unfinished backup, naming the file, and leaves the data dir empty', async () => {
  const bad = join(tempDir('tampered'), 'copy');
  cpSync(backupDir, bad, { recursive: true });
  const target = join(tempDir('target'), 'data');
  const page = join('docroots', d.daemon.services.store.getTenantByName('shop')!.id, 'www', 'index.html');
  const original = readFileSync(join(bad, page));
  const flipped = Buffer.from(original);
  flipped[0]! ^= 1;
  writeFileSync(join(bad, page), flipped);
  assert.deepEqual(await refusal(bad, target), { code: 'STRATA_ERR_BACKUP_INVALID', path: page });
  assert.deepEqual(readdirSync(target), [], 'nothing restored');

  writeFileSync(join(bad, page), original);
  writeFileSync(join(bad, 'docroots', 'planted.html'), 'not from the daemon');
  assert.deepEqual(await refusal(bad, target), { code: 'STRATA_ERR_BACKUP_INVALID', path: join('docroots', 'planted.html') });

  const manifest = JSON.parse(readFileSync(join(bad, 'manifest.json'), 'utf8'));
  manifest.entries.push({ type: 'file', path: 'os/escape', mode: 0o644, size: 0, sha256: '0'.repeat(64) });
  writeFileSync(join(bad, 'manifest.json'), JSON.stringify(manifest));
  assert.equal((await refusal(bad, target)).code, 'STRATA_ERR_BACKUP_INVALID', 'a manifest naming what a backup never holds');

  const unfinished = tempDir('unfinished');
  assert.deepEqual(await refusal(unfinished, target), { code: 'STRATA_ERR_BACKUP_INVALID', path: 'manifest.json' });
  assert.deepEqual(readdirSync(target), []);
});

test('restore refuses a backup whose store a newer Strata wrote (a schema this one does not know)', async () => {
  const newer = join(tempDir('newer'), 'copy');
  cpSync(backupDir, newer, { recursive: true });
  const db = new Database(join(newer, 'strata.db'));
  db.pragma('user_version = 9999');
  db.close();
  const manifest = JSON.parse(readFileSync(join(newer, 'manifest.json'), 'utf8'));
  const store = manifest.entries.find((e: { path: string }) => e.path === 'strata.db');
  store.sha256 = await sha256File(join(newer, 'strata.db'));
  store.size = statSync(join(newer, 'strata.db')).size;
  writeFileSync(join(newer, 'manifest.json'), JSON.stringify(manifest));
  const target = join(tempDir('target'), 'data');
  assert.deepEqual(await refusal(newer, target), { code: 'STRATA_ERR_BACKUP_INVALID', path: 'strata.db' });
  assert.deepEqual(readdirSync(target), []);
});

test('restore never writes into a data dir that holds anything', async () => {
  const target = tempDir('busy');
  writeFileSync(join(target, 'strata.db'), 'someone else');
  assert.deepEqual(await refusal(backupDir, target), { code: 'STRATA_ERR_TARGET_NOT_EMPTY', path: target });
  assert.equal(readFileSync(join(target, 'strata.db'), 'utf8'), 'someone else');
});

test('backups are the provider\'s, into an empty directory outside the data dir', async () => {
  const tenantAdmin = await d.tenantWithUser('nosy');
  const dir = join(tempDir('refused'), 'copy');
  const denied = await d.request('POST', '/v1/admin/backups', { token: tenantAdmin, body: { dir } });
  assert.equal(denied.status, 403);
  assert.equal(existsSync(dir), false);
  assert.equal((await d.request('POST', '/v1/admin/backups', { body: { dir: 'relative/dir' } })).status, 400);
  const inside = await d.request('POST', '/v1/admin/backups', { body: { dir: join(d.daemon.dataDir, 'docroots', 'copy') } });
  assert.equal(inside.status, 400, JSON.stringify(inside.body));
  const busy = await d.request('POST', '/v1/admin/backups', { body: { dir: backupDir } });
  assert.equal(busy.status, 409);
  assert.equal(busy.body.error.code, 'STRATA_ERR_TARGET_NOT_EMPTY');
  const failures = (await d.request('GET', '/v1/audit/entries?limit=10000')).body.items
    .filter((e: any) => e.entry.action === 'backup.create' && e.entry.result === 'error');
  assert.ok(failures.length >= 3, 'refused backups are audited as failures');
});
