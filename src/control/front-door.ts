/**
 * Keeps the gateway's route table in step with the store: every site, with its
 * target resolved — an instance's site to the address its driver reports, a
 * static site to a directory under the tenant's own docroot area
 * (`DATA_DIR/docroots/<tenant>/…`). Recomputed as a whole on any change to
 * sites or instances (coalesced): 10,000 sites compile in milliseconds, and a
 * whole table is what the gateway swaps atomically.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Gateway, GatewayConfig, ListenerConfig, SiteRoute } from '../gateway/index.js';
import type { Store } from '../store/store.js';
import type { Instance, Site, Tenant } from '../store/types.js';
import type { EventBus } from './events.js';

/** Where a tenant's static sites live; `root` was checked at the API edge to stay inside it. */
export const tenantDocroot = (dataDir: string, tenant: string): string => join(dataDir, 'docroots', tenant);

/** A store site as the gateway routes it, or null while its instance has no address to send to. */
export function siteRoute(site: Site, tenant: Tenant, instance: Instance | null, dataDir: string): SiteRoute | null {
  const base = { hostname: site.hostname, tenantId: site.tenantId };
  switch (site.target.kind) {
    case 'static':
      return { ...base, target: { kind: 'static', root: join(tenantDocroot(dataDir, tenant.name), site.target.root) } };
    case 'redirect':
      return { ...base, target: { kind: 'redirect', to: site.target.to, status: site.target.status } };
    case 'instance': {
      if (!instance || instance.actualState !== 'running') return null;
      const upstream = upstreamOf(instance.info, site.target.port);
      return upstream ? { ...base, target: { kind: 'upstream', ...upstream } } : null;
    }
  }
}

/**
 * Where to reach `port` of an instance, from what its driver reports:
 * - `address` alone: the instance has its own network address (a container);
 *   the site's port is used there;
 * - `address` + `port`: the instance serves one port on the host's loopback (an
 *   isolate's listener, a VM's forwarded port); when `guestPort` is given too,
 *   only a site naming that guest port reaches it.
 */
export function upstreamOf(info: Record<string, unknown>, port: number): { host: string; port: number } | null {
  if (typeof info.address !== 'string') return null;
  if (typeof info.port !== 'number') return { host: info.address, port };
  if (typeof info.guestPort === 'number' && info.guestPort !== port) return null;
  return { host: info.address, port: info.port };
}

export class FrontDoor {
  #pending = false;
  #running: Promise<void> = Promise.resolve();
  #unsubscribe: (() => void) | undefined;

  constructor(
    private readonly gateway: Gateway,
    private readonly store: Store,
    private readonly listeners: ListenerConfig[],
    private readonly dataDir: string,
    private readonly log: Logger,
  ) {}

  /** The whole configuration as the store has it now. */
  config(): GatewayConfig {
    const tenants = new Map(this.store.listTenants().map((t) => [t.id, t]));
    const instances = new Map(this.store.listInstances().map((i) => [`${i.tenantId}/${i.name}`, i]));
    const sites: SiteRoute[] = [];
    for (const site of this.store.listSites()) {
      const tenant = tenants.get(site.tenantId);
      if (!tenant) continue;
      const instance = site.target.kind === 'instance' ? (instances.get(`${site.tenantId}/${site.target.instance}`) ?? null) : null;
      const route = siteRoute(site, tenant, instance, this.dataDir);
      if (route) sites.push(route);
    }
    return { listeners: this.listeners, sites };
  }

  /** Follows site and instance changes from the event bus. */
  watch(events: EventBus): void {
    mkdirSync(join(this.dataDir, 'docroots'), { recursive: true, mode: 0o755 });
    this.#unsubscribe = events.subscribe((e) => {
      const relevant = e.category === 'lifecycle' || (e.category === 'audit' && /^(site|tenant|instance)\./.test(String(e.data.action)));
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

  async sync(): Promise<void> {
    try {
      await this.gateway.update(this.config());
    } catch (err) {
      this.log.error({ err }, 'gateway update failed');
    }
  }

  async close(): Promise<void> {
    this.#unsubscribe?.();
    await this.#running;
    await this.gateway.close();
  }
}
