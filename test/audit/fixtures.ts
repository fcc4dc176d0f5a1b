/** A throwaway audit log in a temp SQLite file, set up the way the daemon sets it up. */
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { AuditLog, type AuditEntryInput, type AuditLogOptions } from '../../src/audit/log.js';
import { AUDIT_SCHEMA_SQL } from '../../src/store/audit-schema.js';

export interface TempLog {
  path: string;
  db: Database.Database;
  keys: { privateKey: KeyObject; publicKey: KeyObject };
  log: AuditLog;
  /** A second connection and AuditLog on the same file, as a restarted daemon would open it. */
  open(opts?: AuditLogOptions): { db: Database.Database; log: AuditLog };
  cleanup(): void;
}

function openDb(path: string): Database.Database {
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  return db;
}

export function tempLog(opts: AuditLogOptions = { signIntervalMs: 60_000 }): TempLog {
  const dir = mkdtempSync(join(tmpdir(), 'strata-audit-'));
  const path = join(dir, 'strata.db');
  const db = openDb(path);
  db.exec(AUDIT_SCHEMA_SQL);
  const keys = generateKeyPairSync('ed25519');
  const log = new AuditLog(db, keys, opts);
  const opened = [{ db, log }];
  return {
    path, db, keys, log,
    open(more = opts) {
      const db2 = openDb(path);
      const pair = { db: db2, log: new AuditLog(db2, keys, more) };
      opened.push(pair);
      return pair;
    },
    cleanup() {
      for (const o of opened) {
        if (o.db.open) {
          o.log.close();
          o.db.close();
        }
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function sampleEntry(i: number, tenantId: string | null = i % 3 === 0 ? null : `t${i % 3}`): AuditEntryInput {
  return {
    actor: { userId: `u${i % 5}`, name: `user-${i % 5}`, role: i % 2 ? 'tenant-admin' : 'provider-admin' },
    tenantId,
    action: ['tenant.create', 'instance.stop', 'guard.freeze', 'site.update'][i % 4]!,
    target: `acme/web-${i}`,
    result: i % 7 === 0 ? 'error' : 'ok',
    ...(i % 7 === 0 ? { status: 409 } : {}),
    ...(i % 11 === 0 ? { reason: 'ticket #' + i } : {}),
    details: { n: i, nested: { z: 1, a: [i, 'x'] } },
  };
}
