/**
 * Checks a gateway configuration before any worker sees it, so a bad update
 * is refused whole and the running table stays. The daemon validates API input
 * with zod at the edge; this guards the gateway's own invariants (names
 * normalised, one site per name per listener, references that resolve).
 */
import { X509Certificate, createPrivateKey, randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import { isAbsolute } from 'node:path';
import { StrataError } from '../core/errors.js';
import { normaliseSiteHostname } from './host.js';
import type { GatewayConfig, GatewayOptions } from './types.js';

const invalid = (message: string, details: Record<string, unknown>): StrataError =>
  new StrataError('STRATA_ERR_CONFIG', `gateway: ${message}`, details);

/** Listener protocols this build serves. */
const SUPPORTED_PROTOCOLS = new Set(['http', 'https', 'tls-passthrough']);

export function validateConfig(config: GatewayConfig): void {
  const listenerIds = new Set<string>();
  const bound = new Set<string>();
  for (const l of config.listeners) {
    if (!l.id || listenerIds.has(l.id)) throw invalid('listener ids must be unique and non-empty', { listener: l.id });
    listenerIds.add(l.id);
    if (isIP(l.address) === 0) throw invalid('listener address must be an IP literal', { listener: l.id, address: l.address });
    if (!Number.isInteger(l.port) || l.port < 0 || l.port > 65535) throw invalid('listener port out of range', { listener: l.id, port: l.port });
    if (!SUPPORTED_PROTOCOLS.has(l.protocol)) throw invalid(`listener protocol '${l.protocol}' is not supported yet`, { listener: l.id });
    if (l.protocol !== 'https' && (l.strictSni !== undefined || l.defaultCertificate !== undefined)) {
      throw invalid('strictSni and defaultCertificate apply to https listeners only', { listener: l.id });
    }
    if (l.strictSni !== undefined && typeof l.strictSni !== 'boolean') throw invalid('strictSni must be a boolean', { listener: l.id });
    const where = `${l.address}|${l.port}`;
    if (l.port !== 0 && bound.has(where)) throw invalid('two listeners on one address and port', { listener: l.id });
    bound.add(where);
  }

  const namesPerListener = new Map<string, Set<string>>([...listenerIds].map((id) => [id, new Set<string>()]));
  const passthrough = new Set(config.listeners.filter((l) => l.protocol === 'tls-passthrough').map((l) => l.id));
  for (const site of config.sites) {
    const details = { hostname: site.hostname, tenant: site.tenantId };
    if (normaliseSiteHostname(site.hostname) !== site.hostname) throw invalid('site hostname is not normalised', details);
    if (!site.tenantId) throw invalid('site has no tenant', details);
    for (const id of site.listeners ?? listenerIds) {
      const names = namesPerListener.get(id);
      if (names === undefined) throw invalid(`site names unknown listener '${id}'`, details);
      if (names.has(site.hostname)) throw invalid(`two sites named '${site.hostname}' on listener '${id}'`, details);
      names.add(site.hostname);
    }
    const t = site.target;
    checkPassthroughSite(site, passthrough, listenerIds);
    if (t.kind === 'upstream') {
      if (!t.host || !Number.isInteger(t.port) || t.port < 1 || t.port > 65535) throw invalid('upstream needs a host and a port', details);
    } else if (t.kind === 'static') {
      if (!isAbsolute(t.root)) throw invalid('static root must be an absolute path', details);
    } else if (t.kind === 'redirect') {
      if (![301, 302, 307, 308].includes(t.status)) throw invalid('redirect status must be 301, 302, 307 or 308', details);
      let url: URL;
      try {
        url = new URL(t.to);
      } catch {
        throw invalid('redirect target must be an absolute http(s) URL', details);
      }
      if (url.protocol !== 'http:' && url.protocol !== 'https:') throw invalid('redirect target must be an absolute http(s) URL', details);
    } else if (t.kind === 'unavailable') {
      if (t.status !== 404 && t.status !== 503) throw invalid('an unavailable site answers 404 or 503', details);
      if (t.retryAfter !== undefined && !(Number.isSafeInteger(t.retryAfter) && t.retryAfter >= 0 && t.status === 503)) {
        throw invalid('retryAfter is a whole number of seconds, on a 503 only', details);
      }
    } else {
      throw invalid('unknown target kind', details);
    }
    const limits = site.limits;
    if (limits?.maxBodyBytes !== undefined && !(Number.isSafeInteger(limits.maxBodyBytes) && limits.maxBodyBytes >= 0)) {
      throw invalid('maxBodyBytes must be a non-negative integer', details);
    }
    if (limits?.ratePerSecond !== undefined && !(limits.ratePerSecond > 0)) throw invalid('ratePerSecond must be positive', details);
  }

  const certificates = validateCertificates(config);
  for (const l of config.listeners) {
    if (l.defaultCertificate !== undefined) {
      const c = certificates.get(l.defaultCertificate);
      if (c === undefined) throw invalid(`default certificate '${l.defaultCertificate}' is not configured`, { listener: l.id });
      // The answer to anyone who names no site (scanners by IP) must not reveal which tenants are hosted here.
      if (c !== null) throw invalid('a default certificate must be neutral (tenantId null)', { listener: l.id, certificate: l.defaultCertificate });
    }
    if (l.defaultSite !== undefined && !namesPerListener.get(l.id)!.has(l.defaultSite)) {
      throw invalid(`default site '${l.defaultSite}' is not a site on listener '${l.id}'`, { listener: l.id });
    }
  }
  for (const ip of config.trustedProxies ?? []) {
    if (isIP(ip) === 0) throw invalid('trusted proxies must be IP literals', { proxy: ip });
  }
}

/**
 * A `tls-passthrough` listener can only hand a stream to an upstream, or close
 * it for a site that is unavailable (there is no HTTP to answer from a docroot
 * or with a redirect), and the PROXY header
 * only exists on passthrough streams (a pooled HTTP connection carries many
 * clients), so a site asking for it must name passthrough listeners only.
 */
function checkPassthroughSite(site: GatewayConfig['sites'][number], passthrough: Set<string>, all: Set<string>): void {
  const details = { hostname: site.hostname, tenant: site.tenantId };
  const on = site.listeners ?? [...all];
  // An unavailable site stands for an instance's, which passthrough listeners carry too.
  if (site.target.kind !== 'upstream' && site.target.kind !== 'unavailable' && on.some((id) => passthrough.has(id))) {
    throw invalid(`a ${site.target.kind} site cannot be on a tls-passthrough listener (give it listeners)`, details);
  }
  if (site.target.kind === 'upstream' && site.target.proxyProtocol !== undefined) {
    if (site.target.proxyProtocol !== 'v2') throw invalid("proxyProtocol must be 'v2'", details);
    if (site.listeners === undefined || !site.listeners.every((id) => passthrough.has(id))) {
      throw invalid('proxyProtocol needs a site whose listeners are all tls-passthrough', details);
    }
  }
}

/**
 * Ids unique, names normalised and claimed by one certificate each, PEM that
 * loads and a key that matches its certificate. Error details name the
 * certificate by id only: a key never reaches a message or a log.
 * Returns each certificate's tenant by id.
 */
function validateCertificates(config: GatewayConfig): Map<string, string | null> {
  const tenants = new Map<string, string | null>();
  const names = new Set<string>();
  for (const c of config.certificates ?? []) {
    if (typeof c.id !== 'string' || c.id === '' || tenants.has(c.id)) throw invalid('certificate ids must be unique and non-empty', { certificate: c.id });
    const details = { certificate: c.id };
    if (c.tenantId !== null && (typeof c.tenantId !== 'string' || c.tenantId === '')) throw invalid('certificate tenantId must be a tenant id or null', details);
    // A neutral certificate may have no names: it is then only ever a listener's default, never chosen by SNI.
    if (!Array.isArray(c.hostnames) || (c.hostnames.length === 0 && c.tenantId !== null)) throw invalid('a tenant\'s certificate needs at least one hostname', details);
    for (const name of c.hostnames) {
      if (typeof name !== 'string' || normaliseSiteHostname(name) !== name) throw invalid('certificate hostname is not normalised', { ...details, hostname: name });
      if (names.has(name)) throw invalid(`two certificates for '${name}'`, { ...details, hostname: name });
      names.add(name);
    }
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(c.certPem);
    } catch {
      throw invalid('certificate PEM does not load', details);
    }
    let matches: boolean;
    try {
      matches = cert.checkPrivateKey(createPrivateKey(c.keyPem));
    } catch {
      throw invalid('certificate key PEM does not load', details);
    }
    if (!matches) throw invalid('certificate key does not match the certificate', details);
    tenants.set(c.id, c.tenantId);
  }
  return tenants;
}

/** Start-time options with their defaults filled in (see GatewayOptions for what each means). */
export type ResolvedOptions = Required<Omit<GatewayOptions, 'logger' | 'accessLog' | 'workers' | 'acmeChallengeDir'>> & {
  accessLogPath: string | null;
  acmeChallengeDir: string | null;
  workers: number;
  /** Hex; session ticket keys are derived from it per certificate (certificates.ts). */
  ticketSecret: string;
};

export function resolveOptions(opts: GatewayOptions, workers: number): ResolvedOptions {
  const positive = (name: keyof GatewayOptions, value: number | undefined, fallback: number): number => {
    const v = value ?? fallback;
    if (!(Number.isFinite(v) && v > 0)) throw invalid(`option ${name} must be positive`, { [name]: v });
    return v;
  };
  return {
    workers,
    accessLogPath: opts.accessLog?.path ?? null,
    acmeChallengeDir: opts.acmeChallengeDir ?? null,
    ticketSecret: randomBytes(32).toString('hex'),
    tlsHandshakeTimeoutMs: positive('tlsHandshakeTimeoutMs', opts.tlsHandshakeTimeoutMs, 10_000),
    passthroughIdleTimeoutMs: positive('passthroughIdleTimeoutMs', opts.passthroughIdleTimeoutMs, 600_000),
    headersTimeoutMs: positive('headersTimeoutMs', opts.headersTimeoutMs, 20_000),
    requestTimeoutMs: positive('requestTimeoutMs', opts.requestTimeoutMs, 60_000),
    keepAliveTimeoutMs: positive('keepAliveTimeoutMs', opts.keepAliveTimeoutMs, 5_000),
    maxHeaderSize: positive('maxHeaderSize', opts.maxHeaderSize, 16 * 1024),
    maxHeadersCount: positive('maxHeadersCount', opts.maxHeadersCount, 100),
    maxBodyBytes: positive('maxBodyBytes', opts.maxBodyBytes, 10 * 1024 * 1024),
    maxConnectionsPerIp: positive('maxConnectionsPerIp', opts.maxConnectionsPerIp, 256),
    h2MaxConcurrentStreams: positive('h2MaxConcurrentStreams', opts.h2MaxConcurrentStreams, 128),
    upstreamConnectTimeoutMs: positive('upstreamConnectTimeoutMs', opts.upstreamConnectTimeoutMs, 5_000),
    upstreamResponseTimeoutMs: positive('upstreamResponseTimeoutMs', opts.upstreamResponseTimeoutMs, 60_000),
    upstreamIdleTimeoutMs: positive('upstreamIdleTimeoutMs', opts.upstreamIdleTimeoutMs, 3_000),
    upstreamMaxIdle: positive('upstreamMaxIdle', opts.upstreamMaxIdle, 128),
  };
}
