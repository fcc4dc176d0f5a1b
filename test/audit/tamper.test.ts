/**
 * The tamper test: alter one byte of one stored field at a random place, and
 * verification must fail naming that entry (or head); put the byte back and it
 * must pass again.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type Database from 'better-sqlite3';
import { MerkleTree, hashLeaf } from '../../src/audit/merkle.js';
import { verifyDatabase, type VerifyReport } from '../../src/audit/verify.js';
import { sampleEntry, tempLog } from './fixtures.js';

const SIZE = 200;
const HEAD_SIZES = [1, 30, 64, 65, 120, 199, 200];
const SEED = Number(process.env.STRATA_TAMPER_SEED ?? 0x5eed);

/** mulberry32: a small seeded PRNG, so a failure can be replayed with STRATA_TAMPER_SEED. */
function prng(seed: number): (below: number) => number {
  let a = seed >>> 0;
  return (below) => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * below);
  };
}

function buildLog() {
  const tl = tempLog();
  for (let i = 0; i < SIZE; i++) {
    tl.log.append(sampleEntry(i));
    if (HEAD_SIZES.includes(i + 1)) tl.log.signHead();
  }
  return tl;
}

type Target =
  | { table: 'audit_entries'; column: 'data' | 'leaf_hash' | 'root_after'; key: number }
  | { table: 'audit_heads'; column: 'root_hash' | 'signature'; key: number };

/** Flips one bit of one stored BLOB; returns the undo. */
function flip(db: Database.Database, t: Target, rand: (below: number) => number): () => void {
  const keyColumn = t.table === 'audit_entries' ? 'seq' : 'tree_size';
  const original = db.prepare(`SELECT ${t.column} FROM ${t.table} WHERE ${keyColumn} = ?`).pluck().get(t.key) as Buffer;
  const altered = Buffer.from(original);
  altered[rand(altered.length)]! ^= 1 << rand(8);
  const write = db.prepare(`UPDATE ${t.table} SET ${t.column} = ? WHERE ${keyColumn} = ?`);
  write.run(altered, t.key);
  return () => write.run(original, t.key);
}

const describe = (r: VerifyReport): string => JSON.stringify(r);

test(`tamper: any single altered byte is named (seed ${SEED})`, (t) => {
  const { db, log, path, cleanup } = buildLog();
  t.after(cleanup);
  const pem = log.publicKeyPem();
  const clean = { ok: true, size: SIZE, signedSize: SIZE, unsignedTail: 0, heads: HEAD_SIZES.length };
  assert.deepEqual(log.verify(), clean);

  const rand = prng(SEED);
  const entryColumns = ['data', 'leaf_hash', 'root_after'] as const;
  const reasons = { data: /data altered/, leaf_hash: /leaf_hash altered/, root_after: /root_after altered/ };
  for (let trial = 0; trial < 150; trial++) {
    const onHead = rand(4) === 0;
    const target: Target = onHead
      ? { table: 'audit_heads', column: rand(2) ? 'root_hash' : 'signature', key: HEAD_SIZES[rand(HEAD_SIZES.length)]! }
      : { table: 'audit_entries', column: entryColumns[rand(3)]!, key: rand(SIZE) };
    const restore = flip(db, target, rand);
    const report = log.verify();
    const what = `trial ${trial}: ${target.table}.${target.column} @ ${target.key} -> ${describe(report)}`;
    assert.equal(report.ok, false, what);
    if (!report.ok) {
      if (target.table === 'audit_heads') {
        assert.deepEqual([report.firstBadIndex, report.badHead], [null, target.key], what);
        assert.match(report.reason, /signature does not verify/, what);
      } else {
        assert.deepEqual([report.firstBadIndex, report.badHead], [target.key, null], what);
        assert.match(report.reason, reasons[target.column as keyof typeof reasons], what);
      }
    }
    if (trial % 10 === 0) assert.deepEqual(verifyDatabase(path, pem), report, `offline verify agrees: ${what}`);
    restore();
    assert.deepEqual(log.verify(), clean, `restored: ${what}`);
  }
});

test('tamper: timestamps, tenant columns, deleted and reordered rows are named', (t) => {
  const { db, log, cleanup } = buildLog();
  t.after(cleanup);
  const expectBad = (firstBadIndex: number | null, badHead: number | null, reason: RegExp): void => {
    const r = log.verify();
    assert.equal(r.ok, false, describe(r));
    if (!r.ok) {
      assert.deepEqual([r.firstBadIndex, r.badHead], [firstBadIndex, badHead], describe(r));
      assert.match(r.reason, reason);
    }
  };
  const run = (sql: string, ...args: unknown[]) => db.prepare(sql).run(...args);

  run("UPDATE audit_heads SET timestamp = replace(timestamp, 'Z', '1Z') WHERE tree_size = 65");
  expectBad(null, 65, /signature/);
  run("UPDATE audit_heads SET timestamp = replace(timestamp, '1Z', 'Z') WHERE tree_size = 65");

  run("UPDATE audit_entries SET tenant_id = 't9' WHERE seq = 77");
  expectBad(77, null, /tenant_id/);
  run("UPDATE audit_entries SET tenant_id = 't2' WHERE seq = 77");

  const row = db.prepare('SELECT * FROM audit_entries WHERE seq = 150').get() as Record<string, unknown>;
  run('DELETE FROM audit_entries WHERE seq = 150');
  expectBad(150, null, /missing/);
  run('INSERT INTO audit_entries VALUES (@seq, @tenant_id, @data, @leaf_hash, @root_after)', row);

  const tail = db.prepare('SELECT * FROM audit_entries WHERE seq >= 190').all() as Record<string, unknown>[];
  run('DELETE FROM audit_entries WHERE seq >= 190');
  expectBad(190, null, /covers entries 190\.\.199, which are missing/);
  for (const r of tail) run('INSERT INTO audit_entries VALUES (@seq, @tenant_id, @data, @leaf_hash, @root_after)', r);

  const [a, b] = [40, 41].map((seq) => db.prepare('SELECT data FROM audit_entries WHERE seq = ?').pluck().get(seq) as Buffer);
  run('UPDATE audit_entries SET data = ? WHERE seq = 40', b);
  run('UPDATE audit_entries SET data = ? WHERE seq = 41', a);
  expectBad(40, null, /data altered/);
  run('UPDATE audit_entries SET data = ? WHERE seq = 40', a);
  run('UPDATE audit_entries SET data = ? WHERE seq = 41', b);

  assert.equal(log.verify().ok, true);
});

test('tamper: a rewrite that recomputes every hash after the entry is caught by the first signed head over it', (t) => {
  const { db, log, cleanup } = buildLog();
  t.after(cleanup);
  const rows = db.prepare('SELECT seq, data FROM audit_entries ORDER BY seq').raw().all() as [number, Buffer][];
  const forged = rows.map(([, data]) => data);
  const entry = JSON.parse(forged[100]!.toString()) as { target: string };
  entry.target = 'acme/nothing-happened';
  forged[100] = Buffer.from(JSON.stringify(entry));
  const tree = MerkleTree.from(forged.map(hashLeaf));
  const write = db.prepare('UPDATE audit_entries SET data = ?, leaf_hash = ?, root_after = ? WHERE seq = ?');
  db.transaction(() => {
    for (let i = 100; i < SIZE; i++) write.run(forged[i]!, tree.leafHash(i), tree.root(i + 1), i);
  })();
  const r = log.verify();
  assert.deepEqual(r, {
    ok: false, firstBadIndex: null, badHead: 120,
    reason: 'signed head at size 120 does not match the log: entries 65..119 were rewritten along with their hashes',
  });
});
