/**
 * Versioned schema migrations, applied in order inside one transaction each.
 * `PRAGMA user_version` records the last applied version. Never edit a migration
 * that has shipped: add a new one.
 */
import { AUDIT_SCHEMA_SQL } from './audit-schema.js';

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
  {
    version: 2,
    description: 'certificates (keys live in DATA/certs/<id>/, 0600) and gateway listeners',
    sql: `
      CREATE TABLE certificates (
        id TEXT PRIMARY KEY,
        tenant_id TEXT REFERENCES tenants(id) ON DELETE CASCADE,
        hostnames TEXT NOT NULL,
        source TEXT NOT NULL,
        status TEXT NOT NULL,
        challenge TEXT,
        cert_pem TEXT,
        fingerprint TEXT,
        not_before TEXT,
        not_after TEXT,
        error TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
      );
      CREATE INDEX certificates_tenant ON certificates(tenant_id);
      -- One certificate per name: the gateway chooses by SNI and refuses two claims.
      CREATE TABLE certificate_names (
        hostname TEXT NOT NULL UNIQUE,
        certificate_id TEXT NOT NULL REFERENCES certificates(id) ON DELETE CASCADE
      );
      CREATE TABLE listeners (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        address TEXT NOT NULL,
        port INTEGER NOT NULL,
        protocol TEXT NOT NULL,
        default_site TEXT,
        strict_sni INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        UNIQUE (address, port)
      );
    `,
  },
  {
    version: 3,
    description: "system-owned (guard) snapshots, kept out of tenants' lists and usage; a clone's source, kept until the clone is made",
    sql: `
      ALTER TABLE snapshots ADD COLUMN system INTEGER NOT NULL DEFAULT 0;
      -- Before v3 the guard's snapshots were told apart by name only.
      UPDATE snapshots SET system = 1 WHERE name LIKE 'guard-good-%' OR name LIKE 'guard-forensic-%';
      -- JSON {instanceId, snapshotId} while a clone is not yet made: a daemon restarted mid-clone finishes it from there.
      ALTER TABLE instances ADD COLUMN clone_from TEXT;
    `,
  },
  {
    version: 4,
    description: 'a site bound to some gateway listeners (IP- and port-based virtual hosts)',
    sql: `
      -- JSON array of listener names; NULL: every listener.
      ALTER TABLE sites ADD COLUMN listeners TEXT;
    `,
  },
  {
    version: 5,
    description: "a site follows its instance by id (a name may be reused after a delete); domains held by tenants",
    sql: `
      ALTER TABLE sites ADD COLUMN instance_id TEXT;
      -- Resolved once, here, the way the name resolved before: the instance of that name in the site's tenant.
      UPDATE sites SET instance_id = (SELECT i.id FROM instances i WHERE i.tenant_id = sites.tenant_id AND i.name = sites.instance_name)
        WHERE instance_name IS NOT NULL;
      CREATE INDEX sites_instance ON sites(instance_id);
      -- A domain is the name and every name under it; one holder each. A tenant's domains go with it.
      CREATE TABLE domains (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        name TEXT NOT NULL UNIQUE,
        source TEXT NOT NULL,
        created_at TEXT NOT NULL
      );
      CREATE INDEX domains_tenant ON domains(tenant_id);
    `,
  },
  {
    version: 6,
    description: 'a revision per changeable row (tenants, users, instances, sites): the ETag that If-Match compares',
    sql: `
      -- Bumped by every change of what a user may change (quota, role, limits, config, source, target, listeners); never by the driver's observations.
      ALTER TABLE tenants ADD COLUMN revision INTEGER NOT NULL DEFAULT 1;
      ALTER TABLE users ADD COLUMN revision INTEGER NOT NULL DEFAULT 1;
      ALTER TABLE instances ADD COLUMN revision INTEGER NOT NULL DEFAULT 1;
      ALTER TABLE sites ADD COLUMN revision INTEGER NOT NULL DEFAULT 1;
    `,
  },
  {
    version: 7,
    description: "the guard's alert outputs (webhook, syslog, file), the provider's and each tenant's",
    sql: `
      -- tenant_id NULL: the provider's output. A tenant's outputs go with it.
      CREATE TABLE alert_outputs (
        id TEXT PRIMARY KEY,
        tenant_id TEXT REFERENCES tenants(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        type TEXT NOT NULL,
        config TEXT NOT NULL,
        min_priority TEXT,
        rules TEXT,
        sealed_secret TEXT,
        created_at TEXT NOT NULL
      );
      -- One name per owner; NULLs are distinct in a UNIQUE index, so the provider's are keyed by ''.
      CREATE UNIQUE INDEX alert_outputs_owner_name ON alert_outputs(COALESCE(tenant_id, ''), name);
    `,
  },
];
