/**
 * Sites that moved away with their instance (`move.ts`): after a move, the
 * sending daemon's gateway keeps answering each such hostname by forwarding
 * to where it went — the receiving daemon's gateway (which routes it by the
 * same Host) — until DNS and operators catch up and the provider removes the
 * forward. They live outside the store (the site's record moved to the target,
 * with its quota), in `DATA/moves/forwards.json`, written atomically; a site
 * created here again under the same hostname takes precedence.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { SiteRoute } from '../../gateway/index.js';

export interface Forward {
  hostname: string;
  tenantId: string;
  /** Where the gateway sends the site's traffic now. */
  to: { host: string; port: number };
  /** The daemon that took the instance, and the instance's name there. */
  target: string;
  instance: string;
  movedAt: string;
}

export class Forwards {
  readonly #path: string;
  #items: Forward[];

  constructor(dataDir: string) {
    const dir = join(dataDir, 'moves');
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.#path = join(dir, 'forwards.json');
    this.#items = Forwards.#read(this.#path);
  }

  list(): readonly Forward[] {
    return this.#items;
  }

  /** Adds (or replaces, by hostname) and persists before returning. */
  add(forwards: readonly Forward[]): void {
    const names = new Set(forwards.map((f) => f.hostname));
    this.#write([...this.#items.filter((f) => !names.has(f.hostname)), ...forwards]);
  }

  /** True when there was one. */
  remove(hostname: string): boolean {
    const left = this.#items.filter((f) => f.hostname !== hostname);
    if (left.length === this.#items.length) return false;
    this.#write(left);
    return true;
  }

  /** As the gateway routes them. */
  routes(): SiteRoute[] {
    return this.#items.map((f) => ({ hostname: f.hostname, tenantId: f.tenantId, target: { kind: 'upstream', host: f.to.host, port: f.to.port } }));
  }

  #write(items: Forward[]): void {
    const tmp = `${this.#path}.tmp-${process.pid}`;
    writeFileSync(tmp, `${JSON.stringify(items, null, 1)}\n`, { mode: 0o600 });
    renameSync(tmp, this.#path);
    this.#items = items;
  }

  static #read(path: string): Forward[] {
    try {
      const parsed = JSON.parse(readFileSync(path, 'utf8')) as unknown;
      return Array.isArray(parsed) ? (parsed as Forward[]) : [];
    } catch {
      return []; // none yet
    }
  }
}
