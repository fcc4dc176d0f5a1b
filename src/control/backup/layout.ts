/**
 * What lives in a data dir, and what a backup does with each part. One table,
 * read by the backup (what to copy), by the restore (nothing outside it is
 * accepted) and by docs/operations.md (a test checks the page names every path).
 *
 * Instances' own state (the level drivers' folders: root filesystems, disks,
 * volumes, KV files, snapshots) is not part of a daemon backup: `strata export`
 * is the tool for those. A restored daemon keeps the instances' records; their
 * drivers find no state for them.
 */

export type BackupRule =
  /** Copied with SQLite's online backup API: one consistent snapshot of the store, the audit log and the checksum DB. */
  | 'sqlite'
  /** A single file, mode kept. */
  | 'file'
  /** A directory, everything under it, modes kept. */
  | 'tree'
  /** Left out; `why` says why. */
  | 'skip';

export interface LayoutEntry {
  /** Relative to the data dir. */
  path: string;
  backup: BackupRule;
  what: string;
  /** For `skip`: why it is not in a backup. */
  why?: string;
  /** For `tree`: sub-paths (relative to the data dir) left out. */
  except?: readonly string[];
}

export const DATA_DIR_LAYOUT: readonly LayoutEntry[] = [
  {
    path: 'strata.db', backup: 'sqlite',
    what: "the store (tenants, users, token hashes, instances' records, sites, domains, certificates' records, operations), the audit log (entries and signed heads) and the guard's checksum DB",
  },
  { path: 'strata.db-wal', backup: 'skip', what: "SQLite's write-ahead log", why: 'the online backup of strata.db already holds every committed transaction' },
  { path: 'strata.db-shm', backup: 'skip', what: "SQLite's shared-memory index of the WAL", why: 'rebuilt by SQLite' },
  { path: 'audit-key.pem', backup: 'file', what: 'the Ed25519 key that signs the audit log heads (0600)' },
  { path: 'admin.token', backup: 'file', what: "the provider-admin's bearer token (0600)" },
  { path: 'guard-key', backup: 'file', what: "the key that signs the guard's checksum DB (0600)" },
  { path: 'outputs-key', backup: 'file', what: "the key that seals alert outputs' secrets in the store (0600)" },
  { path: 'ca', backup: 'tree', what: 'the local CA: its certificate and key' },
  { path: 'certs', backup: 'tree', what: "tenants' certificates and keys, one folder per certificate" },
  { path: 'acme', backup: 'tree', what: 'the ACME account key', except: ['acme/challenges'] },
  { path: 'gateway', backup: 'tree', what: "the gateway's neutral certificate (answers names no site holds)" },
  { path: 'docroots', backup: 'tree', what: "tenants' static sites, one folder per tenant id" },
  { path: 'moves', backup: 'tree', what: 'forwards of sites moved to another daemon' },
  { path: 'logs', backup: 'skip', what: 'the access log and per-site logs', why: 'append-only logs; ship or rotate them with your log tooling' },
  { path: 'alerts', backup: 'skip', what: 'the JSON-lines files of alert outputs', why: "append-only copies; each alert's lasting record is its audit log entry, in the store" },
  { path: 'guard', backup: 'skip', what: "the guard's known-good copies of instances' files", why: "instance state; remade when an instance starts" },
  { path: 'quarantine', backup: 'skip', what: "data moved aside when a tenant was deleted with quarantine", why: 'kept for the provider to inspect, not daemon state' },
];

/** The name of the manifest inside a backup directory; written last, so its presence marks a complete backup. */
export const MANIFEST = 'manifest.json';

/** Each level keeps its instances' state in `<dataDir>/<level id>` (`levels/module.ts`): never in a daemon backup. */
export const levelEntries = (levelIds: readonly string[]): LayoutEntry[] => levelIds.map((id) => ({
  path: id, backup: 'skip', what: `the ${id} level's instances: their files, disks, volumes and snapshots`, why: 'instance state: `strata export` is the tool for it',
}));

/** The whole layout of a daemon running these levels. */
export const dataDirLayout = (levelIds: readonly string[]): LayoutEntry[] => [...DATA_DIR_LAYOUT, ...levelEntries(levelIds)];
