/**
 * Tables of the audit log, run by the store's migration 1.
 *
 * `audit_entries` row `seq` is leaf `seq` of the Merkle tree; `data` is the exact
 * leaf bytes (canonical JSON of the entry). `leaf_hash` and `root_after` are
 * caches that `verify` recomputes, which is what lets it name the first altered
 * row. `tenant_id` repeats the entry's tenantId so a tenant's rows are one index
 * read; verify checks that it still matches `data`. There is deliberately no
 * foreign key to `tenants`: deleting a tenant must not touch its history.
 *
 * `audit_heads` holds every signed tree head (Ed25519 over the encoding in
 * head.ts); each is a commitment to the first `tree_size` entries.
 */
export const AUDIT_SCHEMA_SQL = `
  CREATE TABLE audit_entries (
    seq INTEGER PRIMARY KEY,
    tenant_id TEXT,
    data BLOB NOT NULL,
    leaf_hash BLOB NOT NULL,
    root_after BLOB NOT NULL
  );
  CREATE INDEX audit_entries_tenant ON audit_entries(tenant_id);
  CREATE TABLE audit_heads (
    tree_size INTEGER PRIMARY KEY,
    root_hash BLOB NOT NULL,
    timestamp TEXT NOT NULL,
    signature BLOB NOT NULL
  );
`;
