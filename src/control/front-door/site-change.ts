/**
 * What a site may point at, checked the same way when it is made and when it
 * is changed, and the change itself: a new target (an instance port, a static
 * root, a redirect) and/or other listeners. The gateway follows the change
 * from its audit entry, as it follows a new site.
 */
import { StrataError, notFound } from '../../core/errors.js';
import { checkIfMatch } from '../../core/revision.js';
import { validationError } from '../../core/validation.js';
import type { Store } from '../../store/store.js';
import type { Site, SiteTarget, Tenant } from '../../store/types.js';

type AuditFn = (entry: { action: string; target: string; tenantId: string | null; details?: Record<string, unknown> }) => void;

/** A listener the front door was started with (`strata up --listen`); stored ones come from the store. */
export interface FixedListener {
  id: string;
  protocol: string;
}

export interface SiteChange {
  target?: SiteTarget;
  /** null: every listener. */
  listeners?: string[] | null;
}

/** A static root is a path inside the tenant's own docroot area: relative, no `..`. */
export const safeRelativePath = (p: string): boolean =>
  !p.startsWith('/') && !p.includes('\0') && p.split(/[\\/]/).every((seg) => seg !== '..');

/** A static root inside the tenant's docroot; an instance target naming one of the tenant's instances (404 otherwise). */
export function checkSiteTarget(store: Store, tenant: Tenant, target: SiteTarget): void {
  if (target.kind === 'static' && !safeRelativePath(target.root)) throw validationError('body.target.root', 'must be relative, without ..');
  if (target.kind === 'instance' && !store.getInstance(tenant.id, target.instance)) throw notFound('instance', `${tenant.name}/${target.instance}`);
}

/**
 * A site bound to listeners (IP- or port-based virtual hosting) names
 * existing ones, and a static or redirect site (which answers HTTP) no
 * tls-passthrough listener.
 */
export function checkSiteListeners(store: Store, fixed: readonly FixedListener[], names: readonly string[], target: SiteTarget): void {
  const known = new Map<string, string>([
    ...fixed.map((l) => [l.id, l.protocol] as const),
    ...store.listListeners().map((l) => [l.name, l.protocol] as const),
  ]);
  for (const name of names) {
    const protocol = known.get(name);
    const problem = protocol === undefined ? `no gateway listener is named '${name}'`
      : protocol === 'tls-passthrough' && target.kind !== 'instance' ? `a ${target.kind} site cannot be served on the tls-passthrough listener '${name}'` : null;
    if (problem !== null) throw new StrataError('STRATA_ERR_SITE_LISTENER', `body.listeners: ${problem}`, { listener: name });
  }
}

/** The fields of `change` that differ from `site` (`target`, `listeners`). Pure: `strata apply` plans with it. */
export function diffSite(site: Pick<Site, 'target' | 'listeners'>, change: SiteChange): string[] {
  return (['target', 'listeners'] as const).filter((f) => change[f] !== undefined && JSON.stringify(change[f]) !== JSON.stringify(site[f]));
}

/** Changes `site` of `tenant`; `ifMatch` as the If-Match header gave it. Nothing changed: no revision, no audit entry. */
export function changeSite(
  store: Store, fixed: readonly FixedListener[], tenant: Tenant, site: Site, change: SiteChange, opts: { ifMatch?: string; audit: AuditFn },
): { site: Site; changed: string[] } {
  return store.transaction(() => {
    const cur = store.getSite(site.hostname);
    if (!cur || cur.id !== site.id) throw notFound('site', site.hostname);
    checkIfMatch(opts.ifMatch, cur, `site ${cur.hostname}`);
    const changed = diffSite(cur, change);
    if (changed.length === 0) return { site: cur, changed };
    const target = change.target ?? cur.target;
    if (change.target !== undefined) checkSiteTarget(store, tenant, target);
    const listeners = change.listeners === undefined ? cur.listeners : change.listeners;
    // A new target may not suit the listeners kept (a static site on a passthrough listener).
    if (listeners !== null) checkSiteListeners(store, fixed, listeners, target);
    // An unchanged instance target keeps the instance it follows (updateSite resolves a given target afresh).
    const next = store.updateSite(cur.id, { ...(changed.includes('target') ? { target } : {}), ...(changed.includes('listeners') ? { listeners } : {}) });
    opts.audit({ action: 'site.update', target: cur.hostname, tenantId: tenant.id, details: { changed, target: next.target, listeners: next.listeners } });
    return { site: next, changed };
  });
}
