/**
 * `strata admin restore DIR --data-dir NEW`: a backup made by `Backups` onto an
 * empty data dir, offline (no daemon runs on NEW yet).
 *
 * Nothing is written until the whole backup checks out: the manifest parses,
 * names only parts of a daemon backup, every file in the directory is in
 * it with its size and sha256 (and nothing else is there), and its store's
 * schema is one this Strata knows. Then the files are
 * copied with the manifest's modes (keys stay 0600) and the audit log of the
 * restored store is verified with the restored key; a log that does not verify
 * undoes the restore.
 */
import { chmodSync, copyFileSync, existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { join, sep } from 'node:path';
import Database from 'better-sqlite3';
import { verifyDatabase, type VerifyReport } from '../../audit/verify.js';
import { MIGRATIONS } from '../../store/migrations.js';
import { StrataError } from '../../core/errors.js';
import { DATA_DIR_LAYOUT, MANIFEST } from './layout.js';
import { ManifestSchema, describeTree, type Manifest, type ManifestEntry } from './manifest.js';

export interface RestoreReport {
  dataDir: string;
  consistentAt: string;
  strataVersion: string;
  files: number;
  bytes: number;
  audit: VerifyReport;
}

const invalid = (message: string, path?: string): StrataError =>
  new StrataError('STRATA_ERR_BACKUP_INVALID', message, path ? { path } : undefined);

/** The manifest of the backup in `dir`, parsed and checked against the layout. */
export function readManifest(dir: string): Manifest {
  let text: string;
  try {
    text = readFileSync(join(dir, MANIFEST), 'utf8');
  } catch {
    throw invalid(`${dir} has no ${MANIFEST}: not a Strata backup, or one that did not finish`, MANIFEST);
  }
  let parsed: ReturnType<typeof ManifestSchema.safeParse>;
  try {
    parsed = ManifestSchema.safeParse(JSON.parse(text));
  } catch {
    throw invalid(`${MANIFEST} is not JSON`, MANIFEST);
  }
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw invalid(`${MANIFEST}: ${issue.path.join('.')}: ${issue.message}`, MANIFEST);
  }
  const manifest = parsed.data;
  for (const e of manifest.entries) {
    const top = e.path.split(sep)[0]!;
    const part = DATA_DIR_LAYOUT.find((l) => l.path === top && l.backup !== 'skip');
    const excepted = part?.except?.some((x) => e.path === x || e.path.startsWith(`${x}${sep}`));
    if (!part || excepted) throw invalid(`${e.path} is not part of a daemon backup`, e.path);
    if (part.backup !== 'tree' && (e.path !== top || e.type !== 'file')) throw invalid(`${e.path} must be a file`, e.path);
  }
  if (!manifest.entries.some((e) => e.path === manifest.store.file && e.type === 'file')) {
    throw invalid(`the manifest lists no store (${manifest.store.file})`, manifest.store.file);
  }
  return manifest;
}

/** Throws, naming the first file, unless `dir` holds exactly what the manifest lists, byte for byte. */
export async function verifyBackup(dir: string, manifest: Manifest): Promise<void> {
  const actual = new Map((await describeTree(dir, new Set([MANIFEST]))).map((e) => [e.path, e]));
  for (const want of manifest.entries) {
    const have = actual.get(want.path);
    actual.delete(want.path);
    if (!have) throw invalid(`${want.path} is missing from the backup`, want.path);
    if (have.type !== want.type) throw invalid(`${want.path} is a ${have.type} in the backup, the manifest says ${want.type}`, want.path);
    if (have.type === 'file' && want.type === 'file' && (have.size !== want.size || have.sha256 !== want.sha256)) {
      throw invalid(`${want.path} does not match its sha256 in the manifest: the backup was altered or damaged`, want.path);
    }
    if (have.type === 'symlink' && want.type === 'symlink' && have.target !== want.target) {
      throw invalid(`${want.path} points elsewhere than the manifest says`, want.path);
    }
  }
  const extra = actual.keys().next();
  if (!extra.done) throw invalid(`${extra.value} is in the backup but not in its manifest`, extra.value);
}

/** Refuses a store whose schema this Strata does not know: a newer version took the backup, and this one would run on it blind. */
function checkSchema(dir: string, manifest: Manifest): void {
  const db = new Database(join(dir, manifest.store.file), { readonly: true, fileMustExist: true });
  let version: number;
  try {
    version = Number(db.pragma('user_version', { simple: true }));
  } finally {
    db.close();
  }
  const known = Math.max(...MIGRATIONS.map((m) => m.version));
  if (version > known) {
    throw invalid(`the backup's store has schema ${version}, newer than this Strata knows (${known}): restore it with Strata ${manifest.strataVersion} or later`, manifest.store.file);
  }
}

/** Refuses anything but a missing or empty directory; makes it (0700). */
function prepareDataDir(dataDir: string): void {
  if (existsSync(dataDir)) {
    if (!lstatSync(dataDir).isDirectory() || readdirSync(dataDir).length > 0) {
      throw new StrataError('STRATA_ERR_TARGET_NOT_EMPTY', `${dataDir} is not an empty directory: restore only onto a new data dir`, { path: dataDir });
    }
  } else {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  }
  chmodSync(dataDir, 0o700);
}

function place(from: string, to: string, entries: readonly ManifestEntry[]): void {
  // Directories first (writable while filled), files, symlinks last (nothing is written through one), then the directories' own modes, deepest first.
  for (const e of entries) if (e.type === 'dir') mkdirSync(join(to, e.path), { mode: 0o700 });
  for (const e of entries) {
    if (e.type !== 'file') continue;
    copyFileSync(join(from, e.path), join(to, e.path));
    chmodSync(join(to, e.path), e.mode);
  }
  for (const e of entries) if (e.type === 'symlink') symlinkSync(e.target, join(to, e.path));
  for (const e of [...entries].reverse()) if (e.type === 'dir') chmodSync(join(to, e.path), e.mode);
}

export async function restoreBackup(backupDir: string, dataDir: string): Promise<RestoreReport> {
  const manifest = readManifest(backupDir);
  prepareDataDir(dataDir);
  try {
    await verifyBackup(backupDir, manifest);
    checkSchema(backupDir, manifest);
    place(backupDir, dataDir, manifest.entries);
    const key = manifest.entries.some((e) => e.path === 'audit-key.pem') ? readFileSync(join(dataDir, 'audit-key.pem')) : null;
    if (!key) throw invalid('the backup has no audit key: its audit log cannot be verified', 'audit-key.pem');
    const audit = verifyDatabase(join(dataDir, manifest.store.file), key);
    if (!audit.ok) throw new StrataError('STRATA_ERR_AUDIT_VERIFY_FAILED', `the restored audit log does not verify: ${audit.reason}`, { ...audit });
    const files = manifest.entries.flatMap((e) => (e.type === 'file' ? [e] : []));
    return {
      dataDir, consistentAt: manifest.consistentAt, strataVersion: manifest.strataVersion,
      files: files.length, bytes: files.reduce((n, f) => n + f.size, 0), audit,
    };
  } catch (e) {
    // The data dir was empty: leave it so.
    for (const name of readdirSync(dataDir)) rmSync(join(dataDir, name), { recursive: true, force: true });
    throw e;
  }
}
