/**
 * The route table: which site answers a request on a listener, given its
 * normalised Host. Exact names are one Map lookup (O(1) at any number of sites);
 * wildcards are tried from the longest suffix down, one Map lookup per label;
 * then the listener's default site. Compiled once per configuration and
 * swapped whole, so a request sees either the old table or the new one.
 */
import type { NormalisedHost } from './host.js';
import type { GatewayConfig, SiteRoute } from './types.js';

interface ListenerRoutes<S> {
  exact: Map<string, S>;
  /** Keyed by the suffix with its leading dot: '*.example.com' → '.example.com'. */
  wildcard: Map<string, S>;
  fallback: S | null;
}

export class RouteTable<S> {
  private constructor(private readonly byListener: Map<string, ListenerRoutes<S>>) {}

  /**
   * Builds the table from a validated configuration; `wrap` turns each site
   * into what lookups return (the worker attaches its limiters and counters).
   */
  static compile<S>(config: GatewayConfig, wrap: (route: SiteRoute) => S): RouteTable<S> {
    const byListener = new Map<string, ListenerRoutes<S>>();
    for (const l of config.listeners) byListener.set(l.id, { exact: new Map(), wildcard: new Map(), fallback: null });
    for (const route of config.sites) {
      const site = wrap(route);
      for (const id of route.listeners ?? config.listeners.map((l) => l.id)) {
        const routes = byListener.get(id);
        if (routes === undefined) continue;
        if (route.hostname.startsWith('*.')) routes.wildcard.set(route.hostname.slice(1), site);
        else routes.exact.set(route.hostname, site);
      }
    }
    for (const l of config.listeners) {
      if (l.defaultSite !== undefined) byListener.get(l.id)!.fallback = byListener.get(l.id)!.exact.get(l.defaultSite) ?? null;
    }
    return new RouteTable(byListener);
  }

  /** The site for `host` on listener `listenerId`, or null (the neutral 404). `host` null means no Host at all. */
  lookup(listenerId: string, host: NormalisedHost | null): S | null {
    const routes = this.byListener.get(listenerId);
    if (routes === undefined) return null;
    if (host !== null) {
      const exact = routes.exact.get(host.name);
      if (exact !== undefined) return exact;
      if (!host.isIp && routes.wildcard.size > 0) {
        const name = host.name;
        for (let dot = name.indexOf('.'); dot !== -1; dot = name.indexOf('.', dot + 1)) {
          const site = routes.wildcard.get(name.slice(dot));
          if (site !== undefined) return site;
        }
      }
    }
    return routes.fallback;
  }
}
