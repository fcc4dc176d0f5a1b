/**
 * Tenant KV stores: one SQLite file per tenant (`tenants/<tenant>/kv.sqlite`,
 * never shared), holding namespaces. An instance's `env.KV` is bound to one
 * namespace of its own tenant's file — the supervisor picks the file from the
 * instance's tenant, never from anything the isolate says, so no tenant can
 * name another's data.
 *
 * Each namespace has a size quota (bytes of keys plus values, kept in a usage
 * table updated in the same transaction as the write); each file also has a
 * hard page cap, so even a quota bug cannot fill the disk.
 */
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

export const MAX_KEY_BYTES = 512;
export const MAX_VALUE_BYTES = 1024 * 1024;
const MAX_LIST = 1000;
/** Hard cap of one tenant's KV file. */
const TENANT_FILE_MAX_BYTES = 1024 * 1024 * 1024;

/** A KV error tenant code sees (as the rejection of its KV call). */
export class KvError extends Error {}
/** A write past the namespace's quota: a limit hit the guard hears of (`isolate.limit` kv). */
export class KvQuotaError extends KvError {}

export interface KvNamespace {
  tenantId: string;
  namespace: string;
  quotaBytes: number;
}

type Db = Database.Database;

export class KvStores {
  readonly #dbs = new Map<string, Db>();

  constructor(private readonly root: string) {}

  #db(tenantId: string): Db {
    let db = this.#dbs.get(tenantId);
    if (db) return db;
    const dir = this.dir(tenantId);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    db = new Database(join(dir, 'kv.sqlite'));
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    const pageSize = Number(db.pragma('page_size', { simple: true }));
    db.pragma(`max_page_count = ${Math.floor(TENANT_FILE_MAX_BYTES / pageSize)}`);
    db.exec(`
      CREATE TABLE IF NOT EXISTS kv (ns TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, PRIMARY KEY (ns, key)) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS usage (ns TEXT PRIMARY KEY, bytes INTEGER NOT NULL) WITHOUT ROWID;
    `);
    this.#dbs.set(tenantId, db);
    return db;
  }

  get(ns: KvNamespace, key: string): string | null {
    checkKey(key);
    const row = this.#db(ns.tenantId).prepare('SELECT value FROM kv WHERE ns = ? AND key = ?').get(ns.namespace, key) as { value: Buffer } | undefined;
    return row ? row.value.toString('utf8') : null;
  }

  put(ns: KvNamespace, key: string, value: string): void {
    checkKey(key);
    if (typeof value !== 'string') throw new KvError('KV.put: value must be a string');
    const bytes = Buffer.from(value);
    if (bytes.length > MAX_VALUE_BYTES) throw new KvError(`KV.put: value over ${MAX_VALUE_BYTES} bytes`);
    const db = this.#db(ns.tenantId);
    db.transaction(() => {
      const old = db.prepare('SELECT length(value) AS n FROM kv WHERE ns = ? AND key = ?').get(ns.namespace, key) as { n: number } | undefined;
      const used = this.usage(ns);
      const next = used - (old ? old.n + Buffer.byteLength(key) : 0) + bytes.length + Buffer.byteLength(key);
      if (next > ns.quotaBytes) throw new KvQuotaError(`KV quota exceeded: ${next} of ${ns.quotaBytes} bytes`);
      db.prepare('INSERT INTO kv (ns, key, value) VALUES (?, ?, ?) ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value').run(ns.namespace, key, bytes);
      db.prepare('INSERT INTO usage (ns, bytes) VALUES (?, ?) ON CONFLICT (ns) DO UPDATE SET bytes = excluded.bytes').run(ns.namespace, next);
    })();
  }

  delete(ns: KvNamespace, key: string): void {
    checkKey(key);
    const db = this.#db(ns.tenantId);
    db.transaction(() => {
      const old = db.prepare('SELECT length(value) AS n FROM kv WHERE ns = ? AND key = ?').get(ns.namespace, key) as { n: number } | undefined;
      if (!old) return;
      db.prepare('DELETE FROM kv WHERE ns = ? AND key = ?').run(ns.namespace, key);
      db.prepare('UPDATE usage SET bytes = bytes - ? WHERE ns = ?').run(old.n + Buffer.byteLength(key), ns.namespace);
    })();
  }

  /** Keys in order, after `cursor` (the last key of the previous page). */
  list(ns: KvNamespace, prefix: string, limit: number, cursor: string | null): { keys: Array<{ name: string }>; list_complete: boolean; cursor?: string } {
    const n = Math.min(Math.max(1, Math.floor(limit) || MAX_LIST), MAX_LIST);
    const rows = this.#db(ns.tenantId).prepare(
      'SELECT key FROM kv WHERE ns = ? AND key > ? AND substr(key, 1, ?) = ? ORDER BY key LIMIT ?',
    ).all(ns.namespace, cursor ?? '', prefix.length, prefix, n + 1) as Array<{ key: string }>;
    const page = rows.slice(0, n).map((r) => ({ name: r.key }));
    return rows.length > n ? { keys: page, list_complete: false, cursor: page[page.length - 1]!.name } : { keys: page, list_complete: true };
  }

  usage(ns: KvNamespace): number {
    const row = this.#db(ns.tenantId).prepare('SELECT bytes FROM usage WHERE ns = ?').get(ns.namespace) as { bytes: number } | undefined;
    return row?.bytes ?? 0;
  }

  /** Every pair of a namespace, for snapshots. */
  dump(ns: KvNamespace): Array<[string, string]> {
    const rows = this.#db(ns.tenantId).prepare('SELECT key, value FROM kv WHERE ns = ? ORDER BY key').all(ns.namespace) as Array<{ key: string; value: Buffer }>;
    return rows.map((r) => [r.key, r.value.toString('utf8')]);
  }

  /** Replaces a namespace's contents (restore), in one transaction. */
  replace(ns: KvNamespace, pairs: Array<[string, string]>): void {
    const db = this.#db(ns.tenantId);
    db.transaction(() => {
      db.prepare('DELETE FROM kv WHERE ns = ?').run(ns.namespace);
      const insert = db.prepare('INSERT INTO kv (ns, key, value) VALUES (?, ?, ?)');
      let bytes = 0;
      for (const [k, v] of pairs) {
        const value = Buffer.from(v);
        insert.run(ns.namespace, k, value);
        bytes += Buffer.byteLength(k) + value.length;
      }
      db.prepare('INSERT INTO usage (ns, bytes) VALUES (?, ?) ON CONFLICT (ns) DO UPDATE SET bytes = excluded.bytes').run(ns.namespace, bytes);
    })();
  }

  /** The directory holding a tenant's file. */
  dir(tenantId: string): string {
    return join(this.root, tenantId);
  }

  /** Closes a tenant's file (before it is removed); a later call opens it anew. */
  closeTenant(tenantId: string): void {
    this.#dbs.get(tenantId)?.close();
    this.#dbs.delete(tenantId);
  }

  close(): void {
    for (const db of this.#dbs.values()) db.close();
    this.#dbs.clear();
  }
}

function checkKey(key: unknown): asserts key is string {
  if (typeof key !== 'string' || key.length === 0) throw new KvError('KV: key must be a non-empty string');
  if (Buffer.byteLength(key) > MAX_KEY_BYTES) throw new KvError(`KV: key over ${MAX_KEY_BYTES} bytes`);
}
