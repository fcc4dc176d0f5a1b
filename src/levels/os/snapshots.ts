/**
 * The os level's snapshot store: content-addressed, per tenant, deduplicated and
 * checksummed. A snapshot of an instance is its overlay upper layer (what it
 * changed over its image, whiteouts included) and the contents of its data
 * volume, if it has one.
 *
 * On disk, under `<stateDir>/snapshots/<tenant>/` (0700, root only):
 *
 *     objects/ab/ab12…     file contents, named by their sha256 (read-only, deduplicated within the tenant)
 *     manifests/<sha>.json the manifest, named by its own sha256 (= the snapshot's digest)
 *     snapshots/<id>.json  the snapshot: its manifest digest, instance, size, time
 *
 * The manifest lists every entry of each tree in path order: type (dir, file,
 * symlink, whiteout), mode (setuid bits included), owner, mtime, and the content
 * sha256 of a file or the target of a symlink; directories an overlay made
 * opaque say so. Owners are kept relative to the tenant's id range (container
 * ids), so a restore can never hand a file to an id outside the tenant's range:
 * ids outside it (e.g. whiteouts the host made) are recorded as the container's
 * root. It holds nothing that changes when the instance does not (no snapshot id,
 * no time), so two snapshots of an unchanged instance share their manifest and
 * the second stores nothing.
 *
 * Stores never share objects across tenants: one tenant's snapshot can neither
 * name nor reveal (through dedup timing or size) another tenant's content.
 *
 * Not kept: hard links (each link is stored as its own file, sharing its object),
 * FIFOs, sockets and device nodes other than overlay whiteouts (0/0 character
 * devices), extended attributes other than the overlay's opaque marker.
 */
import { createHash, randomUUID } from 'node:crypto';
import { constants, existsSync } from 'node:fs';
import { chmod, lchown, lstat, lutimes, mkdir, open, readFile, readdir, readlink, rename, rm, symlink, unlink, utimes, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { KeyedMutex } from '../../core/keyed-mutex.js';
import { StrataError, conflict, notFound } from '../../core/errors.js';
import { validationError } from '../../core/validation.js';
import { run } from './exec.js';
import { IDS_PER_TENANT } from './options.js';
import { readJson, writeJsonAtomic } from './state-file.js';

export const SNAPSHOT_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
const SHA256 = /^[0-9a-f]{64}$/;
const OPAQUE_XATTR = 'trusted.overlay.opaque';
const CHUNK = 1024 * 1024;

/** One lock per tenant store, shared by every store object in the process: captures, restores and deletes never interleave. */
const tenantLocks = new KeyedMutex();

export type EntryType = 'dir' | 'file' | 'symlink' | 'whiteout';

export interface ManifestEntry {
  /** Relative to the tree's root; '.' is the root itself. */
  path: string;
  type: EntryType;
  /** Permission bits with setuid, setgid and sticky (mode & 0o7777). */
  mode: number;
  /** Container ids (host id − the tenant's first id). */
  uid: number;
  gid: number;
  mtimeMs: number;
  size?: number;
  sha256?: string;
  target?: string;
  opaque?: true;
}

export interface SnapshotManifest {
  version: 1;
  image: { name: string; digest: string };
  upper: ManifestEntry[];
  volume: ManifestEntry[] | null;
}

export interface SnapshotRecord {
  snapshotId: string;
  instanceId: string;
  digest: string;
  sizeBytes: number;
  createdAt: string;
  /** Process state: never, for now (CRIU cannot initialise on this kernel; see docs/os-level.md). */
  processState: false;
}

/** What to capture or where to restore: host directories, and the tenant's first host id. */
export interface SnapshotTrees {
  upper: string;
  /** The volume's mount point, or null when the instance has no volume. */
  volume: string | null;
  hostId: number;
}

/** The store's directory name for a tenant: the id itself when it is plain, else `~` + its hex (so no two tenants ever share a dir). */
export function tenantDirName(tenantId: string): string {
  return /^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$/.test(tenantId) ? tenantId : `~${Buffer.from(tenantId, 'utf8').toString('hex')}`;
}

export class SnapshotStore {
  constructor(readonly root: string) {}

  tenantDir(tenantId: string): string {
    return join(this.root, tenantDirName(tenantId));
  }

  objectPath(tenantId: string, sha256: string): string {
    return join(this.tenantDir(tenantId), 'objects', sha256.slice(0, 2), sha256);
  }

  async get(tenantId: string, snapshotId: string): Promise<SnapshotRecord | null> {
    checkSnapshotId(snapshotId);
    return readJson<SnapshotRecord>(join(this.tenantDir(tenantId), 'snapshots', `${snapshotId}.json`));
  }

  /** Runs `fn` holding the tenant's store lock (not reentrant: `fn` must not call `capture` or `delete`). */
  locked<T>(tenantId: string, fn: () => Promise<T>): Promise<T> {
    return tenantLocks.run(this.tenantDir(tenantId), fn);
  }

  /** The tenant's snapshots, by id. */
  async list(tenantId: string): Promise<SnapshotRecord[]> {
    const dir = join(this.tenantDir(tenantId), 'snapshots');
    const names = await readdir(dir).catch(() => [] as string[]);
    const records = await Promise.all(names.filter((n) => n.endsWith('.json') && SNAPSHOT_ID.test(n.slice(0, -5))).map((n) => readJson<SnapshotRecord>(join(dir, n))));
    return records.filter((r): r is SnapshotRecord => r !== null).sort((a, b) => a.snapshotId.localeCompare(b.snapshotId));
  }

  /**
   * Deletes a snapshot, then every manifest and object no remaining snapshot of
   * the tenant needs; returns the bytes freed. Unknown ids are not an error. If
   * any remaining manifest cannot be read, nothing is collected (never guess).
   */
  delete(tenantId: string, snapshotId: string): Promise<{ freedBytes: number }> {
    checkSnapshotId(snapshotId);
    return this.locked(tenantId, async () => {
      const base = this.tenantDir(tenantId);
      await rm(join(base, 'snapshots', `${snapshotId}.json`), { force: true });
      const manifests = new Set<string>();
      const objects = new Set<string>();
      for (const record of await this.list(tenantId)) {
        manifests.add(record.digest);
        const { manifest } = await this.manifest(tenantId, record.snapshotId).catch(() => ({ manifest: null }));
        if (!manifest) return { freedBytes: 0 };
        for (const e of [...manifest.upper, ...(manifest.volume ?? [])]) if (e.sha256) objects.add(e.sha256);
      }
      let freedBytes = 0;
      const drop = async (path: string): Promise<void> => {
        freedBytes += (await lstat(path)).size;
        await rm(path, { force: true });
      };
      for (const name of await readdir(join(base, 'manifests')).catch(() => [] as string[])) {
        if (!manifests.has(name.replace(/\.json$/, ''))) await drop(join(base, 'manifests', name));
      }
      for (const prefix of await readdir(join(base, 'objects')).catch(() => [] as string[])) {
        for (const name of await readdir(join(base, 'objects', prefix))) {
          if (!objects.has(name)) await drop(join(base, 'objects', prefix, name));
        }
      }
      return { freedBytes };
    });
  }

  /**
   * Captures the trees into the tenant's store as `snapshotId` (refused if taken).
   * The caller keeps them still (the container frozen) while this runs.
   */
  capture(tenantId: string, snapshotId: string, instanceId: string, image: SnapshotManifest['image'], trees: SnapshotTrees): Promise<SnapshotRecord> {
    checkSnapshotId(snapshotId);
    return this.locked(tenantId, () => this.#capture(tenantId, snapshotId, instanceId, image, trees));
  }

  async #capture(tenantId: string, snapshotId: string, instanceId: string, image: SnapshotManifest['image'], trees: SnapshotTrees): Promise<SnapshotRecord> {
    const base = this.tenantDir(tenantId);
    const refPath = join(base, 'snapshots', `${snapshotId}.json`);
    if (existsSync(refPath)) throw conflict(`snapshot '${snapshotId}' already exists`, { snapshotId });
    for (const d of [this.root, base, join(base, 'objects'), join(base, 'manifests'), join(base, 'snapshots'), join(base, 'tmp')]) {
      await mkdir(d, { recursive: true, mode: 0o700 });
    }
    const counter = { bytes: 0 };
    const upper = await this.#captureTree(tenantId, trees.upper, trees.hostId, counter, true);
    const volume = trees.volume === null ? null : await this.#captureTree(tenantId, trees.volume, trees.hostId, counter, false);
    const manifest: SnapshotManifest = { version: 1, image: { name: image.name, digest: image.digest }, upper, volume };
    const bytes = Buffer.from(`${JSON.stringify(manifest)}\n`);
    const digest = sha256Hex(bytes);
    const manifestPath = join(base, 'manifests', `${digest}.json`);
    if (!existsSync(manifestPath)) {
      const tmp = join(base, 'tmp', randomUUID());
      await writeFile(tmp, bytes, { mode: 0o400 });
      await rename(tmp, manifestPath);
      counter.bytes += bytes.length;
    }
    const record: SnapshotRecord = { snapshotId, instanceId, digest, sizeBytes: counter.bytes, createdAt: new Date().toISOString(), processState: false };
    await writeJsonAtomic(refPath, record);
    return record;
  }

  /**
   * The snapshot's manifest, checked against its digest. Throws NOT_FOUND when
   * the tenant has no such snapshot, DRIVER when the manifest is corrupt.
   */
  async manifest(tenantId: string, snapshotId: string): Promise<{ record: SnapshotRecord; manifest: SnapshotManifest }> {
    const record = await this.get(tenantId, snapshotId);
    if (!record) throw notFound('snapshot', snapshotId);
    if (!SHA256.test(record.digest)) throw corrupt(`snapshot '${snapshotId}' names no valid manifest digest`, { snapshotId });
    const path = join(this.tenantDir(tenantId), 'manifests', `${record.digest}.json`);
    let bytes: Buffer;
    try {
      bytes = await readFile(path);
    } catch {
      throw corrupt(`snapshot '${snapshotId}': its manifest ${record.digest} is missing`, { snapshotId, object: record.digest });
    }
    const actual = sha256Hex(bytes);
    if (actual !== record.digest) throw corrupt(`snapshot '${snapshotId}': manifest ${record.digest} is corrupt (its sha256 is ${actual})`, { snapshotId, object: record.digest, actual });
    return { record, manifest: JSON.parse(bytes.toString('utf8')) as SnapshotManifest };
  }

  /**
   * Writes `entries` into the empty directory `target` (which must exist), every
   * file copied from its object and checked against its sha256 on the way: a
   * missing or corrupt object throws, naming it and the path it was for.
   */
  async materialize(tenantId: string, snapshotId: string, entries: readonly ManifestEntry[], target: string, hostId: number): Promise<void> {
    const dirs = new Set<string>(['.']);
    const dirTimes: Array<[string, number]> = [];
    const opaque: string[] = [];
    for (const entry of entries) {
      const rel = checkEntryPath(entry.path);
      if (rel !== '.' && !dirs.has(parentOf(rel))) throw corrupt(`snapshot '${snapshotId}': '${rel}' has no directory above it`, { snapshotId, path: rel });
      const path = rel === '.' ? target : join(target, rel);
      const uid = hostId + clampId(entry.uid);
      const gid = hostId + clampId(entry.gid);
      switch (entry.type) {
        case 'dir':
          if (rel !== '.') await mkdir(path, { mode: 0o700 });
          dirs.add(rel);
          dirTimes.push([path, entry.mtimeMs]);
          if (entry.opaque) opaque.push(path);
          break;
        case 'file': {
          if (!entry.sha256 || !SHA256.test(entry.sha256)) throw corrupt(`snapshot '${snapshotId}': '${rel}' names no valid object`, { snapshotId, path: rel });
          await this.#copyVerified(tenantId, snapshotId, entry.sha256, rel, path);
          break;
        }
        case 'symlink':
          await symlink(entry.target ?? '', path);
          break;
        case 'whiteout':
          await run('mknod', ['-m', '000', path, 'c', '0', '0']);
          break;
        default:
          throw corrupt(`snapshot '${snapshotId}': '${rel}' has an unknown type`, { snapshotId, path: rel });
      }
      await lchown(path, uid, gid);
      // chown clears setuid/setgid, so the mode comes after it; symlinks have none.
      if (entry.type !== 'symlink') await chmod(path, entry.mode & 0o7777);
      if (entry.type !== 'dir') await lutimes(path, entry.mtimeMs / 1000, entry.mtimeMs / 1000);
    }
    if (opaque.length > 0) await setOpaque(opaque);
    // Directories last, deepest first: writing into them moved their mtimes.
    for (const [path, mtimeMs] of dirTimes.reverse()) await utimes(path, mtimeMs / 1000, mtimeMs / 1000);
  }

  async #copyVerified(tenantId: string, snapshotId: string, sha256: string, rel: string, dest: string): Promise<void> {
    const object = this.objectPath(tenantId, sha256);
    let source;
    try {
      source = await open(object, constants.O_RDONLY | constants.O_NOFOLLOW);
    } catch {
      throw corrupt(`snapshot '${snapshotId}': object ${sha256} (for /${rel}) is missing from the store`, { snapshotId, object: sha256, path: rel });
    }
    const hash = createHash('sha256');
    try {
      const out = await open(dest, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
      try {
        const buffer = Buffer.allocUnsafe(CHUNK);
        for (;;) {
          const { bytesRead } = await source.read(buffer, 0, CHUNK, null);
          if (bytesRead === 0) break;
          hash.update(buffer.subarray(0, bytesRead));
          await out.write(buffer, 0, bytesRead);
        }
      } finally {
        await out.close();
      }
    } finally {
      await source.close();
    }
    const actual = hash.digest('hex');
    if (actual !== sha256) {
      throw corrupt(`snapshot '${snapshotId}': object ${sha256} (for /${rel}) is corrupt: its sha256 is ${actual}`, { snapshotId, object: sha256, path: rel, actual });
    }
  }

  /** Walks `root` without following links; stores new file contents; returns the entries in path order. */
  async #captureTree(tenantId: string, root: string, hostId: number, counter: { bytes: number }, overlay: boolean): Promise<ManifestEntry[]> {
    const entries: ManifestEntry[] = [];
    const dirs: Array<{ path: string; entry: ManifestEntry }> = [];
    const walk = async (rel: string): Promise<void> => {
      const path = rel === '.' ? root : join(root, rel);
      const st = await lstat(path);
      const common = { path: rel, mode: st.mode & 0o7777, uid: relativeId(st.uid, hostId), gid: relativeId(st.gid, hostId), mtimeMs: Math.floor(st.mtimeMs) };
      if (st.isDirectory()) {
        const entry: ManifestEntry = { ...common, type: 'dir' };
        entries.push(entry);
        dirs.push({ path, entry });
        const names = (await readdir(path)).sort();
        for (const name of names) await walk(rel === '.' ? name : `${rel}/${name}`);
      } else if (st.isFile()) {
        const { sha256, size } = await this.#storeFile(tenantId, path, counter);
        entries.push({ ...common, type: 'file', size, sha256 });
      } else if (st.isSymbolicLink()) {
        entries.push({ ...common, type: 'symlink', target: await readlink(path) });
      } else if (overlay && st.isCharacterDevice() && st.rdev === 0) {
        entries.push({ ...common, type: 'whiteout' });
      }
      // FIFOs, sockets and other devices are not kept.
    };
    await walk('.');
    if (overlay && dirs.length > 0) {
      const opaque = await opaqueDirs(dirs.map((d) => d.path));
      for (const d of dirs) if (opaque.has(d.path)) d.entry.opaque = true;
    }
    return entries;
  }

  /** Copies one file into the store while hashing it; keeps the copy only if the object is new. */
  async #storeFile(tenantId: string, path: string, counter: { bytes: number }): Promise<{ sha256: string; size: number }> {
    const base = this.tenantDir(tenantId);
    // O_NOFOLLOW and O_NONBLOCK: a file swapped for a link or a FIFO since lstat is refused, never followed or waited on.
    const source = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    const tmp = join(base, 'tmp', randomUUID());
    const hash = createHash('sha256');
    let size = 0;
    try {
      if (!(await source.stat()).isFile()) throw new StrataError('STRATA_ERR_DRIVER', `${path} changed while it was snapshotted`, { path });
      const out = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o400);
      try {
        const buffer = Buffer.allocUnsafe(CHUNK);
        for (;;) {
          const { bytesRead } = await source.read(buffer, 0, CHUNK, null);
          if (bytesRead === 0) break;
          hash.update(buffer.subarray(0, bytesRead));
          await out.write(buffer, 0, bytesRead);
          size += bytesRead;
        }
      } finally {
        await out.close();
      }
    } catch (e) {
      await rm(tmp, { force: true });
      throw e;
    } finally {
      await source.close();
    }
    const sha256 = hash.digest('hex');
    const object = this.objectPath(tenantId, sha256);
    if (existsSync(object)) {
      await unlink(tmp);
    } else {
      await mkdir(dirname(object), { recursive: true, mode: 0o700 });
      await rename(tmp, object);
      counter.bytes += size;
    }
    return { sha256, size };
  }
}

/** Removes everything inside `dir` (not `dir` itself), never following links. */
export async function emptyDir(dir: string): Promise<void> {
  for (const name of await readdir(dir)) await rm(join(dir, name), { recursive: true, force: true });
}

function checkSnapshotId(snapshotId: string): void {
  if (!SNAPSHOT_ID.test(snapshotId)) throw validationError('snapshotId', `'${snapshotId}' is not a valid snapshot id`);
}

function checkEntryPath(path: string): string {
  if (path === '.') return path;
  if (path.length === 0 || path.startsWith('/') || path.split('/').some((p) => p === '' || p === '.' || p === '..') || path.includes('\0')) {
    throw corrupt(`snapshot manifest names an invalid path '${path}'`, { path });
  }
  return path;
}

const parentOf = (rel: string): string => {
  const i = rel.lastIndexOf('/');
  return i < 0 ? '.' : rel.slice(0, i);
};

const relativeId = (id: number, hostId: number): number => (id >= hostId && id < hostId + IDS_PER_TENANT ? id - hostId : 0);
const clampId = (id: number): number => (Number.isInteger(id) && id >= 0 && id < IDS_PER_TENANT ? id : 0);

const sha256Hex = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex');

const corrupt = (message: string, details: Record<string, unknown>): StrataError => new StrataError('STRATA_ERR_DRIVER', message, details);

// Node has no xattr API: a short Python helper reads and sets the overlay's opaque marker, one call per snapshot or restore.
const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const GET_OPAQUE = `import os,sys
for p in sys.stdin.read().split('\\0'):
    if not p: continue
    try:
        if os.getxattr(p, '${OPAQUE_XATTR}', follow_symlinks=False) == b'y': sys.stdout.write(p + '\\0')
    except OSError: pass
`;
const SET_OPAQUE = `import os,sys
for p in sys.stdin.read().split('\\0'):
    if p: os.setxattr(p, '${OPAQUE_XATTR}', b'y', follow_symlinks=False)
`;

async function opaqueDirs(paths: readonly string[]): Promise<Set<string>> {
  const { stdout } = await run(PYTHON, ['-c', GET_OPAQUE], { input: paths.join('\0') });
  return new Set(stdout.split('\0').filter(Boolean));
}

async function setOpaque(paths: readonly string[]): Promise<void> {
  await run(PYTHON, ['-c', SET_OPAQUE], { input: paths.join('\0') });
}
