/**
 * The alert outputs table: where the guard delivers alerts, per provider
 * (`tenantId` null) and per tenant. Names are unique per owner. The type's
 * own settings are JSON; a webhook's signing secret is kept sealed (the guard
 * holds the key, outside this file), never in the clear.
 */
import type Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { conflict } from '../core/errors.js';

export interface OutputRecord {
  id: string;
  /** null: the provider's output (it receives every alert). */
  tenantId: string | null;
  name: string;
  type: string;
  /** The type's settings (URL, host, port, path, …), without the secret. */
  config: Record<string, unknown>;
  minPriority: string | null;
  /** Only alerts of these rules; null: every rule. */
  rules: string[] | null;
  /** The webhook secret, sealed by its owner; null for types without one. */
  sealedSecret: string | null;
  createdAt: string;
}

export type NewOutput = Omit<OutputRecord, 'id' | 'createdAt'>;

/** The store's part for outputs. */
export interface OutputRecords {
  create(o: NewOutput): OutputRecord;
  /** The owner's output of that name (`tenantId` null: the provider's). */
  get(tenantId: string | null, name: string): OutputRecord | null;
  /** `tenantId` null: the provider's only; undefined: every output. */
  list(tenantId?: string | null): OutputRecord[];
  delete(id: string): void;
}

type Row = Record<string, unknown>;

const toOutput = (r: Row): OutputRecord => ({
  id: String(r.id),
  tenantId: (r.tenant_id as string | null) ?? null,
  name: String(r.name),
  type: String(r.type),
  config: JSON.parse(String(r.config)) as Record<string, unknown>,
  minPriority: (r.min_priority as string | null) ?? null,
  rules: r.rules === null ? null : (JSON.parse(String(r.rules)) as string[]),
  sealedSecret: (r.sealed_secret as string | null) ?? null,
  createdAt: String(r.created_at),
});

export class SqliteOutputs implements OutputRecords {
  constructor(private readonly db: Database.Database) {}

  create(o: NewOutput): OutputRecord {
    const out: OutputRecord = { id: `out_${randomBytes(9).toString('base64url')}`, ...o, createdAt: new Date().toISOString() };
    try {
      this.db.prepare('INSERT INTO alert_outputs (id, tenant_id, name, type, config, min_priority, rules, sealed_secret, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)')
        .run(out.id, out.tenantId, out.name, out.type, JSON.stringify(out.config), out.minPriority, out.rules ? JSON.stringify(out.rules) : null, out.sealedSecret, out.createdAt);
    } catch (e) {
      if (String((e as { code?: unknown }).code).startsWith('SQLITE_CONSTRAINT_UNIQUE')) throw conflict(`output '${o.name}' already exists`, { kind: 'output', name: o.name });
      throw e;
    }
    return out;
  }

  get(tenantId: string | null, name: string): OutputRecord | null {
    const r = this.db.prepare('SELECT * FROM alert_outputs WHERE tenant_id IS ? AND name = ?').get(tenantId, name) as Row | undefined;
    return r ? toOutput(r) : null;
  }

  list(tenantId?: string | null): OutputRecord[] {
    const rows = tenantId === undefined
      ? this.db.prepare('SELECT * FROM alert_outputs ORDER BY tenant_id, name').all()
      : this.db.prepare('SELECT * FROM alert_outputs WHERE tenant_id IS ? ORDER BY name').all(tenantId);
    return (rows as Row[]).map(toOutput);
  }

  delete(id: string): void {
    this.db.prepare('DELETE FROM alert_outputs WHERE id = ?').run(id);
  }
}
