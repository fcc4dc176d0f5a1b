/**
 * The backup's consistency promise, at its finest grain: a writer that, in one
 * synchronous step, adds a row to the store and a file to the docroots, and
 * removes an older pair, runs on every turn of the event loop while the backup
 * copies (the store is padded so its copy takes many turns). In the copy, rows
 * and files must name exactly the same marks: files copied only before the
 * store would miss the last rows' files, copied only after would hold files of
 * rows the store's snapshot lacks.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import Database from 'better-sqlite3';
import type { SqliteStore } from '../../src/store/sqlite.js';
import { TestDaemon } from '../support/harness.js';
import { tempDir } from '../support/temp.js';

let d: TestDaemon;
before(async () => {
  d = await TestDaemon.start();
});
after(async () => {
  await d?.close();
});

test('rows and files in a backup belong to the same moment while a writer changes both on every turn', async () => {
  const db = (d.daemon.services.store as SqliteStore).db;
  db.exec('CREATE TABLE test_marks (n INTEGER PRIMARY KEY); CREATE TABLE test_filler (b BLOB)');
  // ~24 MiB of pages: the online backup copies 100 pages a turn, so it spans hundreds of turns.
  const pad = db.prepare('INSERT INTO test_filler VALUES (?)');
  db.transaction(() => { for (let i = 0; i < 6000; i++) pad.run(Buffer.alloc(4000, i)); })();
  const marks = join(d.daemon.dataDir, 'docroots', 'marks');
  mkdirSync(marks, { recursive: true });
  const add = db.prepare('INSERT INTO test_marks VALUES (?)');
  const drop = db.prepare('DELETE FROM test_marks WHERE n = ?');
  let n = 0;
  let writing = true;
  let turnsDuringBackup = 0;
  const write = (): void => {
    add.run(n);
    writeFileSync(join(marks, String(n)), String(n));
    if (n >= 5 && n % 3 === 0) {
      drop.run(n - 5);
      rmSync(join(marks, String(n - 5)));
    }
    n++;
  };
  const loop = (): void => {
    if (!writing) return;
    write();
    turnsDuringBackup++;
    setImmediate(loop);
  };
  for (let i = 0; i < 50; i++) write();
  loop();
  turnsDuringBackup = 0;
  const dir = join(tempDir('consistency'), 'copy');
  await d.daemon.services.backups!.create(dir);
  writing = false;
  assert.ok(turnsDuringBackup > 20, `the writer ran ${turnsDuringBackup} turns during the backup`);

  const copy = new Database(join(dir, 'strata.db'), { readonly: true });
  const rows = (copy.prepare('SELECT n FROM test_marks ORDER BY n').pluck().all() as number[]).map(String);
  copy.close();
  const files = readdirSync(join(dir, 'docroots', 'marks')).sort((a, b) => Number(a) - Number(b));
  assert.ok(rows.length > 50);
  assert.deepEqual(files, rows);
});
