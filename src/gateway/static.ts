/**
 * Static docroots (Apache-style shared hosting): a tenant's files served
 * straight from disk.
 *
 * Containment: the request path is percent-decoded once and refused (400) if
 * it holds NUL, a backslash or a `..` segment; then the file's realpath must
 * lie inside the docroot's realpath, so a symlink planted in the docroot
 * cannot reach outside it (404, revealing nothing). Dotfiles other than
 * `.well-known` answer 404 (no `.git`, `.env`, `.htpasswd` leaks).
 *
 * HTTP: GET and HEAD; `index.html` for directories (a directory URL without
 * its trailing slash is redirected to it); ETag / Last-Modified with
 * If-None-Match / If-Modified-Since → 304; one byte range (206; 416 when it
 * cannot be satisfied; If-Range honoured); brotli or gzip for text types, the
 * compressed bytes cached per file version (path + ETag) in a bounded LRU.
 */
import { createReadStream } from 'node:fs';
import { readFile, realpath, stat } from 'node:fs/promises';
import { promisify } from 'node:util';
import { brotliCompress, constants as zlib, gzip } from 'node:zlib';
import type { Responder } from './responder.js';
import type { Exchange } from './exchange.js';
import { contentType, isCompressible } from './mime.js';

const brotli = promisify(brotliCompress);
const gzipAsync = promisify(gzip);

/** Files up to this size are read whole and written in one go; larger ones stream. */
const WHOLE_FILE_MAX = 64 * 1024;
/** Compression is skipped for tiny files (no gain) and huge ones (streamed as they are). */
const COMPRESS_MIN = 256;
const COMPRESS_MAX = 8 * 1024 * 1024;
/** Bytes of compressed variants kept per worker. */
const COMPRESSED_CACHE_BYTES = 32 * 1024 * 1024;

type Encoding = 'br' | 'gzip';

interface FileInfo {
  path: string;
  size: number;
  mtime: Date;
}

/** Why a path was refused: malformed (400) or simply not there for this visitor (404). */
class Refused {
  constructor(readonly status: 400 | 404) {}
}

export class StaticFiles {
  private readonly compressed = new Map<string, Buffer>();
  private compressedBytes = 0;

  serve(conn: Responder, ex: Exchange, root: string): void {
    if (ex.method !== 'GET' && ex.method !== 'HEAD') {
      conn.respondError(ex, 405, 'Allow: GET, HEAD\r\n');
      return;
    }
    let aborted = false;
    ex.onAbort = () => {
      aborted = true;
    };
    this.serveAsync(conn, ex, root, () => aborted).catch(() => {
      if (!aborted && !ex.done) {
        if (ex.headSent) conn.destroy();
        else conn.respondError(ex, 500);
      }
    });
  }

  private async serveAsync(conn: Responder, ex: Exchange, root: string, aborted: () => boolean): Promise<void> {
    const query = ex.target.indexOf('?');
    const urlPath = query === -1 ? ex.target : ex.target.slice(0, query);
    const found = await this.resolve(root, urlPath);
    if (aborted()) return;
    if (found instanceof Refused) {
      conn.respondError(ex, found.status);
      return;
    }
    if (found === 'add-slash') {
      const location = `${urlPath}/${query === -1 ? '' : ex.target.slice(query)}`;
      conn.respondLocal(ex, 301, `Location: ${location}\r\nContent-Type: text/html\r\n`, null);
      return;
    }
    await this.sendFile(conn, ex, found, aborted);
  }

  /** Maps a URL path to a file inside `root`, or says why not. */
  private async resolve(root: string, urlPath: string): Promise<FileInfo | Refused | 'add-slash'> {
    let decoded: string;
    try {
      decoded = decodeURIComponent(urlPath);
    } catch {
      return new Refused(400);
    }
    if (decoded.includes('\0') || decoded.includes('\\')) return new Refused(400);
    const segments: string[] = [];
    for (const segment of decoded.split('/')) {
      if (segment === '' || segment === '.') continue;
      if (segment === '..') return new Refused(400);
      if (segment.startsWith('.') && segment !== '.well-known') return new Refused(404);
      segments.push(segment);
    }
    let rootReal: string;
    try {
      rootReal = await realpath(root);
    } catch {
      return new Refused(404);
    }
    const file = await this.contained(rootReal, segments.length === 0 ? rootReal : `${rootReal}/${segments.join('/')}`);
    if (file === null) return new Refused(404);
    if (file.isDirectory) {
      if (!urlPath.endsWith('/')) return 'add-slash';
      const index = await this.contained(rootReal, `${file.path}/index.html`);
      return index !== null && !index.isDirectory ? index : new Refused(404);
    }
    return file;
  }

  /** realpath + stat, and null unless the real path is inside `rootReal` and is a regular file or directory. */
  private async contained(rootReal: string, candidate: string): Promise<(FileInfo & { isDirectory: boolean }) | null> {
    let real: string;
    try {
      real = await realpath(candidate);
    } catch {
      return null;
    }
    if (real !== rootReal && !real.startsWith(`${rootReal}/`)) return null;
    const st = await stat(real).catch(() => null);
    if (st === null || !(st.isFile() || st.isDirectory())) return null;
    return { path: real, size: st.size, mtime: st.mtime, isDirectory: st.isDirectory() };
  }

  private async sendFile(conn: Responder, ex: Exchange, file: FileInfo, aborted: () => boolean): Promise<void> {
    const type = contentType(file.path);
    const baseTag = `${file.size.toString(16)}-${Math.floor(file.mtime.getTime()).toString(16)}`;
    const lastModified = file.mtime.toUTCString();
    const compressible = isCompressible(type);
    const header = (name: string): string | null => firstHeader(ex.headers, name);

    const range = ex.method === 'GET' ? header('range') : null;
    const encoding = compressible && range === null && file.size >= COMPRESS_MIN && file.size <= COMPRESS_MAX
      ? preferredEncoding(header('accept-encoding')) : null;
    const etag = `"${baseTag}${encoding === null ? '' : `-${encoding}`}"`;
    let lines = `Content-Type: ${type}\r\nETag: ${etag}\r\nLast-Modified: ${lastModified}\r\nAccept-Ranges: bytes\r\nX-Content-Type-Options: nosniff\r\n`;
    if (compressible) lines += 'Vary: Accept-Encoding\r\n';

    if (notModified(header('if-none-match'), header('if-modified-since'), etag, baseTag, file.mtime)) {
      conn.cork();
      conn.writeHead(ex, 304, lines.replace(/^Content-Type: [^\r]*\r\n/, ''), 0);
      conn.uncork();
      conn.finish(ex);
      return;
    }

    if (encoding !== null) {
      const body = await this.compressedVariant(file, baseTag, encoding);
      if (aborted()) return;
      conn.respondLocal(ex, 200, `${lines}Content-Encoding: ${encoding}\r\n`, body);
      return;
    }

    let start = 0;
    let end = file.size - 1;
    let status = 200;
    if (range !== null && ifRangeHolds(header('if-range'), etag, lastModified)) {
      const r = parseRange(range, file.size);
      if (r === 'unsatisfiable') {
        conn.respondLocal(ex, 416, `Content-Range: bytes */${file.size}\r\nContent-Type: text/plain\r\n`, null);
        return;
      }
      if (r !== null) {
        [start, end] = r;
        status = 206;
        lines += `Content-Range: bytes ${start}-${end}/${file.size}\r\n`;
      }
    }
    const length = file.size === 0 ? 0 : end - start + 1;

    if (ex.method === 'HEAD' || length === 0) {
      conn.cork();
      conn.writeHead(ex, status, lines, length);
      conn.uncork();
      conn.finish(ex);
      return;
    }
    if (file.size <= WHOLE_FILE_MAX) {
      const whole = await readFile(file.path);
      if (aborted()) return;
      if (whole.length !== file.size) throw new Error('file changed while being read');
      conn.respondLocal(ex, status, lines, status === 206 ? whole.subarray(start, end + 1) : whole);
      return;
    }
    this.stream(conn, ex, file.path, start, end, status, lines, length);
  }

  /** Streams a large file (or range of it), pausing while the client's socket is full. */
  private stream(conn: Responder, ex: Exchange, path: string, start: number, end: number, status: number, lines: string, length: number): void {
    const source = createReadStream(path, { start, end, highWaterMark: 64 * 1024 });
    ex.onAbort = () => source.destroy();
    conn.writeHead(ex, status, lines, length);
    let sent = 0;
    source.on('data', (chunk) => {
      sent += chunk.length;
      if (!conn.write(chunk as Buffer)) {
        source.pause();
        conn.waitForDrain(() => source.resume());
      }
    });
    source.on('end', () => {
      if (sent === length) conn.finish(ex);
      else conn.destroy(); // the file shrank under us: the promised length cannot be kept
    });
    source.on('error', () => conn.destroy());
  }

  private async compressedVariant(file: FileInfo, tag: string, encoding: Encoding): Promise<Buffer> {
    const key = `${file.path}\0${tag}\0${encoding}`;
    const cached = this.compressed.get(key);
    if (cached !== undefined) {
      // Refresh its place in the LRU order.
      this.compressed.delete(key);
      this.compressed.set(key, cached);
      return cached;
    }
    const raw = await readFile(file.path);
    const body = encoding === 'br'
      ? await brotli(raw, { params: { [zlib.BROTLI_PARAM_QUALITY]: 6, [zlib.BROTLI_PARAM_SIZE_HINT]: raw.length } })
      : await gzipAsync(raw, { level: 6 });
    if (body.length <= COMPRESSED_CACHE_BYTES / 4) {
      this.compressed.set(key, body);
      this.compressedBytes += body.length;
      for (const [k, v] of this.compressed) {
        if (this.compressedBytes <= COMPRESSED_CACHE_BYTES) break;
        this.compressed.delete(k);
        this.compressedBytes -= v.length;
      }
    }
    return body;
  }
}

/** First value of a request header by lower-case name. */
function firstHeader(h: string[], name: string): string | null {
  for (let i = 0; i < h.length; i += 2) if (h[i]!.length === name.length && h[i]!.toLowerCase() === name) return h[i + 1]!;
  return null;
}

/** br when the client takes it, else gzip, else none (q=0 refuses a coding). */
export function preferredEncoding(acceptEncoding: string | null): Encoding | null {
  if (acceptEncoding === null) return null;
  let gzipOk = false;
  let brOk = false;
  for (const part of acceptEncoding.split(',')) {
    const [coding, ...params] = part.trim().toLowerCase().split(';');
    const q = params.map((p) => p.trim()).find((p) => p.startsWith('q='));
    if (q !== undefined && !(Number(q.slice(2)) > 0)) continue;
    if (coding === 'br') brOk = true;
    else if (coding === 'gzip' || coding === 'x-gzip') gzipOk = true;
  }
  return brOk ? 'br' : gzipOk ? 'gzip' : null;
}

/** RFC 9110 §13.1.2/§13.2.2: If-None-Match (weak comparison) wins; If-Modified-Since only without it. */
function notModified(ifNoneMatch: string | null, ifModifiedSince: string | null, etag: string, baseTag: string, mtime: Date): boolean {
  if (ifNoneMatch !== null) {
    if (ifNoneMatch.trim() === '*') return true;
    const opaque = etag.slice(1, -1);
    return ifNoneMatch.split(',').some((t) => {
      const tag = t.trim().replace(/^W\//, '');
      return tag === `"${opaque}"` || tag === `"${baseTag}"`;
    });
  }
  if (ifModifiedSince !== null) {
    const since = Date.parse(ifModifiedSince);
    return Number.isFinite(since) && Math.floor(mtime.getTime() / 1000) * 1000 <= since;
  }
  return false;
}

/** If-Range: the range applies only if the validator still matches (strong ETag or exact date). */
function ifRangeHolds(ifRange: string | null, etag: string, lastModified: string): boolean {
  if (ifRange === null) return true;
  const v = ifRange.trim();
  return v.startsWith('"') ? v === etag : v === lastModified;
}

/**
 * One `bytes=` range → [start, end] inclusive; null to ignore the header
 * (malformed, or several ranges: the whole file is then sent, as RFC 9110
 * allows); 'unsatisfiable' for a range wholly past the end (416).
 */
export function parseRange(header: string, size: number): [number, number] | null | 'unsatisfiable' {
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (m === null) return null;
  const [, from, to] = m as unknown as [string, string, string];
  if (from === '' && to === '') return null;
  if (from === '') {
    const suffix = Number(to);
    if (suffix === 0) return 'unsatisfiable';
    return size === 0 ? 'unsatisfiable' : [Math.max(0, size - suffix), size - 1];
  }
  const start = Number(from);
  const end = to === '' ? size - 1 : Math.min(Number(to), size - 1);
  if (to !== '' && Number(to) < start) return null;
  if (start >= size) return 'unsatisfiable';
  return [start, end];
}
