/**
 * Versioned schema migrations, applied in order inside one transaction each.
 * `PRAGMA user_version` records the last applied version. Never edit a migration
 * that has shipped: add a new one.
 */
import { AUDIT_SCHEMA_SQL } from '../audit/schema.js';

export interface Migration {
  version: number;
  description: string;
  sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'tenants, users, tokens, instances, sites, snapshots, operations, idempotency, audit',
    sql: `
      CREATE TABLE tenants (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        quota TEXT NOT NULL,
        created_at TEXT NOT NULL
      );
      CREATE TABLE users (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        role TEXT NOT NULL,
        tenant_id TEXT REFERENCES tenants(id) ON DELETE RESTRICT,
        created_at TEXT NOT NULL
      );
      CREATE TABLE tokens (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        secret_hash TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT,
        last_used_at TEXT
      );
      CREATE TABLE instances (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE RESTRICT,
        name TEXT NOT NULL,
        level TEXT NOT NULL,
        source TEXT,
        vcpus REAL NOT NULL,
        memory_mib INTEGER NOT NULL,
        disk_mib INTEGER NOT NULL,
        config TEXT NOT NULL,
        desired_state TEXT NOT NULL,
        actual_state TEXT NOT NULL,
        info TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        UNIQUE (tenant_id, name)
      );
      CREATE TABLE sites (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE RESTRICT,
        hostname TEXT NOT NULL UNIQUE,
        target TEXT NOT NULL,
        instance_name TEXT,
        created_at TEXT NOT NULL
      );
      CREATE INDEX sites_tenant ON sites(tenant_id);
      CREATE TABLE snapshots (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE RESTRICT,
        instance_id TEXT NOT NULL REFERENCES instances(id) ON DELETE RESTRICT,
        name TEXT NOT NULL,
        status TEXT NOT NULL,
        size_bytes INTEGER NOT NULL,
        digest TEXT,
        created_at TEXT NOT NULL,
        UNIQUE (instance_id, name)
      );
      CREATE TABLE operations (
        id TEXT PRIMARY KEY,
        tenant_id TEXT,
        kind TEXT NOT NULL,
        target TEXT NOT NULL,
        status TEXT NOT NULL,
        progress REAL,
        error TEXT,
        result TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
      );
      CREATE INDEX operations_tenant ON operations(tenant_id, created_at);
      CREATE TABLE idempotency (
        user_id TEXT NOT NULL,
        key TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        status INTEGER NOT NULL,
        body TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (user_id, key)
      );
      ${AUDIT_SCHEMA_SQL}
    `,
  },
];
