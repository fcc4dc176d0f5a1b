/**
 * The checksum DB: per scope (`instance:<id>`, `docroot:…`, `strata:self`), a
 * baseline of a tree by inode — every regular file, directory and symlink the
 * scope's include patterns select, each with its device, inode, type and mode
 * bits (setuid included), owner, link count, size, ctime (ns), and its SHA-256
 * (a file) or target (a symlink) — in SQLite, and the checks against it.
 *
 * What a baseline promises, and what each check compares:
 * - content: the hash of a file, the target of a symlink;
 * - metadata: mode and owner — a `chmod 4755` or a `chown` is a change;
 * - identity: device and inode — a file replaced by rename, even with the same
 *   bytes, is another inode; ctime — the kernel moves it on every write, chmod,
 *   chown, link or rename, so a change reverted a moment later (content put
 *   back) still shows, and an unchanged ctime means there is nothing to re-hash;
 * - links: a file's expected link count is the number of its names *inside the
 *   baselined tree*; a higher count means a hard link from elsewhere, through
 *   which the file can be written without touching the watched directories.
 *   That is a change by itself, and at baseline time already (the first check
 *   after the baseline reports it).
 *
 * Everything stored is HMAC-signed with a key the DB does not hold: each row
 * (so one entry can be checked at once, without reading the scope), and each
 * baseline over its root, its include patterns and every row's MAC (so a row
 * deleted or added behind the guard's back is caught too). Altering the DB is
 * thus itself detected: `verify` reports `tampered`, `verifyFile` answers
 * 'tampered'.
 *
 * Which entries count is a list of globs over paths as the tree's user sees
 * them (`/usr/bin/**`, `/etc/**`; the root itself is `/`), stored with the
 * baseline; default all.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { lstat, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import type Database from 'better-sqlite3';
import { globToRegExp } from './condition.js';
import { factsOf, type InodeFacts } from './hash-worker.js';
import type { Hasher, WalkEntry } from './hasher.js';

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
  kind TEXT NOT NULL,
  hash TEXT NOT NULL,
  dev TEXT NOT NULL,
  ino TEXT NOT NULL,
  mode INTEGER NOT NULL,
  uid INTEGER NOT NULL,
  gid INTEGER NOT NULL,
  nlink INTEGER NOT NULL,
  size INTEGER NOT NULL,
  ctime_ns TEXT NOT NULL,
  mac BLOB NOT NULL,
  PRIMARY KEY (scope, path)
) WITHOUT ROWID;
`;

export type EntryKind = 'file' | 'dir' | 'symlink';

/** One baselined entry. `path` is relative to the root ('' is the root itself). */
export interface BaselineEntry extends InodeFacts {
  path: string;
  kind: EntryKind;
  /** A file's SHA-256, a symlink's target, '' for a directory. */
  hash: string;
}

/**
 * What differs from the baseline: `type` (a file is now a directory, a
 * symlink, a FIFO…), `content` (hash), `target` (symlink), `mode`, `owner`,
 * `links` (more names than inside the tree: a hard link from outside),
 * `inode` (replaced), `ctime` (written, even if put back since).
 */
export type Change = 'type' | 'content' | 'target' | 'mode' | 'owner' | 'links' | 'inode' | 'ctime';

export interface BaselineSummary {
  scope: string; root: string; files: number; bytes: number; entries: number;
  /** Files with more links than names in the tree (a hard link from outside): findings from the start. */
  linked: string[];
}

export interface Changed { path: string; expected: string; actual: string; changes: Change[] }

export interface VerifyReport {
  scope: string;
  /** True when nothing changed and the stored baseline is authentic. */
  ok: boolean;
  /** Entries present now. */
  files: number;
  added: string[];
  /** What each added path is: file, dir, symlink, fifo, socket, device. */
  kinds: Record<string, string>;
  removed: string[];
  changed: Changed[];
  /** Files that exist but could not be read. */
  unreadable: { path: string; error: string }[];
  /** The DB itself was altered: the baseline's signature fails, or these rows' do. */
  tampered: { baseline: boolean; rows: string[] };
}

/** One entry against its baseline; `path` is relative to the scope's root. */
export type FileCheck =
  | { status: 'unchanged' | 'untracked'; path: string }
  | ({ status: 'changed' } & Changed)
  | { status: 'added'; path: string; kind: string }
  | { status: 'removed'; path: string }
  | { status: 'tampered'; path: string }
  | { status: 'unreadable'; path: string; error: string };

type Row = { path: string; kind: EntryKind; hash: string; dev: string; ino: string; mode: number; uid: number; gid: number; nlink: number; size: number; ctime_ns: string; mac: Buffer };
type BaselineRow = { scope: string; root: string; include: string; files: number; created: string; mac: Buffer };

const ROW_COLUMNS = 'path, kind, hash, dev, ino, mode, uid, gid, nlink, size, ctime_ns, mac';

export class ChecksumDb {
  readonly #db: Database.Database;
  readonly #key: Buffer;
  readonly #hasher: Hasher;
  readonly #includeCache = new Map<string, RegExp[]>();
  /** scope → its rows as this process wrote them: the stat-only sweep compares against these without re-checking every MAC. */
  readonly #trusted = new Map<string, Map<string, BaselineEntry>>();

  constructor(db: Database.Database, opts: { key: Buffer; hasher: Hasher }) {
    if (opts.key.length < 32) throw new RangeError('the checksum DB key must be at least 32 bytes');
    this.#db = db;
    this.#key = opts.key;
    this.#hasher = opts.hasher;
    // Baselines of the hash-only layout cannot be checked by inode; every watched tree is baselined again when the daemon starts.
    const columns = db.prepare<[], { name: string }>("SELECT name FROM pragma_table_info('guard_checksums')").all().map((c) => c.name);
    if (columns.length > 0 && !columns.includes('ino')) db.exec('DROP TABLE guard_checksums; DROP TABLE IF EXISTS guard_baselines;');
    db.exec(CHECKSUMS_SCHEMA_SQL);
  }

  /** Takes every selected entry under `root` and stores it, signed, as the scope's baseline (replacing any). */
  async baseline(scope: string, root: string, opts: { include?: string[] } = {}): Promise<BaselineSummary> {
    const include = opts.include ?? ['/**'];
    const walked = await this.#hasher.walk(root, include.map(globToRegExp));
    const files = walked.filter((e) => entryKind(e.mode) === 'file');
    const digests = await this.#hasher.hashFiles(files.map((e) => join(root, e.path)));
    const hashes = new Map<string, { hash: string; facts: InodeFacts }>();
    files.forEach((e, i) => { const d = digests[i]!; if (!('error' in d)) hashes.set(e.path, d); });
    const entries: BaselineEntry[] = [];
    let bytes = 0;
    for (const e of walked) {
      const kind = entryKind(e.mode);
      if (kind === 'file') {
        const d = hashes.get(e.path);
        if (!d) continue; // unreadable now: reported by the first check
        bytes += d.facts.size;
        entries.push({ path: e.path, kind, hash: d.hash, ...d.facts });
      } else if (kind) {
        entries.push({ path: e.path, kind, hash: kind === 'symlink' ? e.target ?? '' : '', ...facts(e) });
      }
      // FIFOs, sockets and devices are never part of a baseline: found later, they are unknown entries.
    }
    const linked = expectInTreeLinks(entries);
    const created = new Date().toISOString();
    const includeJson = JSON.stringify(include);
    const macs = entries.map((r) => this.#rowMac(scope, r));
    const mac = this.#baselineMac({ scope, root, include: includeJson, files: entries.length, created }, macs);
    const insert = this.#db.prepare(`INSERT INTO guard_checksums (scope, ${ROW_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`);
    this.#db.transaction(() => {
      this.#db.prepare('DELETE FROM guard_checksums WHERE scope = ?').run(scope);
      entries.forEach((r, i) => insert.run(scope, r.path, r.kind, r.hash, r.dev, r.ino, r.mode, r.uid, r.gid, r.nlink, r.size, r.ctimeNs, macs[i]));
      this.#db.prepare('INSERT OR REPLACE INTO guard_baselines (scope, root, include, files, created, mac) VALUES (?, ?, ?, ?, ?, ?)')
        .run(scope, root, includeJson, entries.length, created, mac);
    })();
    this.#includeCache.delete(scope);
    this.#trusted.set(scope, new Map(entries.map((e) => [e.path, e])));
    return { scope, root, files: files.length, bytes, entries: entries.length, linked };
  }

  /** The scopes with a baseline. */
  scopes(): string[] {
    return this.#db.prepare<[], string>('SELECT scope FROM guard_baselines ORDER BY scope').pluck().all();
  }

  /**
   * The baseline's entries — only rows whose signature holds, so a forged row
   * can never be the source of a restore.
   */
  entries(scope: string): BaselineEntry[] {
    return this.#rows(scope).filter((r) => this.#authentic(scope, r)).map(entryOf);
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
    this.#trusted.delete(scope);
  }

  /**
   * Walks the scope's tree and reports what differs from its baseline, and
   * whether the baseline is authentic. `rehash: 'all'` (default) re-hashes
   * every file; 'changed' only those whose inode facts moved — the stat-only
   * sweep, which also trusts the rows this process wrote instead of checking
   * each signature (the full verification does that).
   */
  async verify(scope: string, opts: { rehash?: 'all' | 'changed' } = {}): Promise<VerifyReport> {
    const base = this.#baselineRow(scope);
    if (!base) throw new RangeError(`no baseline for scope '${scope}'`);
    const sweep = opts.rehash === 'changed';
    const tampered = { baseline: false, rows: [] as string[] };
    let stored = sweep ? this.#trusted.get(scope) : undefined;
    if (!stored) {
      const rows = this.#rows(scope);
      tampered.baseline = !safeEqual(base.mac, this.#baselineMac(base, rows.map((r) => r.mac))) || base.files !== rows.length;
      tampered.rows = rows.filter((r) => !this.#authentic(scope, r)).map((r) => r.path);
      stored = new Map(rows.map((r) => [r.path, entryOf(r)]));
    }
    const present = await this.#hasher.walk(base.root, this.#patterns(scope, base.include));
    const report: VerifyReport = { scope, ok: false, files: present.length, added: [], kinds: {}, removed: [], changed: [], unreadable: [], tampered };
    const seen = new Set<string>();
    const toHash: { entry: WalkEntry; row: BaselineEntry; changes: Change[] }[] = [];
    for (const e of present) {
      seen.add(e.path);
      const row = stored.get(e.path);
      if (!row) { report.added.push(e.path); report.kinds[e.path] = typeName(e.mode); continue; }
      const changes = compare(row, facts(e), e.target);
      if (row.kind === 'file' && !changes.includes('type') && (!sweep || changes.length > 0)) toHash.push({ entry: e, row, changes });
      else if (changes.length > 0) report.changed.push(changed(row, e.mode, e.target ?? '', changes));
    }
    const digests = await this.#hasher.hashFiles(toHash.map((h) => join(base.root, h.entry.path)));
    toHash.forEach(({ entry, row, changes }, i) => {
      const d = digests[i]!;
      if ('error' in d) {
        if (d.error === 'ENOENT') report.removed.push(entry.path);
        else report.unreadable.push({ path: entry.path, error: d.error });
        return;
      }
      // The facts of what was hashed: a write between the walk and the read counts.
      const all = compare(row, d.facts);
      if (d.hash !== row.hash) all.push('content');
      for (const c of changes) if (!all.includes(c) && c !== 'type') all.push(c);
      if (all.length > 0) report.changed.push({ path: entry.path, expected: row.hash, actual: d.hash, changes: all });
    });
    for (const path of stored.keys()) if (!seen.has(path)) report.removed.push(path);
    report.removed.sort();
    // A directory whose ctime moved because an entry in it was added, removed or replaced is explained by that finding.
    const parents = new Set([...report.added, ...report.removed, ...report.changed.map((c) => c.path)].map(parentOf));
    report.changed = report.changed.filter((c) => !(stored.get(c.path)?.kind === 'dir' && c.changes.length === 1 && c.changes[0] === 'ctime' && parents.has(c.path)));
    report.changed.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    report.ok = !tampered.baseline && tampered.rows.length === 0 && report.added.length + report.removed.length + report.changed.length + report.unreadable.length === 0;
    return report;
  }

  /**
   * Checks one entry against its baseline at once — what the file interceptor
   * calls on every event. `path` is relative to the scope's root. An entry the
   * baseline does not cover is 'untracked'; a selected one it lacks is
   * 'added'. Costs one lstat when nothing moved (same inode, same ctime); a
   * file is re-hashed only when something did.
   */
  async verifyFile(scope: string, path: string): Promise<FileCheck> {
    const base = this.#baselineRow(scope);
    if (!base) throw new RangeError(`no baseline for scope '${scope}'`);
    const raw = this.#db.prepare<[string, string], Row>(`SELECT ${ROW_COLUMNS} FROM guard_checksums WHERE scope = ? AND path = ?`).get(scope, path);
    if (raw && !this.#authentic(scope, raw)) return { status: 'tampered', path };
    const row = raw ? entryOf(raw) : undefined;
    const critical = this.#patterns(scope, base.include).some((re) => re.test('/' + path));
    if (!row && !critical) return { status: 'untracked', path };
    const abs = path === '' ? base.root : join(base.root, path);
    let now: InodeFacts;
    try {
      now = factsOf(await lstat(abs, { bigint: true }));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? String(err);
      if (!row) return { status: 'untracked', path };
      return code === 'ENOENT' || code === 'ENOTDIR' ? { status: 'removed', path } : { status: 'unreadable', path, error: code };
    }
    if (!row) return { status: 'added', path, kind: typeName(now.mode) };
    const target = kindOf(now.mode) === 'symlink' ? await readlink(abs).catch(() => '') : undefined;
    const changes = compare(row, now, target);
    if (changes.length === 0) return { status: 'unchanged', path };
    if (row.kind !== 'file' || changes.includes('type')) return { status: 'changed', ...changed(row, now.mode, target ?? '', changes) };
    const d = await this.#hasher.hashFile(abs);
    if ('error' in d) return d.error === 'ENOENT' ? { status: 'removed', path } : { status: 'unreadable', path, error: d.error };
    const all = compare(row, d.facts);
    if (d.hash !== row.hash) all.push('content');
    if (all.length === 0) return { status: 'unchanged', path };
    return { status: 'changed', path, expected: row.hash, actual: d.hash, changes: all };
  }

  /**
   * Takes the entries at `paths` again after a restore put them back: an entry
   * whose content, type, mode and owner are what the baseline says gets its new
   * inode, ctime and (fewer) links recorded; anything else keeps its old row
   * and stays a finding. Re-signs the baseline. Returns the paths resealed.
   */
  async reseal(scope: string, paths: Iterable<string>): Promise<string[]> {
    const base = this.#baselineRow(scope);
    if (!base) throw new RangeError(`no baseline for scope '${scope}'`);
    const rows = new Map(this.entries(scope).map((e) => [e.path, e]));
    const updates: BaselineEntry[] = [];
    for (const path of new Set(paths)) {
      const row = rows.get(path);
      if (!row) continue;
      const abs = path === '' ? base.root : join(base.root, path);
      let now: InodeFacts, hash = row.hash;
      if (row.kind === 'file') {
        const d = await this.#hasher.hashFile(abs);
        if ('error' in d) continue;
        ({ facts: now, hash } = d);
      } else {
        try { now = factsOf(await lstat(abs, { bigint: true })); } catch { continue; }
        if (row.kind === 'symlink') hash = await readlink(abs).catch(() => '');
      }
      const changes = compare(row, now, row.kind === 'symlink' ? hash : undefined);
      const accepted = hash === row.hash && changes.every((c) => c === 'inode' || c === 'ctime' || (c === 'links' && now.nlink < row.nlink));
      if (accepted && changes.length > 0) updates.push({ ...row, ...now, nlink: row.kind === 'dir' ? now.nlink : Math.min(now.nlink, row.nlink) });
    }
    if (updates.length === 0) return [];
    const update = this.#db.prepare('UPDATE guard_checksums SET dev = ?, ino = ?, nlink = ?, size = ?, ctime_ns = ?, mac = ? WHERE scope = ? AND path = ?');
    this.#db.transaction(() => {
      for (const u of updates) update.run(u.dev, u.ino, u.nlink, u.size, u.ctimeNs, this.#rowMac(scope, u), scope, u.path);
      const all = this.#rows(scope);
      const mac = this.#baselineMac({ ...base, files: all.length }, all.map((r) => r.mac));
      this.#db.prepare('UPDATE guard_baselines SET files = ?, mac = ? WHERE scope = ?').run(all.length, mac, scope);
    })();
    const trusted = this.#trusted.get(scope);
    for (const u of updates) trusted?.set(u.path, u);
    return updates.map((u) => u.path);
  }

  #rows(scope: string): Row[] {
    return this.#db.prepare<[string], Row>(`SELECT ${ROW_COLUMNS} FROM guard_checksums WHERE scope = ? ORDER BY path`).all(scope);
  }

  #authentic(scope: string, r: Row): boolean {
    return safeEqual(r.mac, this.#rowMac(scope, entryOf(r)));
  }

  #baselineRow(scope: string): BaselineRow | undefined {
    return this.#db.prepare<[string], BaselineRow>('SELECT scope, root, include, files, created, mac FROM guard_baselines WHERE scope = ?').get(scope);
  }

  #patterns(scope: string, includeJson: string): RegExp[] {
    let patterns = this.#includeCache.get(scope);
    if (!patterns) this.#includeCache.set(scope, (patterns = (JSON.parse(includeJson) as string[]).map(globToRegExp)));
    return patterns;
  }

  #rowMac(scope: string, e: BaselineEntry): Buffer {
    return createHmac('sha256', this.#key)
      .update(`strata-guard-row/v2\0${scope}\0${e.path}\0${e.kind}\0${e.hash}\0${e.dev}\0${e.ino}\0${e.mode}\0${e.uid}\0${e.gid}\0${e.nlink}\0${e.size}\0${e.ctimeNs}`)
      .digest();
  }

  #baselineMac(b: Pick<BaselineRow, 'scope' | 'root' | 'include' | 'files' | 'created'>, rowMacs: Buffer[]): Buffer {
    const rowsDigest = createHash('sha256');
    for (const m of rowMacs) rowsDigest.update(m);
    return createHmac('sha256', this.#key)
      .update(`strata-guard-baseline/v2\0${b.scope}\0${b.root}\0${b.include}\0${b.files}\0${b.created}\0`)
      .update(rowsDigest.digest())
      .digest();
  }
}

const S_IFMT = 0o170000;
const TYPES: Record<number, string> = { 0o100000: 'file', 0o040000: 'dir', 0o120000: 'symlink', 0o010000: 'fifo', 0o140000: 'socket', 0o020000: 'device', 0o060000: 'device' };

/** What an st_mode is: file, dir, symlink, fifo, socket, device. */
export const typeName = (mode: number): string => TYPES[mode & S_IFMT] ?? 'unknown';
const kindOf = (mode: number): string => typeName(mode);
const entryKind = (mode: number): EntryKind | null => {
  const k = typeName(mode);
  return k === 'file' || k === 'dir' || k === 'symlink' ? k : null;
};

/** Permission bits as `chmod` writes them (`4755`). */
export const permissions = (mode: number): string => (mode & 0o7777).toString(8).padStart(4, '0');

/** What differs between a baselined entry and the inode facts (and symlink target) seen now. */
export function compare(row: BaselineEntry, now: InodeFacts, target?: string): Change[] {
  if (kindOf(now.mode) !== row.kind) return ['type'];
  const changes: Change[] = [];
  if (row.kind === 'symlink' && target !== undefined && target !== row.hash) changes.push('target');
  if ((now.mode & 0o7777) !== (row.mode & 0o7777)) changes.push('mode');
  if (now.uid !== row.uid || now.gid !== row.gid) changes.push('owner');
  if (row.kind !== 'dir' && now.nlink !== row.nlink) changes.push('links');
  if (now.dev !== row.dev || now.ino !== row.ino) changes.push('inode');
  if (now.ctimeNs !== row.ctimeNs) changes.push('ctime');
  return changes;
}

const describe = (mode: number, target: string): string => {
  const type = typeName(mode);
  return type === 'symlink' ? `-> ${target}` : type === 'file' ? '' : type;
};

function changed(row: BaselineEntry, mode: number, target: string, changes: Change[]): Changed {
  const expected = row.kind === 'file' ? row.hash : describe(row.mode, row.hash);
  return { path: row.path, expected, actual: describe(mode, target) || 'file', changes };
}

/**
 * A file's (or symlink's) expected link count is how many of its names the
 * baseline holds; returns the paths that have more links than that.
 */
function expectInTreeLinks(entries: BaselineEntry[]): string[] {
  const names = new Map<string, number>();
  const linked: string[] = [];
  for (const e of entries) if (e.kind !== 'dir') names.set(`${e.dev}:${e.ino}`, (names.get(`${e.dev}:${e.ino}`) ?? 0) + 1);
  for (const e of entries) {
    if (e.kind === 'dir') continue;
    const inTree = names.get(`${e.dev}:${e.ino}`)!;
    if (e.nlink > inTree) linked.push(e.path);
    e.nlink = inTree;
  }
  return linked;
}

const parentOf = (path: string): string => (path.includes('/') ? path.slice(0, path.lastIndexOf('/')) : path === '' ? '\0' : '');

const facts = (e: InodeFacts): InodeFacts => ({ dev: e.dev, ino: e.ino, mode: e.mode, uid: e.uid, gid: e.gid, nlink: e.nlink, size: e.size, ctimeNs: e.ctimeNs });

const entryOf = (r: Row): BaselineEntry => ({
  path: r.path, kind: r.kind, hash: r.hash, dev: r.dev, ino: r.ino, mode: r.mode, uid: r.uid, gid: r.gid, nlink: r.nlink, size: r.size, ctimeNs: r.ctime_ns,
});

const safeEqual = (a: Buffer, b: Buffer): boolean => a.length === b.length && timingSafeEqual(a, b);
