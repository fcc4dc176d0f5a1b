/**
 * Who may put a site on a hostname. A hostname belongs to the tenant that
 * holds its domain; outside every held domain, to whoever named it first —
 * so no tenant can take visitors meant for another's names, whatever state
 * that tenant's sites are in.
 *
 * - A domain (`example.com`, assigned by the provider) is the name and every
 *   name under it. Only its holder adds sites there, exact or wildcard.
 * - Outside held domains, a site stands on its name — `s` for a wildcard `*.s`
 *   (which the router matches to `a.s`, `a.b.s`, not `s`) — and the names under
 *   it. Two tenants' sites may not stand on one line of descent: a wildcard
 *   over another tenant's name is refused, and so is a name under or above
 *   another tenant's — a browser sends a cookie set for `compat.ta.test` to
 *   `x.compat.ta.test`, and one set by a page of `compat.ta.test` for `ta.test`
 *   to `ta.test`. Names nobody holds (dev names such as `*.demo.localhost`) thus
 *   stay first come, first served, but never entangled with another tenant's.
 * - A domain is assigned only while no other tenant holds it, a domain around
 *   or inside it, or a site on its line of descent.
 *
 * Pure functions over the current domains and sites; the API calls them in the
 * same store transaction that writes, so two racing claims cannot both pass.
 */
import { StrataError } from '../../core/errors.js';
import type { Store } from '../../store/store.js';
import type { Domain, Site } from '../../store/types.js';

type Held = Pick<Domain, 'tenantId' | 'name'>;
type Named = Pick<Site, 'tenantId' | 'hostname'>;

/** `name` is `zone` or a name under it. */
export const within = (name: string, zone: string): boolean => name === zone || name.endsWith(`.${zone}`);
const isWildcard = (hostname: string): boolean => hostname.startsWith('*.');
/** The name a hostname stands on: `s` for `*.s`, the name itself otherwise. */
const base = (hostname: string): string => (isWildcard(hostname) ? hostname.slice(2) : hostname);

/** The held domain `hostname` lies in (the innermost), if any. */
export function domainOf(hostname: string, domains: readonly Held[]): Held | null {
  const name = base(hostname);
  let found: Held | null = null;
  for (const d of domains) if (within(name, d.name) && (found === null || d.name.length > found.name.length)) found = d;
  return found;
}

/** One name is the other or under it: sites on them reach each other's visitors or cookies. */
const entangled = (a: string, b: string): boolean => within(a, b) || within(b, a);

/**
 * Throws the 409 that says why `tenantId` may not add a site named `hostname`
 * (normalised), or returns. A name equal to an existing site's is left to the
 * store's unique name (its own 409).
 */
export function checkSiteHostname(tenantId: string, hostname: string, domains: readonly Held[], sites: readonly Named[]): void {
  const domain = domainOf(hostname, domains);
  if (domain !== null && domain.tenantId !== tenantId) {
    throw new StrataError('STRATA_ERR_HOSTNAME_NOT_YOURS', `'${hostname}' is inside the domain '${domain.name}', which another tenant holds`, {
      hostname, domain: domain.name,
    });
  }
  // Inside its own domain the holder's claim stands: nobody else can have a name there (checked when it was assigned).
  if (domain !== null) return;
  const name = base(hostname);
  const covered = domains.find((d) => d.tenantId !== tenantId && within(d.name, name));
  if (covered) {
    throw new StrataError('STRATA_ERR_HOSTNAME_OVERLAP', `'${hostname}' covers the domain '${covered.name}', which another tenant holds`, {
      hostname, domain: covered.name,
    });
  }
  const other = sites.find((s) => s.tenantId !== tenantId && s.hostname !== hostname && entangled(name, base(s.hostname)));
  if (other) {
    const why = within(base(other.hostname), name) ? 'covers' : 'is under';
    throw new StrataError('STRATA_ERR_HOSTNAME_OVERLAP', `'${hostname}' ${why} '${other.hostname}', another tenant's site`, { hostname, site: other.hostname });
  }
}

/**
 * Throws the 409 that says why `name` may not be assigned to `tenantId`, or
 * returns. The same tenant may hold a domain inside another of its own.
 */
export function checkDomainAssignment(tenantId: string, name: string, domains: readonly Held[], sites: readonly Named[]): void {
  const held = domains.find((d) => d.tenantId !== tenantId && (within(name, d.name) || within(d.name, name)));
  if (held) {
    const where = held.name === name ? 'is held by another tenant' : within(name, held.name) ? `is inside '${held.name}', which another tenant holds` : `contains '${held.name}', which another tenant holds`;
    throw new StrataError('STRATA_ERR_DOMAIN_TAKEN', `the domain '${name}' ${where}`, { domain: name, held: held.name });
  }
  // Sites of others inside it, or over it, would keep (or catch) its visitors and cookies.
  const inUse = sites.filter((s) => s.tenantId !== tenantId && entangled(base(s.hostname), name));
  if (inUse.length > 0) {
    throw new StrataError('STRATA_ERR_DOMAIN_IN_USE', `other tenants have sites in or over '${name}': remove them first`, {
      domain: name, sites: inUse.map((s) => s.hostname),
    });
  }
}

/** `checkSiteHostname` against what the store holds now; call it in the transaction that creates the site. */
export function checkSiteName(store: Store, tenantId: string, hostname: string): void {
  checkSiteHostname(tenantId, hostname, store.listDomains(), store.listSites());
}
