import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { canonicalJson } from '../../src/audit/entry.js';
import { verifyTreeHead } from '../../src/audit/head.js';
import { AuditLog } from '../../src/audit/log.js';
import { verifyConsistency, verifyInclusion } from '../../src/audit/merkle.js';
import { verifyDatabase, verifyExport } from '../../src/audit/verify.js';
import { StrataError } from '../../src/core/errors.js';
import { sampleEntry, tempLog } from './fixtures.js';

const h = (s: string): Buffer => Buffer.from(s, 'hex');

test('append stores canonical JSON, numbers entries from 0 and reads them back', (t) => {
  const { log, db, cleanup } = tempLog();
  t.after(cleanup);
  for (let i = 0; i < 10; i++) assert.equal(log.append(sampleEntry(i)).index, i);
  assert.equal(log.size(), 10);
  const [first] = log.entries({ from: 3, limit: 1 });
  assert.equal(first!.index, 3);
  assert.equal(first!.entry.target, 'acme/web-3');
  assert.match(first!.entry.time, /^\d{4}-\d\d-\d\dT/);
  const stored = db.prepare('SELECT data FROM audit_entries WHERE seq = 3').pluck().get() as Buffer;
  assert.equal(stored.toString(), canonicalJson(first!.entry));
  assert.deepEqual(log.entries({ tenantId: 't1' }).map((r) => r.index), [1, 4, 7]);
  assert.deepEqual(log.entries({ tenantId: 't1', from: 2, limit: 1 }).map((r) => r.index), [4]);
  assert.equal(log.entries({ limit: 100 }).length, 10);
  assert.equal(log.append({ ...sampleEntry(10), time: '2020-01-01T00:00:00.000Z' }).index, 10);
  assert.equal(log.entries({ from: 10 })[0]!.entry.time, '2020-01-01T00:00:00.000Z');
});

test('inclusion and consistency proofs verify against signed heads', (t) => {
  const { log, keys, cleanup } = tempLog();
  t.after(cleanup);
  for (let i = 0; i < 13; i++) log.append(sampleEntry(i));
  const old = log.signHead();
  for (let i = 13; i < 50; i++) log.append(sampleEntry(i));
  const head = log.signHead();
  assert.equal(head.treeSize, 50);
  assert.ok(verifyTreeHead(keys.publicKey, head));
  assert.deepEqual(log.latestHead(), head);
  assert.deepEqual(log.signHead(), head, 'nothing new: the same head');

  for (const index of [0, 12, 31, 49]) {
    const p = log.inclusionProof(index);
    assert.equal(p.rootHash, head.rootHash);
    assert.ok(verifyInclusion(index, 50, h(p.leafHash), p.proof.map(h), h(head.rootHash)));
    const inOld = log.inclusionProof(Math.min(index, 12), old.treeSize);
    assert.ok(verifyInclusion(inOld.index, 13, h(inOld.leafHash), inOld.proof.map(h), h(old.rootHash)));
  }
  const c = log.consistencyProof(old.treeSize, head.treeSize);
  assert.equal(c.firstRoot, old.rootHash);
  assert.equal(c.secondRoot, head.rootHash);
  assert.ok(verifyConsistency(13, 50, h(old.rootHash), h(head.rootHash), c.proof.map(h)));
  assert.deepEqual(log.consistencyProof(13).second, 50);

  for (const bad of [() => log.inclusionProof(50), () => log.inclusionProof(5, 51), () => log.inclusionProof(-1), () => log.consistencyProof(0, 5), () => log.consistencyProof(6, 5)]) {
    assert.throws(bad, (e: unknown) => e instanceof StrataError && e.code === 'STRATA_ERR_VALIDATION');
  }
  assert.deepEqual(log.verify(), { ok: true, size: 50, signedSize: 50, unsignedTail: 0, heads: 2 });
});

test('an empty log signs and verifies', (t) => {
  const { log, cleanup } = tempLog();
  t.after(cleanup);
  assert.equal(log.latestHead(), undefined);
  assert.equal(log.size(), 0);
  const head = log.signHead();
  assert.equal(head.treeSize, 0);
  assert.equal(head.rootHash, 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  assert.deepEqual(log.verify(), { ok: true, size: 0, signedSize: 0, unsignedTail: 0, heads: 1 });
});

test('rollback: an entry whose transaction throws is forgotten, and the log goes on at the right index', (t) => {
  const { log, db, cleanup } = tempLog();
  t.after(cleanup);
  log.append(sampleEntry(0));
  log.append(sampleEntry(1));
  const rootBefore = log.inclusionProof(1).rootHash;

  assert.throws(() => db.transaction(() => {
    assert.equal(log.append(sampleEntry(2)).index, 2);
    assert.equal(log.append(sampleEntry(3)).index, 3);
    assert.equal(log.size(), 4, 'inside the transaction the entries are visible');
    throw new Error('the state change failed');
  }).immediate(), /state change failed/);

  assert.equal(log.size(), 2);
  assert.equal(log.inclusionProof(1).rootHash, rootBefore);
  assert.deepEqual(log.verify(), { ok: true, size: 2, signedSize: 0, unsignedTail: 2, heads: 0 });
  assert.equal(log.append(sampleEntry(99)).index, 2, 'the next append takes the freed index');
  assert.equal(log.entries({ from: 2 })[0]!.entry.target, 'acme/web-99');
  assert.equal(log.signHead().treeSize, 3);
  assert.equal(log.verify().ok, true);
});

test('rollback of a nested savepoint keeps the outer entries', (t) => {
  const { log, db, cleanup } = tempLog();
  t.after(cleanup);
  db.transaction(() => {
    log.append(sampleEntry(0));
    try {
      db.transaction(() => {
        log.append(sampleEntry(1));
        throw new Error('inner');
      })();
    } catch {
      // the inner change is abandoned; the outer one commits
    }
    assert.equal(log.append(sampleEntry(2)).index, 1);
  }).immediate();
  assert.deepEqual(log.entries().map((r) => r.entry.target), ['acme/web-0', 'acme/web-2']);
  assert.equal(log.verify().ok, true);
});

test('rollback right after the append (no further call) is noticed by the next reader and the signer', async (t) => {
  const { log, db, cleanup } = tempLog({ signIntervalMs: 10 });
  t.after(cleanup);
  log.append(sampleEntry(0));
  assert.throws(() => db.transaction(() => {
    log.append(sampleEntry(1));
    throw new Error('boom');
  })());
  await sleep(50);
  assert.equal(log.latestHead()?.treeSize, 1, 'the timer signed the committed size only');
  assert.equal(log.verify().ok, true);
});

test('heads are signed by the timer at most every interval, and by close()', async (t) => {
  const { log, db, cleanup } = tempLog({ signIntervalMs: 30 });
  t.after(cleanup);
  for (let i = 0; i < 5; i++) log.append(sampleEntry(i));
  assert.equal(log.latestHead(), undefined, 'not signed synchronously');
  await sleep(90);
  assert.equal(log.latestHead()?.treeSize, 5);
  const heads = () => db.prepare('SELECT COUNT(*) FROM audit_heads').pluck().get();
  for (let round = 0; round < 5; round++) {
    log.append(sampleEntry(10 + round));
    await sleep(5);
  }
  assert.ok(Number(heads()) <= 3, `appends 5 ms apart share heads (got ${heads()})`);
  log.append(sampleEntry(20));
  log.close();
  assert.equal(log.latestHead()?.treeSize, 11, 'close signs what is pending');
  assert.equal(log.verify().ok, true);
});

test('a new AuditLog on the same file continues the same tree', (t) => {
  const tl = tempLog();
  t.after(tl.cleanup);
  for (let i = 0; i < 21; i++) tl.log.append(sampleEntry(i));
  const head = tl.log.signHead();
  tl.log.close();
  tl.db.close();

  const { log } = tl.open();
  assert.equal(log.size(), 21);
  assert.deepEqual(log.latestHead(), head);
  assert.equal(log.append(sampleEntry(21)).index, 21);
  const newHead = log.signHead();
  const c = log.consistencyProof(head.treeSize, newHead.treeSize);
  assert.ok(verifyConsistency(21, 22, h(head.rootHash), h(newHead.rootHash), c.proof.map(h)));
  assert.deepEqual(log.verify(), { ok: true, size: 22, signedSize: 22, unsignedTail: 0, heads: 2 });
});

test('two connections appending to one file stay in one tree', (t) => {
  const tl = tempLog();
  t.after(tl.cleanup);
  const other = tl.open();
  for (let i = 0; i < 30; i++) assert.equal((i % 2 ? tl.log : other.log).append(sampleEntry(i)).index, i);
  assert.equal(tl.log.inclusionProof(29).rootHash, other.log.inclusionProof(29).rootHash);
  other.log.signHead();
  assert.deepEqual(tl.log.verify(), { ok: true, size: 30, signedSize: 30, unsignedTail: 0, heads: 1 });
});

test('a gap in the stored entries stops the log from starting', (t) => {
  const tl = tempLog();
  t.after(tl.cleanup);
  for (let i = 0; i < 5; i++) tl.log.append(sampleEntry(i));
  tl.db.prepare('DELETE FROM audit_entries WHERE seq = 2').run();
  assert.throws(() => tl.open(), (e: unknown) => e instanceof StrataError && e.code === 'STRATA_ERR_AUDIT_VERIFY_FAILED' && e.details?.firstBadIndex === 2);
});

test('a tenant export proves every one of its entries in the signed head, offline', (t) => {
  const { log, cleanup } = tempLog();
  t.after(cleanup);
  for (let i = 0; i < 40; i++) log.append(sampleEntry(i));
  const bundle = log.exportTenant('t2');
  assert.equal(bundle.head.treeSize, 40);
  assert.deepEqual(bundle.entries.map((e) => e.index), [2, 5, 8, 11, 14, 17, 20, 23, 26, 29, 32, 35, 38]);
  assert.ok(bundle.entries.every((e) => e.entry.tenantId === 't2'));
  log.append(sampleEntry(41, 't2'));
  assert.equal(log.exportTenant('t2').head.treeSize, 41, 'a new entry gets a new head');

  const offline = JSON.parse(JSON.stringify(bundle)) as unknown;
  assert.deepEqual(verifyExport(offline, { publicKeyPem: log.publicKeyPem() }), { ok: true, treeSize: 40, entries: 13 });
  assert.deepEqual(verifyExport({ ...bundle, entries: [] }), { ok: true, treeSize: 40, entries: 0 });

  const altered = structuredClone(bundle);
  altered.entries[4]!.entry.target = 'acme/forged';
  assert.deepEqual(verifyExport(altered), { ok: false, firstBadIndex: 14, reason: 'entry 14: content does not match its leaf hash' });
  const moved = structuredClone(bundle);
  moved.entries[1]!.index = 6;
  assert.equal(verifyExport(moved).ok, false);
  const resigned = structuredClone(bundle);
  resigned.head.treeSize = 41;
  assert.equal(verifyExport(resigned).ok, false);
  const otherKey = generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }).toString();
  assert.match((verifyExport(bundle, { publicKeyPem: otherKey }) as { reason: string }).reason, /different key/);
  assert.equal(verifyExport({ head: 1 }).ok, false);
  assert.equal(verifyExport({ ...bundle, publicKey: 'nope' }).ok, false);
});

test('verifyDatabase checks a log file read-only, with the public or the private key PEM', (t) => {
  const tl = tempLog();
  t.after(tl.cleanup);
  for (let i = 0; i < 25; i++) tl.log.append(sampleEntry(i));
  tl.log.signHead();
  tl.log.append(sampleEntry(25));
  const expected = { ok: true, size: 26, signedSize: 25, unsignedTail: 1, heads: 1 };
  assert.deepEqual(verifyDatabase(tl.path, tl.log.publicKeyPem()), expected, 'while the writer is open');
  assert.deepEqual(verifyDatabase(tl.path, tl.keys.privateKey.export({ type: 'pkcs8', format: 'pem' })), expected);
  const wrong = verifyDatabase(tl.path, generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }));
  assert.deepEqual({ ok: wrong.ok, badHead: !wrong.ok && wrong.badHead }, { ok: false, badHead: 25 });
  tl.log.close();
  tl.db.close();
  assert.deepEqual(verifyDatabase(tl.path, createPublicKey(tl.log.publicKeyPem()).export({ type: 'spki', format: 'pem' })), { ...expected, signedSize: 26, unsignedTail: 0, heads: 2 }, 'after close signed the tail');
  assert.throws(() => verifyDatabase(`${tl.path}.missing`, tl.log.publicKeyPem()));
});

test('the log refuses keys that are not Ed25519', () => {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 });
  assert.throws(() => new AuditLog(undefined as never, rsa), (e: unknown) => e instanceof StrataError && e.code === 'STRATA_ERR_CONFIG');
});
