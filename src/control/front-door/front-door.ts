/**
 * Keeps the gateway's route table in step with the store: every site, with its
 * target resolved — an instance's site to the address its driver reports, a
 * static site to a directory under the tenant's own docroot area
 * (`DATA_DIR/docroots/<tenant id>/…`: see `tenant-data.ts`). Recomputed as a whole on any change to
 * sites or instances (coalesced): 10,000 sites compile in milliseconds, and a
 * whole table is what the gateway swaps atomically.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { CertificateConfig, Gateway, GatewayConfig, ListenerConfig, SiteRoute } from '../../gateway/index.js';
import type { InstanceFacts } from '../../core/instance-facts.js';
import type { Store } from '../../store/store.js';
import type { Instance, Site, StoredListener, Tenant } from '../../store/types.js';
import type { EventBus } from '../../core/events.js';
import { neutralCertificate } from '../certificates/neutral-certificate.js';
import { tenantDocroot } from '../tenants/tenant-data.js';

/** How long a visitor is told to wait when the instance is on its way back up (starting, restarting). */
export const RETRY_SOON_SECONDS = 5;
/** … and when someone has to act first (paused, frozen by the guard, stopped). */
export const RETRY_LATER_SECONDS = 30;

/**
 * A store site as the gateway routes it. An instance's site is always routed:
 * to its address while it runs and has one, otherwise as `unavailable` — 503
 * with Retry-After while the instance exists (paused, frozen, stopped,
 * starting, failed, being recovered), 404 once it is gone — so its name
 * never falls through to a wildcard or a listener's default site, which may
 * be another tenant's. `instance` is the one the site follows (by id), or
 * null when it no longer exists.
 */
export function siteRoute(site: Site, tenant: Tenant, instance: Instance | null, dataDir: string): SiteRoute {
  const base = { hostname: site.hostname, tenantId: site.tenantId, ...(site.listeners !== null ? { listeners: site.listeners } : {}) };
  switch (site.target.kind) {
    case 'static':
      // `root` was checked at the API edge to stay inside the tenant's docroot area.
      return { ...base, target: { kind: 'static', root: join(tenantDocroot(dataDir, tenant.id), site.target.root) } };
    case 'redirect':
      return { ...base, target: { kind: 'redirect', to: site.target.to, status: site.target.status } };
    case 'instance': {
      if (!instance || instance.actualState === 'deleted') return { ...base, target: { kind: 'unavailable', status: 404 } };
      const upstream = instance.actualState === 'running' ? upstreamOf(instance.info, site.target.port) : null;
      if (upstream) return { ...base, target: { kind: 'upstream', ...upstream } };
      const retryAfter = instance.desiredState === 'running' && instance.actualState !== 'paused' ? RETRY_SOON_SECONDS : RETRY_LATER_SECONDS;
      return { ...base, target: { kind: 'unavailable', status: 503, retryAfter } };
    }
  }
}

/**
 * Where to reach `port` of an instance, from the facts its driver reports:
 * - `address` alone: the instance has its own network address (a container);
 *   the site's port is used there;
 * - `address` + `port`: the instance serves one port on the host's loopback (an
 *   isolate's listener, a VM's forwarded port); when `guestPort` is given too,
 *   only a site naming that guest port reaches it.
 */
export function upstreamOf(facts: InstanceFacts, port: number): { host: string; port: number } | null {
  if (!facts.address) return null;
  if (facts.port == null) return { host: facts.address, port };
  if (facts.guestPort != null && facts.guestPort !== port) return null;
  return { host: facts.address, port: facts.port };
}

/** A listener added through the API, as the gateway takes it. */
export function listenerConfig(l: StoredListener): ListenerConfig {
  return {
    id: l.name, address: l.address, port: l.port, protocol: l.protocol,
    ...(l.defaultSite !== null ? { defaultSite: l.defaultSite } : {}),
    ...(l.protocol === 'https' && l.strictSni ? { strictSni: true } : {}),
  };
}

/**
 * Every https listener that is not `strictSni` answers a client that names no
 * certificate's name (no SNI, a bare IP) with the neutral certificate, whether
 * it came from the command line or the API.
 */
export function withNeutralDefault(listeners: readonly ListenerConfig[], neutral: CertificateConfig | null): ListenerConfig[] {
  if (neutral === null) return [...listeners];
  return listeners.map((l) => (l.protocol === 'https' && l.strictSni !== true && l.defaultCertificate === undefined ? { ...l, defaultCertificate: neutral.id } : l));
}

/**
 * A `tls-passthrough` listener hands raw streams to instances only, so static
 * and redirect sites (which answer HTTP) are kept to the other listeners. An
 * instance's site stays on every listener, served or not: on a passthrough
 * one its stream goes to the instance's address and the site's port (or is
 * closed while the instance is unavailable).
 */
export function keepHttpSitesOffPassthrough(sites: SiteRoute[], listeners: readonly ListenerConfig[]): void {
  const http = listeners.filter((l) => l.protocol !== 'tls-passthrough').map((l) => l.id);
  if (http.length === listeners.length) return;
  for (const site of sites) if (site.target.kind !== 'upstream' && site.target.kind !== 'unavailable') site.listeners = site.listeners?.filter((id) => http.includes(id)) ?? http;
}

/**
 * Keeps the table valid whatever changed underneath: a site bound to
 * listeners keeps only those that exist (one bound to none that exists is
 * served nowhere — never everywhere), and a listener's default site that is
 * not served on it is dropped (the neutral 404 instead of a refused update).
 */
export function dropDanglingReferences(sites: SiteRoute[], listeners: ListenerConfig[]): { sites: SiteRoute[]; listeners: ListenerConfig[] } {
  const ids = new Set(listeners.map((l) => l.id));
  const kept: SiteRoute[] = [];
  for (const site of sites) {
    if (site.listeners === undefined) {
      kept.push(site);
      continue;
    }
    const on = site.listeners.filter((id) => ids.has(id));
    if (on.length > 0) kept.push({ ...site, listeners: on });
  }
  const served = (l: ListenerConfig, name: string): boolean =>
    kept.some((s) => s.hostname === name && (s.listeners === undefined || s.listeners.includes(l.id)));
  const fixed = listeners.map((l) => {
    if (l.defaultSite === undefined || served(l, l.defaultSite)) return l;
    const { defaultSite: _gone, ...rest } = l;
    return rest;
  });
  return { sites: kept, listeners: fixed };
}

export class FrontDoor {
  #pending = false;
  #running: Promise<void> = Promise.resolve();
  #unsubscribe: (() => void) | undefined;
  /** The neutral default certificate, loaded (or made) at the first sync. */
  #neutral: CertificateConfig | null = null;

  constructor(
    private readonly gateway: Gateway,
    private readonly store: Store,
    /** The fixed listeners (`strata up --listen`); those added through the API come from the store. */
    readonly listeners: ListenerConfig[],
    private readonly dataDir: string,
    private readonly log: Logger,
    private readonly certificates?: { gatewayCertificates(): CertificateConfig[] },
    /** Sites that moved to another daemon with their instance and are forwarded there (`moves/forwards.ts`); a stored site of the same name wins. */
    private readonly forwards?: () => SiteRoute[],
  ) {}

  /** The whole configuration as the store has it now, without the listeners in `skip`. */
  config(skip: ReadonlySet<string> = new Set()): GatewayConfig {
    const tenants = new Map(this.store.listTenants().map((t) => [t.id, t]));
    const instances = new Map(this.store.listInstances().map((i) => [i.id, i]));
    const sites: SiteRoute[] = [];
    for (const site of this.store.listSites()) {
      const tenant = tenants.get(site.tenantId);
      if (!tenant) continue;
      const instance = site.instanceId !== null ? (instances.get(site.instanceId) ?? null) : null;
      sites.push(siteRoute(site, tenant, instance, this.dataDir));
    }
    const forwards = this.forwards?.() ?? [];
    const siteNames = new Set(forwards.length ? this.store.listSites().map((s) => s.hostname) : []);
    for (const f of forwards) if (!siteNames.has(f.hostname)) sites.push(f);
    const fromApi = this.store.listListeners().map(listenerConfig).filter((l) => !skip.has(l.id));
    const all = withNeutralDefault([...this.listeners, ...fromApi], this.#neutral);
    keepHttpSitesOffPassthrough(sites, all);
    const { sites: routed, listeners } = dropDanglingReferences(sites, all);
    const certificates = this.certificates?.gatewayCertificates() ?? [];
    if (this.#neutral !== null) certificates.push(this.#neutral);
    return { listeners, sites: routed, certificates };
  }

  /** Follows site and instance changes from the event bus. */
  watch(events: EventBus): void {
    mkdirSync(join(this.dataDir, 'docroots'), { recursive: true, mode: 0o755 });
    this.#unsubscribe = events.subscribe((e) => {
      const relevant = e.category === 'lifecycle' || (e.category === 'audit' && /^(site|tenant|instance|certificate|listener)\./.test(String(e.data.action)));
      if (relevant) this.schedule();
    });
  }

  /**
   * Coalesces bursts of changes into one update: changes in the same turn of the
   * event loop, or made while an update is in flight, go out together next.
   */
  schedule(): void {
    if (this.#pending) return;
    this.#pending = true;
    this.#running = this.#running.then(async () => {
      await new Promise<void>((resolve) => setImmediate(resolve));
      this.#pending = false;
      await this.sync();
    });
  }

  /** Resolves once the gateway serves what the store holds now. */
  async flush(): Promise<void> {
    this.schedule();
    await this.#running;
  }

  async sync(): Promise<void> {
    if (this.#neutral === null) {
      try {
        this.#neutral = await neutralCertificate(this.dataDir);
      } catch (err) {
        this.log.error({ err }, 'no neutral default certificate: https clients that send no known name are refused');
      }
    }
    // A stored listener that cannot bind (its port taken since) is left out rather than blocking every other change.
    const skip = new Set<string>();
    for (;;) {
      const config = this.config(skip);
      try {
        await this.gateway.update(config);
        return;
      } catch (err) {
        const id = (err as { details?: { listener?: unknown } }).details?.listener;
        const stored = typeof id === 'string' && !skip.has(id) && !this.listeners.some((l) => l.id === id);
        this.log.error({ err, ...(stored ? { skipped: id } : {}) }, 'gateway update failed');
        if (!stored) return;
        skip.add(id);
      }
    }
  }

  /**
   * Re-reads everything the gateway serves — listeners, sites, certificates
   * and their keys, the neutral certificate — from the store and the data dir,
   * for changes made behind the API's back (`strata up` on SIGHUP). Resolves
   * once the gateway serves it, with what it serves.
   */
  async reload(): Promise<{ listeners: number; sites: number; certificates: number }> {
    this.#neutral = null;
    await this.flush();
    const now = this.config();
    return { listeners: this.gateway.addresses().length, sites: now.sites.length, certificates: (now.certificates ?? []).length };
  }

  async close(): Promise<void> {
    this.#unsubscribe?.();
    await this.#running;
    await this.gateway.close();
  }
}
