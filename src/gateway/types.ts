/**
 * The gateway's public configuration. The daemon translates store `Site`s into
 * `SiteRoute`s (instance → upstream address, static root → absolute path under
 * the tenant's docroot), so nothing here depends on the store.
 */

export type ListenerProtocol = 'http' | 'https' | 'tls-passthrough';

export interface ListenerConfig {
  /** Stable id; sites name listeners by it. */
  id: string;
  /** An IP literal: '127.0.0.1', '0.0.0.0', '::1', '::'. */
  address: string;
  /** 0 picks a free port once; `Gateway.addresses()` tells which. */
  port: number;
  protocol: ListenerProtocol;
  /**
   * Hostname of the site that answers requests whose Host matches no site on
   * this listener (bare IP, unknown names). Without one they get the neutral 404.
   */
  defaultSite?: string;
  /** `https` only: refuse handshakes without SNI, or naming no configured certificate. Default false. */
  strictSni?: boolean;
  /**
   * `https` only: id of a neutral certificate (one with `tenantId: null`) for
   * clients that send no SNI, or a name no certificate covers. Without one
   * those handshakes are refused.
   */
  defaultCertificate?: string;
}

export interface CertificateConfig {
  /** Stable id; listeners name their default certificate by it, updates replace by it. */
  id: string;
  /**
   * Normalised names it serves (SNI); may include '*.example.com'. One certificate per name.
   * Empty only for a neutral certificate that serves as listeners' default alone.
   */
  hostnames: string[];
  /** The certificate, then its chain, PEM. */
  certPem: string;
  /** Its private key, PEM. Never logged. */
  keyPem: string;
  /** The tenant it belongs to; null for the platform's own (neutral) certificates. */
  tenantId: string | null;
}

export type SiteTarget =
  /**
   * On `http`/`https` listeners: HTTP to host:port. On `tls-passthrough`
   * listeners: the raw TLS stream to host:port, preceded by a PROXY protocol
   * v2 header when `proxyProtocol: 'v2'` (allowed only on sites whose
   * listeners are all `tls-passthrough`).
   */
  | { kind: 'upstream'; host: string; port: number; proxyProtocol?: 'v2' }
  | { kind: 'static'; root: string }
  | { kind: 'redirect'; to: string; status: 301 | 302 | 307 | 308 }
  /**
   * A name that is held but not served right now: its instance is paused,
   * frozen, stopped, starting or being recovered (503 with `Retry-After:
   * retryAfter` seconds), or no longer exists (404, no `retryAfter`). The
   * route stays in the table so the name never falls through to a wildcard
   * or the listener's default site — another tenant's, possibly. Answered
   * with the neutral error page; on `tls-passthrough` listeners the stream
   * is closed without a byte.
   */
  | { kind: 'unavailable'; status: 404 | 503; retryAfter?: number };

export interface SiteLimits {
  /** Request bodies above this answer 413. Default: GatewayOptions.maxBodyBytes. */
  maxBodyBytes?: number;
  /** Sustained requests per second for the whole site (burst: one second's worth). */
  ratePerSecond?: number;
}

export interface SiteRoute {
  /** Normalised (lower case, punycode, no port, no trailing dot); may be '*.example.com'. */
  hostname: string;
  tenantId: string;
  /** Listener ids this site answers on; default all. */
  listeners?: string[];
  target: SiteTarget;
  limits?: SiteLimits;
}

export interface GatewayConfig {
  listeners: ListenerConfig[];
  sites: SiteRoute[];
  /** Certificates for `https` listeners, chosen by SNI. Default none. */
  certificates?: CertificateConfig[];
  /**
   * Client addresses (IP literals) of proxies in front of the gateway whose
   * incoming X-Forwarded-* and Forwarded headers are kept and appended to.
   * From anyone else those headers are replaced. Default none.
   */
  trustedProxies?: string[];
}

/** Start-time settings; the defaults suit a public front door. */
export interface GatewayOptions {
  /** Worker processes; default os.availableParallelism(). */
  workers?: number;
  /** Supervisor log (worker exits, restarts). */
  logger?: import('pino').Logger;
  /** JSON access log, one line per request, appended by every worker. Off when absent. */
  accessLog?: { path: string };
  /**
   * Where ACME challenge answers are written (by the daemon's ACME client):
   * `<dir>/<name>/http-01/<token>` is served at `/.well-known/acme-challenge/<token>`
   * for Host `<name>` on http listeners, `<dir>/<name>/tls-alpn-01.pem` (certificate
   * and key) answers ClientHellos offering only ALPN `acme-tls/1` on https listeners.
   * Off when absent.
   */
  acmeChallengeDir?: string;
  /** Time from a request's first byte to the end of its headers; default 20 s. */
  headersTimeoutMs?: number;
  /** Time from a request's first byte to the end of its body; default 60 s. */
  requestTimeoutMs?: number;
  /** Idle time between requests on a client connection; default 5 s. */
  keepAliveTimeoutMs?: number;
  /** Time for a TLS client to send its ClientHello and finish the handshake; default 10 s. */
  tlsHandshakeTimeoutMs?: number;
  /** `tls-passthrough`: a stream with no byte either way for this long is closed; default 10 min (nginx's proxy_timeout). */
  passthroughIdleTimeoutMs?: number;
  /** Largest request head in bytes; default 16 KiB. */
  maxHeaderSize?: number;
  /** Most header lines in a request; default 100. */
  maxHeadersCount?: number;
  /** Default largest request body for sites without their own limit; default 10 MiB. */
  maxBodyBytes?: number;
  /** Open connections per client IP across all workers (each worker enforces its share); default 256. */
  maxConnectionsPerIp?: number;
  /** HTTP/2: streams a client may have open at once on one connection (SETTINGS_MAX_CONCURRENT_STREAMS); default 128. */
  h2MaxConcurrentStreams?: number;
  /** Time to connect to an upstream; default 5 s (then 502). */
  upstreamConnectTimeoutMs?: number;
  /** Time from a request sent upstream to its response head; default 60 s (then 504). */
  upstreamResponseTimeoutMs?: number;
  /** Idle pooled upstream connections close after this; default 3 s (below common backend keep-alive timeouts). */
  upstreamIdleTimeoutMs?: number;
  /** Idle pooled connections kept per upstream address per worker; default 128. */
  upstreamMaxIdle?: number;
}

export interface GatewayAddress {
  id: string;
  address: string;
  port: number;
}

export interface Gateway {
  /** Applies a new configuration on every worker; resolves when all have swapped (atomic per worker). */
  update(config: GatewayConfig): Promise<void>;
  /** Stops listening, lets requests in flight finish (up to a short grace), stops the workers. */
  close(): Promise<void>;
  /** The listeners with their bound ports (port 0 resolved). */
  addresses(): GatewayAddress[];
  /** Per-site request, byte, status class and latency metrics, summed over the workers. */
  metrics(): Promise<import('prom-client').Registry>;
  /**
   * Every worker opens the access log's path anew (after it was renamed away
   * by rotation); resolves when all have, or are gone or stuck (2 s).
   */
  reopenAccessLog(): Promise<void>;
  /** Hears the workers' refusal counts (security.ts), in batches: the guard's gateway interceptor. */
  onSecurity(listener: ((counts: import('./security.js').SecurityCount[]) => void) | undefined): void;
}
