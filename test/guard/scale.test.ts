/**
 * The checksum DB at scale: a generated tree of 100,000 files (1,000
 * directories of 100) in a temp dir is baselined and verified, and a verify
 * after three changes names exactly those three. STRATA_GUARD_SCALE_FILES
 * changes the count. The tree lives in /dev/shm where there is one: on this
 * machine's disk, creating and removing 100,000 files alone takes over a
 * minute, while the guard's baseline and verify take about 2 s each.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { ChecksumDb } from '../../src/guard/checksums.js';
import { Hasher } from '../../src/guard/hasher.js';

const FILES = Number(process.env.STRATA_GUARD_SCALE_FILES ?? 100_000);

test(`a tree of ${FILES.toLocaleString('en')} files is baselined, and a verify names exactly what changed`, async () => {
  const dir = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'strata-scale-'));
  const hasher = new Hasher();
  const db = new Database(join(dir, 'guard.db'));
  db.pragma('journal_mode = WAL');
  try {
    const root = join(dir, 'tree');
    const perDir = 100;
    for (let d = 0; d * perDir < FILES; d++) {
      mkdirSync(join(root, `d${d}`), { recursive: true });
      for (let f = 0; f < perDir && d * perDir + f < FILES; f++) writeFileSync(join(root, `d${d}`, `f${f}.txt`), `file ${d}/${f}\n`);
    }
    const checksums = new ChecksumDb(db, { key: Buffer.alloc(32, 1), hasher });
    const summary = await checksums.baseline('instance:big', root);
    assert.equal(summary.files, FILES);
    writeFileSync(join(root, 'd7', 'f7.txt'), 'changed\n');
    unlinkSync(join(root, 'd8', 'f8.txt'));
    writeFileSync(join(root, 'd9', 'new.txt'), 'new\n');
    const report = await checksums.verify('instance:big');
    assert.deepEqual(report.changed.map((c) => c.path), ['d7/f7.txt']);
    assert.deepEqual(report.removed, ['d8/f8.txt']);
    assert.deepEqual(report.added, ['d9/new.txt']);
    assert.equal(report.files, summary.entries, 'every file and directory, the root too');
    assert.equal(summary.entries, FILES + FILES / perDir + 1);
    assert.deepEqual(report.tampered, { baseline: false, rows: [] });
    assert.equal((await checksums.verifyFile('instance:big', 'd7/f7.txt')).status, 'changed');
  } finally {
    await hasher.close();
    db.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
