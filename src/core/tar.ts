/**
 * Tar archives in memory: a reader (ustar, pax extended headers, GNU long
 * names) for image layers and for the archives tenants copy in and out of
 * their docroots and instances (`strata cp`), and a writer (ustar, with pax
 * headers for long names) for what Strata sends back.
 *
 * `checkTenantArchive` is the policy for what a tenant may copy into a tree:
 * see its comment.
 */
import { StrataError } from './errors.js';

const malformed = (what: string, message: string): StrataError => new StrataError('STRATA_ERR_VALIDATION', `bad ${what}: ${message}`);
const badArchive = (message: string, details: Record<string, unknown> = {}): StrataError =>
  new StrataError('STRATA_ERR_VALIDATION', `bad image layer: ${message}`, details);

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
  /** The member's name was absolute ("/etc/x"): read as relative, as tar does; tenant archives refuse it. */
  absolute?: boolean;
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

/** The path an entry names, relative and clean; throws for one that climbs out ("..") of the root. */
export function normaliseEntryPath(raw: string): string {
  const parts = raw.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw badArchive(`entry '${raw}' climbs out of the root`, { entry: raw });
  return parts.join('/');
}

/** Parses a whole (uncompressed) tar archive. */
export function readTar(archive: Buffer, what = 'image layer'): TarEntry[] {
  const badArchive = (message: string, details: Record<string, unknown> = {}): StrataError =>
    new StrataError(what === 'image layer' ? 'STRATA_ERR_VALIDATION' : 'STRATA_ERR_PATH_ESCAPE', `bad ${what}: ${message}`, details);
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
    if (sum !== stored) throw malformed(what, `header checksum mismatch at offset ${offset}`);
    const flag = String.fromCharCode(header[156]!).replace('\0', '');
    const size = pax.size !== undefined ? Number(pax.size) : octal(header, 124, 12);
    const dataStart = offset + BLOCK;
    if (dataStart + size > archive.length) throw malformed(what, `entry at offset ${offset} runs past the end of the archive`);
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
    if (name.split('/').includes('..')) throw badArchive(`entry '${name}' climbs out of the root`, { entry: name });
    const path = normaliseEntryPath(name);
    if (path !== '') {
      entries.push({
        ...(name.startsWith('/') ? { absolute: true } : {}),
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


// ---- writing ----

function putString(header: Buffer, value: string, offset: number, length: number): void {
  header.write(value, offset, length, 'utf8');
}

function putOctal(header: Buffer, value: number, offset: number, length: number): void {
  header.write(value.toString(8).padStart(length - 1, '0') + '\0', offset, length, 'ascii');
}

function headerBlock(e: { name: string; mode: number; uid: number; gid: number; size: number; mtime: number; flag: string; linkname: string }): Buffer {
  const h = Buffer.alloc(BLOCK);
  putString(h, e.name, 0, 100);
  putOctal(h, e.mode & 0o7777, 100, 8);
  putOctal(h, e.uid, 108, 8);
  putOctal(h, e.gid, 116, 8);
  putOctal(h, e.size, 124, 12);
  putOctal(h, Math.max(0, Math.floor(e.mtime)), 136, 12);
  h.write(e.flag, 156, 1, 'ascii');
  putString(h, e.linkname, 157, 100);
  h.write('ustar\u000000', 257, 8, 'ascii');
  h.fill(32, 148, 156);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += h[i]!;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'ascii');
  return h;
}

const padding = (size: number): Buffer => Buffer.alloc((BLOCK - (size % BLOCK)) % BLOCK);

function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let length = Buffer.byteLength(body) + 1;
  while (String(length).length + Buffer.byteLength(body) !== length) length = String(length).length + Buffer.byteLength(body);
  return `${length}${body}`;
}

const FLAGS: Record<TarEntryType, string> = { file: '0', dir: '5', symlink: '2', hardlink: '1', other: '0' };

/** An uncompressed tar archive of `entries`, in order ('other' entries are left out). */
export function writeTar(entries: readonly TarEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    if (e.type === 'other') continue;
    const name = e.type === 'dir' ? `${e.path}/` : e.path;
    const fits = (s: string): boolean => Buffer.byteLength(s) <= 100 && /^[\x20-\x7e]*$/.test(s);
    if (!fits(name) || !fits(e.linkname)) {
      const pax = Buffer.from((fits(name) ? '' : paxRecord('path', name)) + (fits(e.linkname) ? '' : paxRecord('linkpath', e.linkname)));
      parts.push(headerBlock({ name: 'PaxHeader', mode: 0o644, uid: 0, gid: 0, size: pax.length, mtime: e.mtime, flag: 'x', linkname: '' }), pax, padding(pax.length));
    }
    const size = e.type === 'file' ? e.data.length : 0;
    parts.push(headerBlock({
      name: fits(name) ? name : name.slice(0, 99), mode: e.mode, uid: e.uid, gid: e.gid, size, mtime: e.mtime, flag: FLAGS[e.type],
      linkname: fits(e.linkname) ? e.linkname : '',
    }));
    if (size > 0) parts.push(e.data, padding(size));
  }
  parts.push(Buffer.alloc(BLOCK * 2));
  return Buffer.concat(parts);
}

// ---- what a tenant may copy into a tree ----

export interface CheckedArchive {
  entries: TarEntry[];
  /** Bytes of regular file content: what the copy adds to the disk, at most. */
  bytes: number;
  /** Entries whose setuid/setgid bits were dropped. */
  stripped: string[];
}

const escape = (message: string, entry: string, details: Record<string, unknown> = {}): StrataError =>
  new StrataError('STRATA_ERR_PATH_ESCAPE', message, { entry, ...details });

/**
 * The rules for an archive a tenant copies into a tree (a docroot, an
 * instance's filesystem), enforced before anything is written:
 *
 *  - member names are relative and stay inside (`..` and absolute names refused);
 *  - a symlink's target is relative and resolves inside the tree, from the
 *    link's own directory: `..` only at its start and no deeper than the link
 *    (an absolute target is refused: inside a container `/x` would mean its
 *    own root, but in a docroot it means the host's; `q/..` is refused, as
 *    `q` may itself be a link to `.`);
 *  - a hard link names an earlier regular file of the same archive;
 *  - device nodes, FIFOs and other special files are refused;
 *  - setuid and setgid bits are dropped (reported in `stripped`): a copy
 *    never makes a privileged program; a tenant who means it sets the bit
 *    itself, inside its own instance;
 *    (`links: 'any'` keeps any symlink target, for a copy out unpacked by
 *    the CLI where the user asked for the tree as it is: links are still
 *    never written through);
 *  - owners are not taken from the archive: everything belongs to the tree's
 *    owner (uid/gid 0 here: the container's root, or the daemon for docroots).
 */
export function checkTenantArchive(archive: Buffer, opts: { links?: 'contained' | 'any' } = {}): CheckedArchive {
  const entries = readTar(archive, 'archive');
  const seen = new Set<string>();
  const links = new Set<string>();
  const stripped: string[] = [];
  let bytes = 0;
  const out: TarEntry[] = [];
  for (const e of entries) {
    if (e.absolute) throw escape(`'/${e.path}' is an absolute name: members of a copy are relative to its destination`, e.path);
    const linkOnWay = e.path.split('/').slice(0, -1).map((_, i, all) => all.slice(0, i + 1).join('/')).find((p) => links.has(p));
    if (linkOnWay !== undefined) throw escape(`'${e.path}' lies under '${linkOnWay}', a symlink of the same copy: a copy never writes through a symlink`, e.path);
    if (e.type === 'other') throw escape(`'${e.path}' is a device node, FIFO or other special file: only files, directories and links are copied`, e.path);
    if (e.type === 'symlink' && opts.links !== 'any') {
      if (e.linkname.startsWith('/')) throw escape(`symlink '${e.path}' points at the absolute path '${e.linkname}'`, e.path, { target: e.linkname });
      // `..` only leading, and no more of them than the link's depth: resolved from a real directory (entries are never written
      // through a symlink), it then only descends, and every link it may descend through obeys the same rule.
      const parts = e.linkname.split('/').filter((p) => p !== '' && p !== '.');
      const up = parts.findIndex((p) => p !== '..');
      const leading = up === -1 ? parts.length : up;
      if (leading > e.path.split('/').length - 1 || parts.slice(leading).includes('..')) {
        throw escape(`symlink '${e.path}' points outside the copy, or climbs after descending ('${e.linkname}')`, e.path, { target: e.linkname });
      }
    }
    if (e.type === 'symlink') links.add(e.path);
    else links.delete(e.path);
    if (e.type === 'hardlink') {
      const target = e.linkname.split('/').filter((p) => p !== '' && p !== '.').join('/');
      if (e.linkname.startsWith('/') || !seen.has(target)) throw escape(`hard link '${e.path}' names '${e.linkname}', not an earlier file of the copy`, e.path, { target: e.linkname });
      e.linkname = target;
    }
    if ((e.mode & 0o6000) !== 0) stripped.push(e.path);
    if (e.type === 'file') bytes += e.data.length;
    if (e.type === 'file') seen.add(e.path);
    else seen.delete(e.path);
    out.push({ ...e, mode: e.mode & ~0o6000, uid: 0, gid: 0 });
  }
  return { entries: out, bytes, stripped };
}
