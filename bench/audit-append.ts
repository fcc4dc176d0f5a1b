/**
 * Audit log appends per second, each append its own committed SQLite
 * transaction (WAL, synchronous=NORMAL) with its running root stored, heads
 * signed by the log's 200 ms timer as in the daemon; then the time to verify the
 * whole log from the stored bytes, and to reopen it.
 *
 * Anchor: Crosby & Wallach, "Efficient Data Structures for Tamper-Evident
 * Logging" (USENIX Security 2009) report 1,750 signed appends/s for their
 * history tree — a published figure, not measured here. They sign every append;
 * we sign a head per interval, so `signed_each_appends_per_s` also reports the
 * rate with a head signed after every append.
 *
 * Options: --appends=N (default 100000).
 */
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { AuditLog, type AuditEntryInput } from '../src/audit/log.js';
import { AUDIT_SCHEMA_SQL } from '../src/store/audit-schema.js';
import { intOption, percentile, timed, type BenchOptions, type BenchResult } from './harness.js';

const ANCHOR_APPENDS_PER_S = 1750;

/** An entry the size and shape the API writes (about 250 bytes of canonical JSON). */
const entry = (i: number): AuditEntryInput => ({
  actor: { userId: `u_${(i % 50).toString(36).padStart(8, '0')}`, name: `user-${i % 50}`, role: 'tenant-admin' },
  tenantId: `t_${(i % 20).toString(36).padStart(8, '0')}`,
  action: i % 2 ? 'instance.stop' : 'instance.start',
  target: `tenant-${i % 20}/web-${i % 7}`,
  result: 'ok',
  details: { graceMs: 5000, operation: `op_${i}` },
});

function openLog(path: string, synchronous: 'NORMAL' | 'FULL', keys: { privateKey: KeyObject; publicKey: KeyObject }) {
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma(`synchronous = ${synchronous}`);
  db.exec(AUDIT_SCHEMA_SQL);
  return { db, log: new AuditLog(db, keys) };
}

/** Appends n entries, yielding to the event loop every 1,000 so the signing timer runs as it would in the daemon. */
async function appendMany(log: AuditLog, n: number, after?: () => void): Promise<{ perSecond: number; latenciesUs: number[] }> {
  const latenciesUs = new Array<number>(n);
  const start = performance.now();
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    log.append(entry(i));
    after?.();
    latenciesUs[i] = (performance.now() - t0) * 1000;
    if (i % 1000 === 999) await yieldToEventLoop();
  }
  const seconds = (performance.now() - start) / 1000;
  return { perSecond: n / seconds, latenciesUs: latenciesUs.sort((a, b) => a - b) };
}

export default async function auditAppend(opts: BenchOptions): Promise<BenchResult> {
  const n = intOption(opts, 'appends', 100_000);
  const dir = mkdtempSync(join(tmpdir(), 'strata-bench-audit-'));
  const keys = generateKeyPairSync('ed25519');
  try {
    const main = openLog(join(dir, 'normal.db'), 'NORMAL', keys);
    const { perSecond, latenciesUs } = await appendMany(main.log, n);
    main.log.close();
    const heads = Number(main.db.prepare('SELECT COUNT(*) FROM audit_heads').pluck().get());
    const verify = await timed(() => main.log.verify());
    if (!verify.value.ok || verify.value.size !== n) throw new Error(`the benchmark's own log does not verify: ${JSON.stringify(verify.value)}`);
    const reopen = await timed(() => new AuditLog(main.db, keys));
    reopen.value.close();
    main.db.close();

    const fullN = Math.min(n, 5_000);
    const full = openLog(join(dir, 'full.db'), 'FULL', keys);
    const fullRate = (await appendMany(full.log, fullN)).perSecond;
    full.log.close();
    full.db.close();

    const signedN = Math.min(n, 5_000);
    const signed = openLog(join(dir, 'signed.db'), 'NORMAL', keys);
    const signedRate = (await appendMany(signed.log, signedN, () => signed.log.signHead())).perSecond;
    signed.log.close();
    signed.db.close();

    const p50 = percentile(latenciesUs, 50);
    const p99 = percentile(latenciesUs, 99);
    return {
      metric: 'appends_per_s',
      unit: 'appends/s',
      value: perSecond,
      anchor: 'Crosby-Wallach history tree, 1,750 signed appends/s (published figure, USENIX Security 2009; not measured here)',
      anchor_value: ANCHOR_APPENDS_PER_S,
      summary: [
        `appends: ${n} committed transactions (WAL, synchronous=NORMAL), ${Math.round(perSecond)}/s, p50 ${p50.toFixed(1)} µs, p99 ${p99.toFixed(1)} µs, ${heads} signed heads`,
        `verify: ${n} entries recomputed (leaf hashes, running roots, ${heads} head signatures) in ${verify.ms.toFixed(0)} ms`,
        `reopen: ${n} leaves loaded into the tree in ${reopen.ms.toFixed(0)} ms`,
        `synchronous=FULL: ${Math.round(fullRate)} appends/s over ${fullN}; a head signed after every append: ${Math.round(signedRate)} appends/s over ${signedN}`,
      ],
      extra: {
        appends: n,
        append_p50_us: Math.round(p50 * 10) / 10,
        append_p99_us: Math.round(p99 * 10) / 10,
        heads_signed: heads,
        verify_entries: n,
        verify_ms: Math.round(verify.ms),
        verify_entries_per_s: Math.round(n / (verify.ms / 1000)),
        reopen_ms: Math.round(reopen.ms),
        full_sync_appends_per_s: Math.round(fullRate),
        signed_each_appends_per_s: Math.round(signedRate),
        journal_mode: 'wal',
        synchronous: 'NORMAL',
      },
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
