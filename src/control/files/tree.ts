/**
 * Copies into and out of a tree on the host (a static site's docroot) for
 * `strata cp`, without ever leaving it.
 *
 * The archive is checked whole first (`checkTenantArchive`: no `..`, no
 * absolute names or symlinks, no links out, no special files, no setuid).
 * Writing then never follows a symlink: every directory on the way to an entry
 * is looked at with lstat and must be a real directory — a symlink there,
 * planted earlier or by this very archive, refuses the copy rather than
 * redirecting a write (the openat-with-O_NOFOLLOW walk, done with lstat: only
 * the daemon writes docroots, and copies into one tenant's docroots are
 * serialised, so nothing swaps a directory for a link between the look and
 * the write). A file is written beside its place under a temporary name and
 * renamed over it, so a reader (the gateway) sees the old file or the new one,
 * and an existing symlink at that name is replaced, never written through.
 */
import { randomUUID } from 'node:crypto';
import { chmod, link, lstat, mkdir, readdir, readFile, readlink, rename, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { StrataError } from '../../core/errors.js';
import type { CheckedArchive, TarEntry } from '../../core/tar.js';

/** The largest archive one copy reads into memory, either way. */
export const MAX_COPY_BYTES = 256 * 1024 * 1024;

const escape = (message: string, path: string): StrataError => new StrataError('STRATA_ERR_PATH_ESCAPE', message, { entry: path });

/** A path as the API takes it ("/a/b", "a/b", "/") → clean relative parts; `..` refused. */
export function relativeParts(path: string): string[] {
  const parts = path.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw escape(`'${path}' climbs out of the tree`, path);
  return parts;
}

/**
 * The host path of `parts` under `root`, every component checked with lstat:
 * a symlink on the way is refused; with `create`, missing directories are made.
 * The last component is checked too unless `lastMayLink` (it is what a copy
 * out reads as itself, or what a copy in replaces).
 */
async function walk(root: string, parts: readonly string[], opts: { create: boolean; lastMayLink: boolean }): Promise<string> {
  let at = root;
  for (let i = 0; i < parts.length; i++) {
    at = join(at, parts[i]!);
    const last = i === parts.length - 1;
    const st = await lstat(at).catch(() => null);
    if (!st) {
      if (!opts.create) throw new StrataError('STRATA_ERR_NOT_FOUND', `'/${parts.slice(0, i + 1).join('/')}' does not exist`, { kind: 'path', name: `/${parts.join('/')}` });
      if (!last || !opts.lastMayLink) await mkdir(at, { mode: 0o755 });
      continue;
    }
    if (st.isSymbolicLink() && !(last && opts.lastMayLink)) throw escape(`'/${parts.slice(0, i + 1).join('/')}' is a symlink: a copy never goes through one`, parts.slice(0, i + 1).join('/'));
    if (!st.isSymbolicLink() && !st.isDirectory() && !last) throw new StrataError('STRATA_ERR_CONFLICT', `'/${parts.slice(0, i + 1).join('/')}' is not a directory`);
  }
  return at;
}

/** Bytes of everything under `dir` (lstat sizes; a missing dir is 0). */
export async function treeBytes(dir: string): Promise<number> {
  const st = await lstat(dir).catch(() => null);
  if (!st) return 0;
  if (!st.isDirectory()) return st.size;
  let total = 0;
  for (const name of await readdir(dir)) total += await treeBytes(join(dir, name));
  return total;
}

/**
 * Everything `writeIntoTree` would refuse, found before it writes: a symlink
 * or a non-directory on the way to `dest` or to any entry, a directory where
 * the archive has a file or a link.
 */
export async function checkTreeFor(root: string, dest: readonly string[], archive: CheckedArchive): Promise<void> {
  const checked = new Map<string, 'dir' | 'missing'>();
  const look = async (parts: readonly string[], last: TarEntry['type'] | 'dir-on-way'): Promise<void> => {
    let at = root;
    for (let i = 0; i < parts.length; i++) {
      const key = parts.slice(0, i + 1).join('/');
      at = join(at, parts[i]!);
      const isLast = i === parts.length - 1;
      const known = checked.get(key);
      if (known === 'missing') return;
      if (known === 'dir' && !isLast) continue;
      const st = await lstat(at).catch(() => null);
      if (!st) { checked.set(key, 'missing'); return; }
      if (isLast && last !== 'dir-on-way') {
        if (st.isDirectory() && last !== 'dir') throw new StrataError('STRATA_ERR_CONFLICT', `'/${key}' is a directory: a ${last} cannot replace it`);
        return;
      }
      if (st.isSymbolicLink()) throw escape(`'/${key}' is a symlink: a copy never goes through one`, key);
      if (!st.isDirectory()) throw new StrataError('STRATA_ERR_CONFLICT', `'/${key}' is not a directory`);
      checked.set(key, 'dir');
    }
  };
  await look(dest, 'dir-on-way');
  for (const entry of archive.entries) await look([...dest, ...entry.path.split('/')], entry.type);
}

/** Writes the checked archive's entries into directory `dest` (relative parts) under `root`, creating `dest`. */
export async function writeIntoTree(root: string, dest: readonly string[], archive: CheckedArchive): Promise<void> {
  await mkdir(root, { recursive: true });
  await walk(root, dest, { create: true, lastMayLink: false });
  const base = [...dest];
  const directories: Array<{ path: string; entry: TarEntry }> = [];
  for (const entry of archive.entries) {
    const parts = [...base, ...entry.path.split('/')];
    const target = await walk(root, parts.slice(0, -1), { create: true, lastMayLink: false }).then((dir) => join(dir, parts[parts.length - 1]!));
    const existing = await lstat(target).catch(() => null);
    if (entry.type === 'dir') {
      if (existing && !existing.isDirectory()) await rm(target, { force: true });
      if (!existing?.isDirectory()) await mkdir(target, { mode: 0o700 });
      directories.push({ path: target, entry });
      continue;
    }
    if (existing?.isDirectory()) throw new StrataError('STRATA_ERR_CONFLICT', `'/${parts.join('/')}' is a directory: a ${entry.type} cannot replace it`);
    const temp = join(target, '..', `.strata-cp-${randomUUID().slice(0, 8)}`);
    try {
      if (entry.type === 'file') {
        await writeFile(temp, entry.data, { mode: 0o600, flag: 'wx' });
        await chmod(temp, entry.mode);
        await utimes(temp, entry.mtime, entry.mtime);
      } else if (entry.type === 'symlink') {
        await symlink(entry.linkname, temp);
      } else {
        const source = await walk(root, [...base, ...entry.linkname.split('/')], { create: false, lastMayLink: true });
        if (!(await lstat(source)).isFile()) throw escape(`hard link '${entry.path}' names '${entry.linkname}', which is not a file`, entry.path);
        await link(source, temp);
      }
      await rename(temp, target);
    } catch (err) {
      await rm(temp, { force: true });
      throw err;
    }
  }
  // Directory modes last, so a read-only directory does not stop its own entries being written.
  for (const { path, entry } of directories.reverse()) {
    await chmod(path, entry.mode);
    await utimes(path, entry.mtime, entry.mtime);
  }
}

/**
 * `path` (relative parts) under `root` as tar entries named from its last
 * component (the root itself: its contents at the top). Symlinks are entries,
 * never followed; special files are left out.
 */
export async function readFromTree(root: string, parts: readonly string[]): Promise<{ name: string; entries: TarEntry[] }> {
  const top = await walk(root, parts, { create: false, lastMayLink: true });
  const name = parts.length === 0 ? '' : basename(top);
  const entries: TarEntry[] = [];
  let total = 0;
  const visit = async (host: string, rel: string): Promise<void> => {
    const st = await lstat(host);
    const common = { path: rel, mode: st.mode & 0o7777, uid: 0, gid: 0, mtime: Math.floor(st.mtimeMs / 1000), linkname: '', data: Buffer.alloc(0) };
    if (st.isSymbolicLink()) {
      entries.push({ ...common, type: 'symlink', linkname: await readlink(host) });
    } else if (st.isFile()) {
      total += st.size;
      if (total > MAX_COPY_BYTES) throw new StrataError('STRATA_ERR_PAYLOAD_TOO_LARGE', `a copy out is at most ${MAX_COPY_BYTES / 1024 / 1024} MiB`);
      entries.push({ ...common, type: 'file', data: await readFile(host) });
    } else if (st.isDirectory()) {
      if (rel !== '') entries.push({ ...common, type: 'dir' });
      for (const child of (await readdir(host)).sort()) await visit(join(host, child), rel === '' ? child : `${rel}/${child}`);
    }
  };
  await visit(top, name);
  return { name, entries };
}
