/**
 * `POST /v1/admin/backups`: an online, consistent copy of a running daemon's
 * state into a directory on the server.
 *
 * Consistency: the store, the audit log and the checksum DB share one SQLite
 * file, copied with SQLite's online backup API on the daemon's own connection,
 * so writes made while it copies land in the copy too and it ends as one
 * snapshot of the moment its last page is copied. The files beside it (keys,
 * certificates, docroots) are copied twice: once in bulk before the store,
 * while the daemon serves, then again, synchronously, right after the store's
 * last page, for whatever changed since the bulk copy began. Nothing else runs
 * on the daemon's event loop between the two, so files and store agree: every
 * write acknowledged before the backup began is in it, and no file belongs to a
 * later state of the store than the rows do.
 *
 * The copy's audit log is verified (in a worker thread) before the manifest is
 * written; the manifest is written last, so a directory without one is not a
 * backup.
 */
import { chmodSync, copyFileSync, existsSync, lstatSync, mkdirSync, readdirSync, readlinkSync, realpathSync, rmSync, symlinkSync, type Stats } from 'node:fs';
import { cp, lstat } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import Database from 'better-sqlite3';
import type { Logger } from 'pino';
import type { AuditLog } from '../../audit/log.js';
import { verifyDatabaseInWorker } from '../../audit/verify-worker.js';
import { StrataError } from '../../core/errors.js';
import { writeSecret } from '../../core/secrets.js';
import { validationError } from '../../core/validation.js';
import { VERSION } from '../../core/version.js';
import { MANIFEST, dataDirLayout, type LayoutEntry } from './layout.js';
import { BACKUP_FORMAT, describeTree, type Manifest } from './manifest.js';

/** Pages the online backup copies per turn of the event loop (better-sqlite3's default): the API answers between turns. */
const PAGES_PER_TURN = 100;
/** Files changed this long before the bulk copy began are copied again too: file times come from a coarse clock. */
const CLOCK_SLACK_MS = 2_000;

export interface BackupReport {
  dir: string;
  consistentAt: string;
  files: number;
  bytes: number;
  audit: Manifest['audit'];
  skipped: Manifest['skipped'];
}

/** Reports the fraction done, 0 to 1. */
export type Progress = (fraction: number) => void;

export interface BackupsOptions {
  dataDir: string;
  /** The store's own connection (the audit log and the checksum DB live in it). */
  db: Database.Database;
  audit: AuditLog;
  /** The levels' ids: their state folders are named in the manifest's `skipped`. */
  levelIds: readonly string[];
  log?: Logger;
}

const lstatOrNull = (path: string): Stats | null => {
  try {
    return lstatSync(path);
  } catch {
    return null;
  }
};

/** Files, directories and symlinks; sockets, FIFOs and devices are no state to copy. */
const isState = (st: Stats): boolean => st.isFile() || st.isDirectory() || st.isSymbolicLink();
const isStatePath = async (path: string): Promise<boolean> => {
  const st = await lstat(path).catch(() => null);
  return st !== null && isState(st);
};

/**
 * Makes `dst` what `src` is now: copies what is missing, differs in size, or
 * changed since `changedSince` (ms epoch), removes what `src` no longer has,
 * and sets every mode. Synchronous on purpose (see the header).
 */
function mirrorSync(src: string, dst: string, rel: string, except: ReadonlySet<string>, changedSince: number): void {
  const st = except.has(rel) ? null : lstatOrNull(src);
  if (!st || !isState(st)) {
    rmSync(dst, { recursive: true, force: true });
    return;
  }
  let dt = lstatOrNull(dst);
  const mode = st.mode & 0o7777;
  if (st.isDirectory()) {
    if (dt && !dt.isDirectory()) rmSync(dst, { recursive: true, force: true }), (dt = null);
    if (!dt) mkdirSync(dst, { mode: 0o700 });
    const names = new Set(readdirSync(src));
    for (const name of readdirSync(dst)) if (!names.has(name)) rmSync(join(dst, name), { recursive: true, force: true });
    for (const name of names) mirrorSync(join(src, name), join(dst, name), join(rel, name), except, changedSince);
    chmodSync(dst, mode);
    return;
  }
  if (st.isSymbolicLink()) {
    const target = readlinkSync(src);
    if (dt?.isSymbolicLink() && readlinkSync(dst) === target) return;
    rmSync(dst, { recursive: true, force: true });
    symlinkSync(target, dst);
    return;
  }
  const unchanged = dt?.isFile() && dt.size === st.size && st.mtimeMs < changedSince && st.ctimeMs < changedSince;
  if (!unchanged) {
    rmSync(dst, { recursive: true, force: true });
    try {
      copyFileSync(src, dst);
    } catch (e) {
      // Gone between the look and the copy: gone from the backup too.
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw e;
    }
  }
  chmodSync(dst, mode);
}

const inside = (path: string, dir: string): boolean => path === dir || path.startsWith(dir.endsWith(sep) ? dir : `${dir}${sep}`);

/** The nearest existing ancestor's real path, with the rest appended: where `path` really is, existing or not. */
function realTarget(path: string): string {
  let at = path;
  const rest: string[] = [];
  while (!existsSync(at)) {
    rest.unshift(relative(dirname(at), at));
    at = dirname(at);
  }
  return join(realpathSync(at), ...rest);
}

/** Refuses a target that is not absolute, lies inside the data dir, or holds anything; makes it (0700) when missing. Returns whether it was made. */
export function prepareTarget(dir: string, dataDir: string): boolean {
  if (!isAbsolute(dir)) throw validationError('body.dir', 'an absolute path on the server');
  const real = realTarget(resolve(dir));
  if (inside(real, realpathSync(dataDir))) throw validationError('body.dir', 'must be outside the data dir');
  const st = lstatOrNull(dir);
  if (st) {
    if (!st.isDirectory() || readdirSync(dir).length > 0) {
      throw new StrataError('STRATA_ERR_TARGET_NOT_EMPTY', `${dir} exists and is not an empty directory`, { path: dir });
    }
    chmodSync(dir, 0o700);
    return false;
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return true;
}

export class Backups {
  readonly #o: BackupsOptions;
  readonly #layout: LayoutEntry[];
  #running = false;

  constructor(o: BackupsOptions) {
    this.#o = o;
    this.#layout = dataDirLayout(o.levelIds);
  }

  /**
   * Checks `dir` and claims the one backup slot at once, so a bad target or a
   * second backup is refused before any work starts (4xx); returns the copy
   * itself, for an operation to run. A failed copy removes what it wrote.
   */
  begin(dir: string): (progress: Progress) => Promise<BackupReport> {
    if (this.#running) throw new StrataError('STRATA_ERR_CONFLICT', 'a backup is already running');
    const made = prepareTarget(dir, this.#o.dataDir);
    this.#running = true;
    return async (progress) => {
      try {
        return await this.#copy(dir, progress);
      } catch (e) {
        if (made) rmSync(dir, { recursive: true, force: true });
        else for (const name of readdirSync(dir)) rmSync(join(dir, name), { recursive: true, force: true });
        throw e;
      } finally {
        this.#running = false;
      }
    };
  }

  /** `begin` and the copy in one call. */
  async create(dir: string, progress: Progress = () => {}): Promise<BackupReport> {
    return this.begin(dir)(progress);
  }

  async #copy(dir: string, progress: Progress): Promise<BackupReport> {
    const { dataDir, db, audit } = this.#o;
    const copied = this.#layout.filter((e) => e.backup === 'file' || e.backup === 'tree');
    const except = new Set(copied.flatMap((e) => e.except ?? []));
    const store = this.#layout.find((e) => e.backup === 'sqlite')!.path;
    // Entries appended before now are covered by a signed head in the copy.
    audit.signHead();
    const bulkFrom = Date.now() - CLOCK_SLACK_MS;
    for (const [i, e] of copied.entries()) {
      progress((0.4 * i) / copied.length);
      if (!existsSync(join(dataDir, e.path))) continue;
      await cp(join(dataDir, e.path), join(dir, e.path), {
        recursive: true, verbatimSymlinks: true, errorOnExist: false,
        filter: async (src) => !except.has(relative(dataDir, src)) && isStatePath(src),
      });
    }
    await db.backup(join(dir, store), {
      progress: ({ totalPages, remainingPages }) => {
        progress(0.4 + (0.5 * (totalPages - remainingPages)) / Math.max(1, totalPages));
        return PAGES_PER_TURN;
      },
    });
    // From here to the end of the loop, synchronous: the files as they are at the store's snapshot.
    const consistentAt = new Date().toISOString();
    for (const e of copied) mirrorSync(join(dataDir, e.path), join(dir, e.path), e.path, except, bulkFrom);

    const copy = new Database(join(dir, store));
    let schemaVersion: number;
    try {
      // One self-contained file: no WAL beside it.
      copy.pragma('journal_mode = DELETE');
      schemaVersion = Number(copy.pragma('user_version', { simple: true }));
    } finally {
      copy.close();
    }
    progress(0.9);
    const report = await verifyDatabaseInWorker(join(dir, store), audit.publicKeyPem());
    if (!report.ok) throw new StrataError('STRATA_ERR_AUDIT_VERIFY_FAILED', `the audit log in the copy does not verify: ${report.reason}`, { ...report });

    const entries = await describeTree(dir);
    const files = entries.flatMap((e) => (e.type === 'file' ? [e] : []));
    const manifest: Manifest = {
      format: BACKUP_FORMAT, strataVersion: VERSION, consistentAt, createdAt: new Date().toISOString(), source: dataDir,
      store: { file: store, schemaVersion },
      audit: { size: report.size, signedSize: report.signedSize, heads: report.heads },
      entries,
      skipped: this.#skipped(except),
    };
    writeSecret(join(dir, MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`);
    this.#o.log?.info({ dir, files: files.length, consistentAt }, 'backup written');
    return { dir, consistentAt, files: files.length, bytes: files.reduce((n, f) => n + f.size, 0), audit: manifest.audit, skipped: manifest.skipped };
  }

  /** What the data dir holds that the backup leaves out: the layout's `skip` parts, the exceptions, and names the layout does not know. */
  #skipped(except: ReadonlySet<string>): Manifest['skipped'] {
    const out: Manifest['skipped'] = [];
    for (const name of readdirSync(this.#o.dataDir).sort()) {
      const e = this.#layout.find((l) => l.path === name);
      if (!e) out.push({ path: name, why: 'not part of the data-dir layout this version of Strata knows' });
      else if (e.backup === 'skip') out.push({ path: name, why: e.why ?? e.what });
    }
    for (const path of except) if (existsSync(join(this.#o.dataDir, path))) out.push({ path, why: 'transient' });
    return out;
  }
}
