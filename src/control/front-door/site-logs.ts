/**
 * Per-site access logs: `DATA/logs/sites/<tenant id>/<site>.log`, JSON lines,
 * rotated by size (`<site>.log.1` … `.N`). The gateway's workers append one
 * shared access log (whole lines, O_APPEND, nothing per site on their hot
 * path); the daemon follows that file and sorts each line into its site's file.
 * Requests that matched no site are not copied (they belong to no tenant).
 * A wildcard site `*.example.com` logs to `_.example.com.log` (`_` never
 * occurs in a site name).
 *
 * The shared log is rotated the same way once it passes its own limit, as
 * nginx is by logrotate + USR1: it is renamed away (the daemon keeps reading
 * the renamed file through its open descriptor), the workers open the path
 * anew (`reopen`), and only then is the old file's rest copied and the new
 * file followed from its start — so no line is lost or copied twice.
 */
import { appendFileSync, closeSync, existsSync, fstatSync, mkdirSync, openSync, readSync, renameSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Store } from '../../store/store.js';

export interface SiteLogOptions {
  /** The gateway's access log, followed from its end at start. */
  accessLogPath: string;
  /** Root of the per-site files: `<dir>/<tenant id>/<site>.log` (by id: a later tenant of the same name starts with none). */
  dir: string;
  store: Store;
  /** Rotate a site's file before it grows past this; default 10 MiB. */
  maxBytes?: number;
  /** Rotated files kept per site, and of the shared log; default 5. */
  keep?: number;
  /** How often the access log is read; default 500 ms. */
  pollMs?: number;
  /** Rotate the shared access log once it has grown past this; default 64 MiB. */
  accessMaxBytes?: number;
  /** Has the gateway's workers open the access log's path anew (`Gateway.reopenAccessLog`); without it the shared log is not rotated. */
  reopen?: () => Promise<void>;
}

export const siteLogFile = (dir: string, tenantId: string, site: string): string =>
  join(dir, tenantId, `${site.replace(/^\*/, '_')}.log`);

/** `f` → `f.1` → … → `f.<keep>` (the oldest is overwritten). */
export function rotateFile(file: string, keep: number): void {
  for (let i = keep - 1; i >= 1; i--) if (existsSync(`${file}.${i}`)) renameSync(`${file}.${i}`, `${file}.${i + 1}`);
  renameSync(file, `${file}.1`);
}

/** The shared log being read: an open descriptor, so a rename does not lose our place. */
interface Followed {
  fd: number;
  offset: number;
}

export class SiteLogs {
  #source: Followed | null = null;
  #partial = '';
  #timer: NodeJS.Timeout | null = null;
  #rotation: Promise<void> | null = null;
  #stopped = false;

  constructor(private readonly o: SiteLogOptions) {
    if (existsSync(o.accessLogPath)) {
      const fd = openSync(o.accessLogPath, 'r');
      this.#source = { fd, offset: fstatSync(fd).size };
    }
  }

  start(): void {
    this.#timer = setInterval(() => this.tick(), this.o.pollMs ?? 500);
    this.#timer.unref();
  }

  /** Copies, then rotates the shared log when it has grown past its limit. */
  tick(): Promise<void> {
    if (this.#rotation === null && this.replacedUnderUs()) this.followNewFile();
    this.drain();
    const src = this.#source;
    if (this.#rotation === null && this.o.reopen !== undefined && src !== null && src.offset >= (this.o.accessMaxBytes ?? 64 * 1024 * 1024)) {
      this.#rotation = this.rotateShared().finally(() => { this.#rotation = null; });
    }
    return this.#rotation ?? Promise.resolve();
  }

  /** Copies what the access log gained since the last call. */
  drain(): void {
    if (this.#source === null) {
      if (!existsSync(this.o.accessLogPath)) return;
      this.#source = { fd: openSync(this.o.accessLogPath, 'r'), offset: 0 };
    }
    const src = this.#source;
    const size = fstatSync(src.fd).size;
    if (size < src.offset) src.offset = 0; // truncated by an operator: start over
    if (size === src.offset) return;
    const buf = Buffer.alloc(size - src.offset);
    readSync(src.fd, buf, 0, buf.length, src.offset);
    src.offset = size;
    const text = this.#partial + buf.toString('utf8');
    const cut = text.lastIndexOf('\n');
    this.#partial = text.slice(cut + 1);
    const bySite = new Map<string, string[]>();
    const known = new Map<string, boolean>();
    for (const line of text.slice(0, cut + 1).split('\n')) {
      const file = line === '' ? null : this.fileFor(line, known);
      if (file === null) continue;
      let lines = bySite.get(file);
      if (!lines) bySite.set(file, (lines = []));
      lines.push(line);
    }
    for (const [file, lines] of bySite) this.append(file, lines);
  }

  /** The last copy, at shutdown (after the gateway closed: no line comes any more). */
  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearInterval(this.#timer);
    if (this.#rotation !== null) this.followNewFile();
    else this.drain();
    if (this.#source !== null) closeSync(this.#source.fd);
    this.#source = null;
  }

  /** An operator moved the file away (their own rotation): follow the path again. */
  private replacedUnderUs(): boolean {
    if (this.#source === null || !existsSync(this.o.accessLogPath)) return false;
    return statSync(this.o.accessLogPath).ino !== fstatSync(this.#source.fd).ino;
  }

  private async rotateShared(): Promise<void> {
    rotateFile(this.o.accessLogPath, this.o.keep ?? 5);
    await this.o.reopen!();
    if (!this.#stopped) this.followNewFile();
  }

  /** The renamed file gets no more lines: copy its rest, then follow the path from its start. */
  private followNewFile(): void {
    this.drain();
    if (this.#source !== null) closeSync(this.#source.fd);
    this.#source = null;
    this.#partial = ''; // whole lines only: a writer never leaves half of one behind
    this.drain();
  }

  /** `known`: tenant ids already looked up in this batch (asked anew each batch: a tenant deleted since gets no more lines). */
  private fileFor(line: string, known: Map<string, boolean>): string | null {
    let entry: { site?: unknown; tenant?: unknown };
    try {
      entry = JSON.parse(line) as typeof entry;
    } catch {
      return null;
    }
    if (typeof entry.site !== 'string' || typeof entry.tenant !== 'string' || entry.site === '-') return null;
    // A line of a tenant deleted since is nobody's: its directory is gone and stays gone.
    let exists = known.get(entry.tenant);
    if (exists === undefined) known.set(entry.tenant, (exists = this.o.store.getTenant(entry.tenant) !== null));
    return exists ? siteLogFile(this.o.dir, entry.tenant, entry.site) : null;
  }

  /** Appends in as few writes as the size limit allows, rotating whenever the next line would cross it. */
  private append(file: string, lines: readonly string[]): void {
    const max = this.o.maxBytes ?? 10 * 1024 * 1024;
    mkdirSync(join(file, '..'), { recursive: true, mode: 0o750 });
    let size = existsSync(file) ? statSync(file).size : 0;
    let chunk = '';
    for (const line of lines) {
      const bytes = Buffer.byteLength(line) + 1;
      if (size + chunk.length + bytes > max && size + chunk.length > 0) {
        if (chunk !== '') appendFileSync(file, chunk, { mode: 0o640 });
        rotateFile(file, this.o.keep ?? 5);
        size = 0;
        chunk = '';
      }
      chunk += `${line}\n`;
    }
    if (chunk !== '') appendFileSync(file, chunk, { mode: 0o640 });
  }
}
