/**
 * Extraction of image layers: `extractInto`, which writes entries under a root
 * directory without ever leaving it: `..` is refused, and every symlink met on
 * the way to an entry is resolved as if the root were `/` (a layer that plants
 * `lib -> /etc` and then writes `lib/x` writes `<root>/etc/x`, never the host's
 * /etc). The reader itself is `core/tar.ts`.
 *
 * Layers are read from memory: fine for the small images Strata builds and tests;
 * a streaming reader is the next step for large images.
 */
import { chmod, lchown, link, lstat, mkdir, readlink, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { StrataError } from '../../core/errors.js';
import { normaliseEntryPath, type TarEntry } from '../../core/tar.js';

export { normaliseEntryPath, readTar, type TarEntry, type TarEntryType } from '../../core/tar.js';

const badLayer = (message: string, details: Record<string, unknown> = {}): StrataError =>
  new StrataError('STRATA_ERR_VALIDATION', `bad image layer: ${message}`, details);

const MAX_LINK_HOPS = 40;

/**
 * The host path of `relative` inside `root`, with every symlink among its parent
 * components resolved inside the root. The last component is not followed: it is
 * what the caller creates or replaces.
 */
export async function resolveInRoot(root: string, relative: string): Promise<string> {
  const pending = relative.split('/').filter((p) => p !== '' && p !== '.');
  const last = pending.pop();
  const resolved: string[] = [];
  let hops = 0;
  while (pending.length > 0) {
    const part = pending.shift()!;
    if (part === '..') {
      resolved.pop();
      continue;
    }
    const candidate = join(root, ...resolved, part);
    let target: string | null = null;
    try {
      if ((await lstat(candidate)).isSymbolicLink()) target = await readlink(candidate);
    } catch {
      // does not exist yet: the caller creates it
    }
    if (target === null) {
      resolved.push(part);
      continue;
    }
    if (++hops > MAX_LINK_HOPS) throw badLayer(`too many symlinks resolving '${relative}'`, { entry: relative });
    const parts = target.split('/').filter((p) => p !== '' && p !== '.');
    if (target.startsWith('/')) resolved.length = 0;
    pending.unshift(...parts);
  }
  return last === undefined ? join(root, ...resolved) : join(root, ...resolved, last);
}

/** What `extractInto` skipped: device nodes and FIFOs (containers get their /dev from the runtime). */
export interface ExtractReport {
  skipped: string[];
}

/** Writes `entries` under `root` in order, replacing what is there; see the module comment for the containment rules. */
export async function extractInto(root: string, entries: readonly TarEntry[]): Promise<ExtractReport> {
  const skipped: string[] = [];
  const directories: Array<{ path: string; entry: TarEntry }> = [];
  for (const entry of entries) {
    const target = await resolveInRoot(root, entry.path);
    if (entry.type === 'other') {
      skipped.push(entry.path);
      continue;
    }
    if (entry.type === 'dir') {
      const existing = await lstat(target).catch(() => null);
      if (existing && !existing.isDirectory()) await rm(target, { force: true });
      await mkdir(target, { recursive: true });
      await lchown(target, entry.uid, entry.gid);
      directories.push({ path: target, entry });
      continue;
    }
    await mkdir(join(target, '..'), { recursive: true });
    await rm(target, { recursive: true, force: true });
    if (entry.type === 'file') {
      await writeFile(target, entry.data, { mode: 0o600 });
      await lchown(target, entry.uid, entry.gid);
      await chmod(target, entry.mode);
      await utimes(target, entry.mtime, entry.mtime);
    } else if (entry.type === 'symlink') {
      await symlink(entry.linkname, target);
      await lchown(target, entry.uid, entry.gid);
    } else {
      const source = await resolveInRoot(root, normaliseEntryPath(entry.linkname));
      await link(source, target);
    }
  }
  // Directory modes last, so a read-only directory does not stop its own entries being written.
  for (const { path, entry } of directories) {
    await chmod(path, entry.mode);
    await utimes(path, entry.mtime, entry.mtime);
  }
  return { skipped };
}
