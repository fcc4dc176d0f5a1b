/**
 * The checksum DB: per scope (`instance:<id>`, `strata:self`), a baseline of
 * a tree's critical files — path, SHA-256, size, mtime — in SQLite, and the
 * checks against it.
 *
 * Everything stored is HMAC-signed with a key the DB does not hold: each row
 * (so one file can be checked at once, without reading the scope), and each
 * baseline over its root, its include patterns and every row's MAC (so a row
 * deleted or added behind the guard's back is caught too). Altering the DB is
 * thus itself detected: `verify` reports `tampered`, `verifyFile` answers
 * 'tampered'.
 *
 * Which files count as critical is a list of globs over paths as the instance
 * sees them (`/usr/bin/**`, `/etc/**`), stored with the baseline; default all.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { join } from 'node:path';
import type Database from 'better-sqlite3';
import { globToRegExp } from './condition.js';
import { listFiles, type Hasher } from './hasher.js';

export const CHECKSUMS_SCHEMA_SQL = `
CREATE TABLE IF NOT EXISTS guard_baselines (
  scope TEXT PRIMARY KEY,
  root TEXT NOT NULL,
  include TEXT NOT NULL,
  files INTEGER NOT NULL,
  created TEXT NOT NULL,
  mac BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS guard_checksums (
  scope TEXT NOT NULL,
  path TEXT NOT NULL,
  hash TEXT NOT NULL,
  size INTEGER NOT NULL,
  mtime_ms REAL NOT NULL,
  mac BLOB NOT NULL,
  PRIMARY KEY (scope, path)
) WITHOUT ROWID;
`;

export interface BaselineSummary { scope: string; root: string; files: number; bytes: number }

export interface VerifyReport {
  scope: string;
  /** True when nothing changed and the stored baseline is authentic. */
  ok: boolean;
  files: number;
  added: string[];
  removed: string[];
  changed: { path: string; expected: string; actual: string }[];
  /** Files that exist but could not be read. */
  unreadable: { path: string; error: string }[];
  /** The DB itself was altered: the baseline's signature fails, or these rows' do. */
  tampered: { baseline: boolean; rows: string[] };
}

/** One file against its baseline; `path` is relative to the scope's root. */
export type FileCheck =
  | { status: 'unchanged' | 'untracked'; path: string }
  | { status: 'changed'; path: string; expected: string; actual: string }
  | { status: 'added' | 'removed'; path: string }
  | { status: 'tampered'; path: string }
  | { status: 'unreadable'; path: string; error: string };

type Row = { path: string; hash: string; size: number; mtime_ms: number; mac: Buffer };
type BaselineRow = { scope: string; root: string; include: string; files: number; created: string; mac: Buffer };

export class ChecksumDb {
  readonly #db: Database.Database;
  readonly #key: Buffer;
  readonly #hasher: Hasher;
  readonly #includeCache = new Map<string, RegExp[]>();

  constructor(db: Database.Database, opts: { key: Buffer; hasher: Hasher }) {
    if (opts.key.length < 32) throw new RangeError('the checksum DB key must be at least 32 bytes');
    this.#db = db;
    this.#key = opts.key;
    this.#hasher = opts.hasher;
    db.exec(CHECKSUMS_SCHEMA_SQL);
  }

  /** Hashes every critical file under `root` and stores it, signed, as the scope's baseline (replacing any). */
  async baseline(scope: string, root: string, opts: { include?: string[] } = {}): Promise<BaselineSummary> {
    const include = opts.include ?? ['/**'];
    const patterns = include.map(globToRegExp);
    const paths = (await listFiles(root)).filter((p) => patterns.some((re) => re.test('/' + p)));
    const digests = await this.#hasher.hashFiles(paths.map((p) => join(root, p)));
    const rows: Row[] = [];
    let bytes = 0;
    paths.forEach((path, i) => {
      const d = digests[i]!;
      if ('error' in d) return;
      bytes += d.size;
      rows.push({ path, hash: d.hash, size: d.size, mtime_ms: d.mtimeMs, mac: this.#rowMac(scope, path, d.hash, d.size, d.mtimeMs) });
    });
    const created = new Date().toISOString();
    const includeJson = JSON.stringify(include);
    const mac = this.#baselineMac({ scope, root, include: includeJson, files: rows.length, created }, rows.map((r) => r.mac));
    const insert = this.#db.prepare('INSERT INTO guard_checksums (scope, path, hash, size, mtime_ms, mac) VALUES (?, ?, ?, ?, ?, ?)');
    this.#db.transaction(() => {
      this.#db.prepare('DELETE FROM guard_checksums WHERE scope = ?').run(scope);
      for (const r of rows) insert.run(scope, r.path, r.hash, r.size, r.mtime_ms, r.mac);
      this.#db.prepare('INSERT OR REPLACE INTO guard_baselines (scope, root, include, files, created, mac) VALUES (?, ?, ?, ?, ?, ?)')
        .run(scope, root, includeJson, rows.length, created, mac);
    })();
    this.#includeCache.delete(scope);
    return { scope, root, files: rows.length, bytes };
  }

  /** The scopes with a baseline. */
  scopes(): string[] {
    return this.#db.prepare<[], string>('SELECT scope FROM guard_baselines ORDER BY scope').pluck().all();
  }

  /**
   * The baseline's files with their hashes — only rows whose signature holds,
   * so a forged row can never be the source of a restore.
   */
  entries(scope: string): { path: string; hash: string; size: number }[] {
    const rows = this.#db.prepare<[string], Row>('SELECT path, hash, size, mtime_ms, mac FROM guard_checksums WHERE scope = ? ORDER BY path').all(scope);
    return rows.filter((r) => safeEqual(r.mac, this.#rowMac(scope, r.path, r.hash, r.size, r.mtime_ms))).map((r) => ({ path: r.path, hash: r.hash, size: r.size }));
  }

  /** The tree a scope's baseline was taken of. */
  rootOf(scope: string): string | undefined {
    return this.#baselineRow(scope)?.root;
  }

  forget(scope: string): void {
    this.#db.transaction(() => {
      this.#db.prepare('DELETE FROM guard_checksums WHERE scope = ?').run(scope);
      this.#db.prepare('DELETE FROM guard_baselines WHERE scope = ?').run(scope);
    })();
    this.#includeCache.delete(scope);
  }

  /** Re-hashes the scope's whole tree and reports what differs from its baseline, and whether the baseline is authentic. */
  async verify(scope: string): Promise<VerifyReport> {
    const base = this.#baselineRow(scope);
    if (!base) throw new RangeError(`no baseline for scope '${scope}'`);
    const rows = this.#db.prepare<[string], Row>('SELECT path, hash, size, mtime_ms, mac FROM guard_checksums WHERE scope = ? ORDER BY path').all(scope);
    const tampered = {
      baseline: !safeEqual(base.mac, this.#baselineMac(base, rows.map((r) => r.mac))) || base.files !== rows.length,
      rows: rows.filter((r) => !safeEqual(r.mac, this.#rowMac(scope, r.path, r.hash, r.size, r.mtime_ms))).map((r) => r.path),
    };
    const patterns = this.#patterns(scope, base.include);
    const present = (await listFiles(base.root)).filter((p) => patterns.some((re) => re.test('/' + p)));
    const stored = new Map(rows.map((r) => [r.path, r]));
    const digests = await this.#hasher.hashFiles(present.map((p) => join(base.root, p)));
    const report: VerifyReport = { scope, ok: false, files: present.length, added: [], removed: [], changed: [], unreadable: [], tampered };
    present.forEach((path, i) => {
      const d = digests[i]!;
      const row = stored.get(path);
      stored.delete(path);
      if ('error' in d) report.unreadable.push({ path, error: d.error });
      else if (!row) report.added.push(path);
      else if (row.hash !== d.hash) report.changed.push({ path, expected: row.hash, actual: d.hash });
    });
    report.removed = [...stored.keys()];
    report.ok = !tampered.baseline && tampered.rows.length === 0 && report.added.length + report.removed.length + report.changed.length + report.unreadable.length === 0;
    return report;
  }

  /**
   * Checks one file against its baseline at once — what the file interceptor
   * calls on every write. `path` is relative to the scope's root. A file the
   * baseline does not cover is 'untracked'; a critical file it lacks is 'added'.
   */
  async verifyFile(scope: string, path: string): Promise<FileCheck> {
    const base = this.#baselineRow(scope);
    if (!base) throw new RangeError(`no baseline for scope '${scope}'`);
    const row = this.#db.prepare<[string, string], Row>('SELECT path, hash, size, mtime_ms, mac FROM guard_checksums WHERE scope = ? AND path = ?').get(scope, path);
    if (row && !safeEqual(row.mac, this.#rowMac(scope, row.path, row.hash, row.size, row.mtime_ms))) return { status: 'tampered', path };
    const critical = this.#patterns(scope, base.include).some((re) => re.test('/' + path));
    if (!row && !critical) return { status: 'untracked', path };
    const d = await this.#hasher.hashFile(join(base.root, path));
    if ('error' in d) {
      if (!row) return { status: 'untracked', path };
      return d.error === 'ENOENT' ? { status: 'removed', path } : { status: 'unreadable', path, error: d.error };
    }
    if (!row) return { status: 'added', path };
    return row.hash === d.hash ? { status: 'unchanged', path } : { status: 'changed', path, expected: row.hash, actual: d.hash };
  }

  #baselineRow(scope: string): BaselineRow | undefined {
    return this.#db.prepare<[string], BaselineRow>('SELECT scope, root, include, files, created, mac FROM guard_baselines WHERE scope = ?').get(scope);
  }

  #patterns(scope: string, includeJson: string): RegExp[] {
    let patterns = this.#includeCache.get(scope);
    if (!patterns) this.#includeCache.set(scope, (patterns = (JSON.parse(includeJson) as string[]).map(globToRegExp)));
    return patterns;
  }

  #rowMac(scope: string, path: string, hash: string, size: number, mtimeMs: number): Buffer {
    return createHmac('sha256', this.#key).update(`strata-guard-row/v1\0${scope}\0${path}\0${hash}\0${size}\0${mtimeMs}`).digest();
  }

  #baselineMac(b: Pick<BaselineRow, 'scope' | 'root' | 'include' | 'files' | 'created'>, rowMacs: Buffer[]): Buffer {
    const rowsDigest = createHash('sha256');
    for (const m of rowMacs) rowsDigest.update(m);
    return createHmac('sha256', this.#key)
      .update(`strata-guard-baseline/v1\0${b.scope}\0${b.root}\0${b.include}\0${b.files}\0${b.created}\0`)
      .update(rowsDigest.digest())
      .digest();
  }
}

const safeEqual = (a: Buffer, b: Buffer): boolean => a.length === b.length && timingSafeEqual(a, b);
