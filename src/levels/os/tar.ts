/**
 * A tar reader for image layers (ustar, pax extended headers, GNU long names),
 * and `extractInto`, which writes entries under a root directory without ever
 * leaving it: `..` is refused, and every symlink met on the way to an entry is
 * resolved as if the root were `/` (a layer that plants `lib -> /etc` and then
 * writes `lib/x` writes `<root>/etc/x`, never the host's /etc).
 *
 * Layers are read from memory: fine for the small images Strata builds and tests;
 * a streaming reader is the next step for large images.
 */
import { chmod, lchown, link, lstat, mkdir, readlink, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { StrataError } from '../../core/errors.js';

export type TarEntryType = 'file' | 'dir' | 'symlink' | 'hardlink' | 'other';

export interface TarEntry {
  /** Relative, normalised path ("a/b"); never empty, never with "..". */
  path: string;
  type: TarEntryType;
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  linkname: string;
  data: Buffer;
}

const BLOCK = 512;

const field = (header: Buffer, offset: number, length: number): string => {
  const raw = header.subarray(offset, offset + length);
  const end = raw.indexOf(0);
  return raw.subarray(0, end === -1 ? length : end).toString('utf8');
};

const octal = (header: Buffer, offset: number, length: number): number => {
  // GNU base-256 for large values: the high bit of the first byte is set.
  if ((header[offset]! & 0x80) !== 0) {
    let value = 0;
    for (let i = offset + 1; i < offset + length; i++) value = value * 256 + header[i]!;
    return value;
  }
  const text = field(header, offset, length).trim();
  return text === '' ? 0 : parseInt(text, 8);
};

const typeOf = (flag: string): TarEntryType =>
  flag === '0' || flag === '' || flag === '7' ? 'file' : flag === '5' ? 'dir' : flag === '2' ? 'symlink' : flag === '1' ? 'hardlink' : 'other';

const badLayer = (message: string, details: Record<string, unknown> = {}): StrataError =>
  new StrataError('STRATA_ERR_VALIDATION', `bad image layer: ${message}`, details);

/** The path an entry names, relative and clean; throws for one that climbs out ("..") of the root. */
export function normaliseEntryPath(raw: string): string {
  const parts = raw.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw badLayer(`entry '${raw}' climbs out of the root`, { entry: raw });
  return parts.join('/');
}

/** Parses a whole (uncompressed) tar archive. */
export function readTar(archive: Buffer): TarEntry[] {
  const entries: TarEntry[] = [];
  let offset = 0;
  let pax: Record<string, string> = {};
  let longName: string | null = null;
  let longLink: string | null = null;
  while (offset + BLOCK <= archive.length) {
    const header = archive.subarray(offset, offset + BLOCK);
    if (header.every((b) => b === 0)) break;
    const stored = octal(header, 148, 8);
    let sum = 0;
    for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : header[i]!;
    if (sum !== stored) throw badLayer(`header checksum mismatch at offset ${offset}`);
    const flag = String.fromCharCode(header[156]!).replace('\0', '');
    const size = pax.size !== undefined ? Number(pax.size) : octal(header, 124, 12);
    const dataStart = offset + BLOCK;
    if (dataStart + size > archive.length) throw badLayer(`entry at offset ${offset} runs past the end of the archive`);
    const data = archive.subarray(dataStart, dataStart + size);
    offset = dataStart + Math.ceil(size / BLOCK) * BLOCK;

    if (flag === 'x') {
      pax = { ...pax, ...parsePax(data) };
      continue;
    }
    if (flag === 'g') continue;
    if (flag === 'L') {
      longName = data.toString('utf8').replace(/\0+$/, '');
      continue;
    }
    if (flag === 'K') {
      longLink = data.toString('utf8').replace(/\0+$/, '');
      continue;
    }
    const prefix = field(header, 345, 155);
    const name = pax.path ?? longName ?? (prefix ? `${prefix}/${field(header, 0, 100)}` : field(header, 0, 100));
    const path = normaliseEntryPath(name);
    if (path !== '') {
      entries.push({
        path,
        type: typeOf(flag),
        mode: octal(header, 100, 8) & 0o7777,
        uid: pax.uid !== undefined ? Number(pax.uid) : octal(header, 108, 8),
        gid: pax.gid !== undefined ? Number(pax.gid) : octal(header, 116, 8),
        mtime: pax.mtime !== undefined ? Math.floor(Number(pax.mtime)) : octal(header, 136, 12),
        linkname: pax.linkpath ?? longLink ?? field(header, 157, 100),
        data: Buffer.from(data),
      });
    }
    pax = {};
    longName = null;
    longLink = null;
  }
  return entries;
}

function parsePax(data: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let offset = 0;
  while (offset < data.length) {
    const space = data.indexOf(0x20, offset);
    if (space === -1) break;
    const length = Number(data.subarray(offset, space).toString('utf8'));
    if (!Number.isSafeInteger(length) || length <= 0) break;
    const record = data.subarray(space + 1, offset + length - 1).toString('utf8');
    const eq = record.indexOf('=');
    if (eq > 0) out[record.slice(0, eq)] = record.slice(eq + 1);
    offset += length;
  }
  return out;
}

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
