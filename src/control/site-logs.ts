/**
 * Per-site access logs: `DATA/logs/sites/<tenant>/<site>.log`, JSON lines,
 * rotated by size (`<site>.log.1` … `.N`). The gateway's workers append one
 * shared access log (whole lines, O_APPEND, nothing per site on their hot
 * path); the daemon follows that file and sorts each line into its site's file.
 * Requests that matched no site are not copied (they belong to no tenant).
 * A wildcard site `*.example.com` logs to `_.example.com.log` (`_` never
 * occurs in a site name).
 */
import { appendFileSync, closeSync, existsSync, mkdirSync, openSync, readSync, renameSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Store } from '../store/store.js';

export interface SiteLogOptions {
  /** The gateway's access log, followed from its end at start. */
  accessLogPath: string;
  /** Root of the per-site files: `<dir>/<tenant>/<site>.log`. */
  dir: string;
  store: Store;
  /** Rotate a site's file before it grows past this; default 10 MiB. */
  maxBytes?: number;
  /** Rotated files kept per site; default 5. */
  keep?: number;
  /** How often the access log is read; default 500 ms. */
  pollMs?: number;
}

export const siteLogFile = (dir: string, tenant: string, site: string): string =>
  join(dir, tenant, `${site.replace(/^\*/, '_')}.log`);

export class SiteLogs {
  #offset: number;
  #partial = '';
  #timer: NodeJS.Timeout | null = null;
  readonly #tenantNames = new Map<string, string | null>();

  constructor(private readonly o: SiteLogOptions) {
    this.#offset = existsSync(o.accessLogPath) ? statSync(o.accessLogPath).size : 0;
  }

  start(): void {
    this.#timer = setInterval(() => this.drain(), this.o.pollMs ?? 500);
    this.#timer.unref();
  }

  /** Copies what the access log gained since the last call; also the last call at shutdown. */
  drain(): void {
    if (!existsSync(this.o.accessLogPath)) return;
    const size = statSync(this.o.accessLogPath).size;
    if (size < this.#offset) this.#offset = 0; // truncated or replaced by an operator: start over
    if (size === this.#offset) return;
    const fd = openSync(this.o.accessLogPath, 'r');
    const buf = Buffer.alloc(size - this.#offset);
    try {
      readSync(fd, buf, 0, buf.length, this.#offset);
    } finally {
      closeSync(fd);
    }
    this.#offset = size;
    const text = this.#partial + buf.toString('utf8');
    const cut = text.lastIndexOf('\n');
    this.#partial = text.slice(cut + 1);
    const bySite = new Map<string, string[]>();
    for (const line of text.slice(0, cut + 1).split('\n')) {
      const file = line === '' ? null : this.fileFor(line);
      if (file === null) continue;
      let lines = bySite.get(file);
      if (!lines) bySite.set(file, (lines = []));
      lines.push(line);
    }
    for (const [file, lines] of bySite) this.append(file, lines);
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.drain();
  }

  private fileFor(line: string): string | null {
    let entry: { site?: unknown; tenant?: unknown };
    try {
      entry = JSON.parse(line) as typeof entry;
    } catch {
      return null;
    }
    if (typeof entry.site !== 'string' || typeof entry.tenant !== 'string' || entry.site === '-') return null;
    const tenant = this.tenantName(entry.tenant);
    return tenant === null ? null : siteLogFile(this.o.dir, tenant, entry.site);
  }

  private tenantName(id: string): string | null {
    if (!this.#tenantNames.has(id)) this.#tenantNames.set(id, this.o.store.getTenant(id)?.name ?? null);
    return this.#tenantNames.get(id)!;
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
        this.rotate(file);
        size = 0;
        chunk = '';
      }
      chunk += `${line}\n`;
    }
    if (chunk !== '') appendFileSync(file, chunk, { mode: 0o640 });
  }

  /** `f.log` → `f.log.1` → … → `f.log.<keep>` (the oldest is overwritten). */
  private rotate(file: string): void {
    const keep = this.o.keep ?? 5;
    for (let i = keep - 1; i >= 1; i--) if (existsSync(`${file}.${i}`)) renameSync(`${file}.${i}`, `${file}.${i + 1}`);
    renameSync(file, `${file}.1`);
  }
}
