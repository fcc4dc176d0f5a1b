/**
 * What a tenant holds outside the store, and how it is named: by the tenant's
 * id, never its name. A name is given back when its tenant is deleted and may
 * be taken by the next tenant at once; an id never is. So a re-created name
 * starts empty, and nothing of a deleted tenant can be served, read or
 * recovered in the new one's name.
 *
 * On disk, under the data dir:
 *
 *     docroots/<tenant id>/…        static sites' files
 *     logs/sites/<tenant id>/…      per-site access logs
 *     quarantine/<tenant id>-<time>/ what a deleted tenant held, when the provider keeps it
 *
 * and in the guard's checksum DB, a static site's scope is `docroot:<tenant id>/<dir>`.
 * The level drivers key their own per-tenant files (the env level's KV, the os
 * level's snapshot store) by id as well, and drop them through `purgeTenant`.
 *
 * Data dirs written before this was so (keyed by name) are migrated at start:
 * each name-keyed directory is renamed to its tenant's id (one rename each, so
 * a crash leaves every directory either done or not yet, and the next start
 * finishes); one whose name belongs to no tenant any more — a deleted
 * tenant's — goes to quarantine, where no later holder of the name finds it.
 */
import { existsSync, mkdirSync, readdirSync, renameSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Logger } from 'pino';
import { discard } from '../../core/discard.js';
import type { DriverRegistry } from '../../levels/registry.js';
import type { Store } from '../../store/store.js';
import type { Tenant } from '../../store/types.js';

/** Tenant ids as the store makes them (`tn_` + 12 base64url characters); names never contain `_`. */
const TENANT_ID = /^tn_[A-Za-z0-9_-]{12}$/;

export const tenantDocroot = (dataDir: string, tenantId: string): string => join(dataDir, 'docroots', tenantId);
export const siteLogsDir = (dataDir: string): string => join(dataDir, 'logs', 'sites');
export const tenantSiteLogs = (dataDir: string, tenantId: string): string => join(siteLogsDir(dataDir), tenantId);
export const docrootScope = (tenantId: string, root: string): string => `docroot:${tenantId}/${root}`;
const DOCROOT_SCOPE = /^docroot:([^/]+)\//;

/** The checksum DB as far as tenant data goes. */
export interface ScopeStore {
  scopes(): string[];
  forget(scope: string): void;
}

/** Per-tenant roots of the data dir. */
const TENANT_ROOTS = (dataDir: string): Array<{ dir: string; label: string }> => [
  { dir: join(dataDir, 'docroots'), label: 'docroots' },
  { dir: siteLogsDir(dataDir), label: 'site-logs' },
];

const stamp = (): string => new Date().toISOString().replace(/[:.]/g, '-');

export interface MigrationReport {
  /** `<root>/<name>` → `<root>/<id>`. */
  renamed: string[];
  /** Directories of names no tenant holds, moved to quarantine. */
  quarantined: string[];
  /** Checksum scopes named by tenant name, dropped (the guard re-baselines under the id). */
  forgotten: string[];
}

/** Renames name-keyed tenant data to id-keyed; idempotent, one rename per directory. */
export function migrateNameKeyedData(dataDir: string, store: Store, checksums: ScopeStore): MigrationReport {
  const report: MigrationReport = { renamed: [], quarantined: [], forgotten: [] };
  const byName = new Map(store.listTenants().map((t) => [t.name, t]));
  const now = stamp();
  for (const { dir, label } of TENANT_ROOTS(dataDir)) {
    if (!existsSync(dir)) continue;
    for (const entry of readdirSync(dir)) {
      if (TENANT_ID.test(entry) || !statSync(join(dir, entry)).isDirectory()) continue;
      const from = join(dir, entry);
      const tenant = byName.get(entry);
      const to = tenant && !existsSync(join(dir, tenant.id)) ? join(dir, tenant.id) : null;
      if (to) {
        renameSync(from, to);
        report.renamed.push(`${label}/${entry} → ${tenant!.id}`);
      } else {
        // A deleted tenant's (or a name-keyed copy beside an id-keyed one): nobody's to serve.
        const q = join(dataDir, 'quarantine', `name-${entry}-${now}`, label);
        moveSync(from, q);
        report.quarantined.push(`${label}/${entry}`);
      }
    }
  }
  for (const scope of checksums.scopes()) {
    const owner = DOCROOT_SCOPE.exec(scope)?.[1];
    if (owner !== undefined && !TENANT_ID.test(owner)) {
      checksums.forget(scope);
      report.forgotten.push(scope);
    }
  }
  return report;
}

function moveSync(from: string, to: string): void {
  mkdirSync(dirname(to), { recursive: true, mode: 0o700 });
  renameSync(from, to);
}

export interface TenantDataOptions {
  dataDir: string;
  store: Store;
  registry: DriverRegistry;
  checksums: ScopeStore;
  log?: Logger;
}

/** Removes (or quarantines) everything a deleted tenant held outside the store. */
export class TenantData {
  constructor(private readonly o: TenantDataOptions) {}

  /**
   * Drops the tenant's docroots, site logs, guard scopes and the drivers' files
   * (KV, snapshot store); with `quarantine`, moves the files to
   * `quarantine/<id>-<time>/` instead. Returns where they went (null: removed).
   */
  async purge(tenant: Pick<Tenant, 'id' | 'name'>, opts: { quarantine: boolean }): Promise<string | null> {
    const { dataDir, registry, checksums, log } = this.o;
    const qdir = opts.quarantine ? join(dataDir, 'quarantine', `${tenant.id}-${stamp()}`) : null;
    for (const { dir, label } of TENANT_ROOTS(dataDir)) {
      await discard(join(dir, tenant.id), qdir ? { dir: qdir, as: label } : null);
    }
    for (const scope of checksums.scopes()) if (DOCROOT_SCOPE.exec(scope)?.[1] === tenant.id) checksums.forget(scope);
    for (const f of await registry.purgeTenant(tenant.id, qdir ? { dir: qdir, prefix: '' } : null)) {
      log?.warn({ tenant: tenant.name, tenantId: tenant.id, ...f }, 'driver could not drop the deleted tenant\'s files');
    }
    return qdir;
  }
}
