import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { ChecksumDb } from '../../src/guard/checksums.js';
import { Hasher } from '../../src/guard/hasher.js';
import { tempDir } from '../support/temp.js';

function tree(t: { after(fn: () => unknown): void }) {
  const dir = tempDir('guard');
  const root = join(dir, 'root');
  for (const d of ['usr/bin', 'etc', 'var/log']) mkdirSync(join(root, d), { recursive: true });
  writeFileSync(join(root, 'usr/bin/ls'), 'ls binary');
  writeFileSync(join(root, 'usr/bin/big'), randomBytes(3 << 20));
  writeFileSync(join(root, 'etc/passwd'), 'root:x:0:0');
  writeFileSync(join(root, 'var/log/app.log'), 'log');
  const db = new Database(join(dir, 'guard.db'));
  const hasher = new Hasher({ threads: 2, batchSize: 2 });
  const key = randomBytes(32);
  const checksums = new ChecksumDb(db, { key, hasher });
  t.after(async () => { await hasher.close(); db.close(); });
  return { root, db, hasher, key, checksums };
}

test('the hasher hashes files on worker threads, in order, reporting unreadable ones', async (t) => {
  const { root, hasher } = tree(t);
  const [ls, missing] = await hasher.hashFiles([join(root, 'usr/bin/ls'), join(root, 'nope')]);
  assert.ok(ls && 'hash' in ls);
  assert.deepEqual({ hash: ls.hash, size: ls.size, facts: ls.facts.size, mode: ls.facts.mode & 0o170000 }, { hash: createHash('sha256').update('ls binary').digest('hex'), size: 9, facts: 9, mode: 0o100000 });
  assert.deepEqual(missing, { error: 'ENOENT' });
});

test('baseline then verify: clean; then added, removed and changed files are reported', async (t) => {
  const { root, checksums } = tree(t);
  const summary = await checksums.baseline('instance:i1', root, { include: ['/usr/**', '/etc/**'] });
  assert.deepEqual({ files: summary.files, bytes: summary.bytes }, { files: 3, bytes: 9 + (3 << 20) + 10 });
  assert.deepEqual(checksums.scopes(), ['instance:i1']);
  assert.equal((await checksums.verify('instance:i1')).ok, true);

  writeFileSync(join(root, 'usr/bin/ls'), 'trojan');
  writeFileSync(join(root, 'etc/shadow'), 'new');
  unlinkSync(join(root, 'etc/passwd'));
  writeFileSync(join(root, 'var/log/app.log'), 'more log');
  const report = await checksums.verify('instance:i1');
  assert.equal(report.ok, false);
  assert.deepEqual(report.added, ['etc/shadow']);
  assert.deepEqual(report.removed, ['etc/passwd']);
  assert.deepEqual(report.changed.map((c) => c.path), ['usr/bin/ls']);
  assert.deepEqual(report.tampered, { baseline: false, rows: [] });

  assert.equal((await checksums.verifyFile('instance:i1', 'usr/bin/ls')).status, 'changed');
  assert.equal((await checksums.verifyFile('instance:i1', 'usr/bin/big')).status, 'unchanged');
  assert.equal((await checksums.verifyFile('instance:i1', 'etc/shadow')).status, 'added');
  assert.equal((await checksums.verifyFile('instance:i1', 'etc/passwd')).status, 'removed');
  assert.equal((await checksums.verifyFile('instance:i1', 'var/log/app.log')).status, 'untracked');
  assert.equal((await checksums.verifyFile('instance:i1', 'usr/bin')).status, 'unchanged', 'a directory is an entry too');
  assert.equal((await checksums.verifyFile('instance:i1', 'var/log')).status, 'untracked', 'outside the patterns');
});

test('tampering with the DB is itself detected: a forged hash, a deleted row, a changed root, another key', async (t) => {
  const { root, db, hasher, checksums } = tree(t);
  await checksums.baseline('strata:self', root);
  writeFileSync(join(root, 'usr/bin/ls'), 'trojan');
  const forged = (await hasher.hashFile(join(root, 'usr/bin/ls')));
  assert.ok('hash' in forged);
  db.prepare("UPDATE guard_checksums SET hash = ? WHERE scope = 'strata:self' AND path = 'usr/bin/ls'").run(forged.hash);
  const report = await checksums.verify('strata:self');
  assert.equal(report.ok, false);
  assert.deepEqual(report.changed.map((c) => c.changes), [['ctime']], 'the forged hash matches the file, only the write\'s ctime shows…');
  assert.deepEqual(report.tampered.rows, ['usr/bin/ls'], '…and the row no longer verifies');
  assert.equal((await checksums.verifyFile('strata:self', 'usr/bin/ls')).status, 'tampered');

  await checksums.baseline('strata:self', root);
  db.prepare("DELETE FROM guard_checksums WHERE scope = 'strata:self' AND path = 'etc/passwd'").run();
  const afterDelete = await checksums.verify('strata:self');
  assert.equal(afterDelete.tampered.baseline, true, 'a deleted row breaks the baseline signature');
  assert.deepEqual(afterDelete.added, ['etc/passwd']);

  await checksums.baseline('strata:self', root);
  db.prepare("UPDATE guard_baselines SET include = '[\"/var/**\"]' WHERE scope = 'strata:self'").run();
  assert.equal((await checksums.verify('strata:self')).tampered.baseline, true, 'narrowing what is checked is tampering too');

  await checksums.baseline('strata:self', root);
  const otherKey = new ChecksumDb(db, { key: Buffer.alloc(32, 7), hasher });
  const foreign = await otherKey.verify('strata:self');
  assert.equal(foreign.tampered.baseline, true);
  assert.equal(foreign.tampered.rows.length, 10, 'every file and directory, the root too');
  assert.throws(() => new ChecksumDb(db, { key: Buffer.alloc(8), hasher }), /at least 32 bytes/);
});
