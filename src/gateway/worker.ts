/**
 * A gateway worker process (one per core). It accepts on the listening
 * sockets the supervisor shares with every worker, serves them with the
 * current route table, and swaps that table in one assignment when a new
 * configuration arrives, so each request sees one table or the other.
 *
 * Per worker: the route table, the connections and their deadlines (checked
 * by one sweep timer), upstream pools, per-site counters and limiters.
 */
import { Server, type Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import { CertificateStore, answerAcmeTlsAlpn, type CertificateEntry } from './certificates.js';
import { MAX_HELLO_BYTES, parseClientHello } from './client-hello.js';
import { AccessLog } from './access-log.js';
import type { ResolvedOptions } from './config.js';
import { ClientConnection, type ListenerInfo } from './connection.js';
import { H2Connection } from './h2.js';
import type { WorkerContext } from './context.js';
import { assertParserShape } from './http-parser.js';
import { assertRawTcpShape } from './raw-tcp.js';
import type { FromWorker, ToWorker } from './ipc.js';
import { ConnectionCounter, RateLimiter } from './limits.js';
import { PassthroughStreams } from './passthrough.js';
import { SecurityTally } from './security.js';
import { SiteStats, UNROUTED, statsToJson } from './metrics.js';
import { RouteTable, sameRoute, siteKey, type RouteEntry } from './routes.js';
import type { Site } from './site.js';
import { StaticFiles } from './static.js';
import type { CertificateConfig, GatewayConfig, ListenerConfig, SiteRoute } from './types.js';
import { UpstreamPool } from './upstream.js';

interface Listening {
  info: ListenerInfo;
  server: Server;
  connections: Set<ClientConnection | H2Connection>;
}

/** How often at most the guard's counters go to the supervisor. */
const SECURITY_FLUSH_MS = 500;

const send = (message: FromWorker): void => {
  process.send?.(message);
};

class Worker {
  private readonly ctx: WorkerContext;
  private readonly handles = new Map<string, object>();
  private readonly listening = new Map<string, Listening>();
  private readonly connections = new Set<ClientConnection | H2Connection>();
  private readonly pools = new Map<string, UpstreamPool>();
  private sites = new Map<string, RouteEntry<Site>>();
  private certificates = CertificateStore.empty();
  private readonly sweeper: NodeJS.Timeout;
  private readonly passthrough: PassthroughStreams;
  private securitySentAt = 0;

  constructor(private readonly opts: ResolvedOptions) {
    this.ctx = {
      routes: RouteTable.compile<Site>([], []),
      opts,
      trustedProxies: new Set(),
      accessLog: opts.accessLogPath === null ? null : new AccessLog(opts.accessLogPath),
      unrouted: new SiteStats(UNROUTED, UNROUTED),
      connectionsPerIp: new ConnectionCounter(Math.ceil(opts.maxConnectionsPerIp / opts.workers)),
      staticFiles: new StaticFiles(),
      now: Date.now(),
      security: new SecurityTally(),
    };
    this.passthrough = new PassthroughStreams(this.ctx);
    const shortest = Math.min(opts.headersTimeoutMs, opts.requestTimeoutMs, opts.keepAliveTimeoutMs,
      opts.upstreamConnectTimeoutMs, opts.upstreamResponseTimeoutMs, opts.upstreamIdleTimeoutMs);
    this.sweeper = setInterval(() => this.sweep(), Math.min(1000, Math.max(25, shortest / 4)));
  }

  /** Advances the clock and fires every deadline that has passed. */
  private sweep(): void {
    const now = (this.ctx.now = Date.now());
    // The guard's counters travel with the sweep, at most twice a second, never per request.
    if (this.ctx.security.size > 0 && now - this.securitySentAt >= SECURITY_FLUSH_MS) {
      this.securitySentAt = now;
      send({ type: 'security', counts: this.ctx.security.take() });
    }
    for (const c of this.connections) c.checkTimeouts(now);
    for (const pool of this.pools.values()) pool.sweep(now);
    this.passthrough.sweep(now);
  }

  /** A socket for a listener; one replacing the socket of a listener being served stops accepting on the old one. */
  storeHandle(listener: string, handle: object): void {
    const old = this.listening.get(listener);
    if (old !== undefined) {
      this.stopListening(old);
      this.listening.delete(listener);
    }
    this.handles.set(listener, handle);
  }

  private stopListening(l: Listening): void {
    l.server.close();
    for (const c of l.connections) c.drain();
  }

  /** A whole configuration: sites unchanged since the last one keep their counters and limiters. */
  async apply(version: number, config: GatewayConfig): Promise<void> {
    this.ctx.now = Date.now();
    const next = new Map<string, RouteEntry<Site>>();
    for (const route of config.sites) {
      const key = siteKey(route);
      next.set(key, { route, site: this.siteFor(route, this.sites.get(key)) });
    }
    const routes = RouteTable.compile(config.listeners, next.values());
    const certificates = CertificateStore.build(config.certificates ?? [], this.opts.ticketSecret, this.certificates);
    // The swap: from here every new request routes with the new table, every new handshake uses the new certificates.
    this.ctx.routes = routes;
    this.certificates = certificates;
    for (const l of config.listeners) {
      const live = this.listening.get(l.id);
      if (live !== undefined) Object.assign(live.info, tlsSettings(l));
    }
    this.ctx.trustedProxies = new Set(config.trustedProxies ?? []);
    this.sites = next;
    this.retireUnusedPools();
    const failed = await this.reconcileListeners(config);
    send({ type: 'applied', version, failed });
  }

  /** Only the sites that changed: the affected listeners' maps are copied and patched, then swapped. */
  applyChanges(
    version: number, upsert: SiteRoute[], remove: string[], trustedProxies: string[],
    certificates: { upsert: CertificateConfig[]; remove: string[] } | null,
  ): void {
    this.ctx.now = Date.now();
    const removed: SiteRoute[] = [];
    const added: Array<RouteEntry<Site>> = [];
    for (const key of remove) {
      const old = this.sites.get(key);
      if (old === undefined) continue;
      removed.push(old.route);
      this.sites.delete(key);
    }
    for (const route of upsert) {
      const key = siteKey(route);
      const old = this.sites.get(key);
      if (old !== undefined) removed.push(old.route);
      const entry = { route, site: this.siteFor(route, old) };
      this.sites.set(key, entry);
      added.push(entry);
    }
    const certs = certificates === null ? this.certificates
      : this.certificates.withChanges(certificates.upsert, certificates.remove, this.opts.ticketSecret);
    this.ctx.routes = this.ctx.routes.withChanges(removed, added);
    this.certificates = certs;
    this.ctx.trustedProxies = new Set(trustedProxies);
    this.retireUnusedPools();
    send({ type: 'applied', version, failed: [] });
  }

  /** The worker's view of a route; an unchanged route keeps its Site, a changed one keeps its counters. */
  private siteFor(route: SiteRoute, previous: RouteEntry<Site> | undefined): Site {
    if (previous !== undefined && sameRoute(previous.route, route)) return previous.site;
    const rate = route.limits?.ratePerSecond;
    const share = rate === undefined ? undefined : rate / this.opts.workers;
    const oldLimiter = previous?.site.limiter ?? null;
    return {
      hostname: route.hostname,
      tenantId: route.tenantId,
      target: route.target,
      maxBodyBytes: route.limits?.maxBodyBytes ?? this.opts.maxBodyBytes,
      limiter: share === undefined ? null
        : oldLimiter !== null && previous?.route.limits?.ratePerSecond === rate ? oldLimiter : new RateLimiter(share, performance.now()),
      stats: previous !== undefined && previous.route.tenantId === route.tenantId ? previous.site.stats : new SiteStats(route.hostname, route.tenantId),
      pool: route.target.kind === 'upstream' ? this.pool(route.target.host, route.target.port) : null,
    };
  }

  private retireUnusedPools(): void {
    const used = new Set<UpstreamPool>();
    for (const { site } of this.sites.values()) if (site.pool !== null) used.add(site.pool);
    for (const [key, pool] of this.pools) {
      if (!used.has(pool)) {
        pool.retire();
        this.pools.delete(key);
      }
    }
  }

  private pool(host: string, port: number): UpstreamPool {
    const key = `${host}:${port}`;
    let pool = this.pools.get(key);
    if (pool === undefined) {
      pool = new UpstreamPool(host, port, {
        connectMs: this.opts.upstreamConnectTimeoutMs,
        responseMs: this.opts.upstreamResponseTimeoutMs,
        idleMs: this.opts.upstreamIdleTimeoutMs,
        maxIdle: this.opts.upstreamMaxIdle,
      });
      this.pools.set(key, pool);
    }
    return pool;
  }

  /** Stops listeners no longer wanted, starts new ones; resolves with those that could not listen. */
  private async reconcileListeners(config: GatewayConfig): Promise<Array<{ listener: string; error: string }>> {
    const wanted = new Map(config.listeners.map((l) => [l.id, l]));
    for (const [id, l] of this.listening) {
      if (!wanted.has(id)) {
        this.stopListening(l);
        this.listening.delete(id);
        this.handles.delete(id);
      }
    }
    const starting: Array<Promise<{ listener: string; error: string } | null>> = [];
    for (const [id, l] of wanted) {
      if (this.listening.has(id)) continue;
      const handle = this.handles.get(id);
      if (handle === undefined) {
        send({ type: 'warning', message: 'no socket for listener', details: { listener: id } });
        continue;
      }
      const info: ListenerInfo = { id, protocol: l.protocol === 'https' ? 'https' : 'http', ...tlsSettings(l) };
      const entry: Listening = { info, server: new Server({ allowHalfOpen: true, noDelay: true }), connections: new Set() };
      // Passthrough streams outlive their listener's removal (they end on their own or idle out).
      entry.server.on('connection', l.protocol === 'tls-passthrough'
        ? (socket: Socket) => this.passthrough.accept(id, socket, unmapIpv4(socket.remoteAddress ?? ''))
        : info.protocol === 'https'
          ? (socket: Socket) => this.acceptTls(entry, socket)
          : (socket: Socket) => this.accept(entry, socket));
      starting.push(new Promise((resolve) => {
        entry.server.once('listening', () => resolve(null));
        entry.server.once('error', (err: NodeJS.ErrnoException) => {
          this.listening.delete(id);
          this.handles.delete(id);
          resolve({ listener: id, error: err.code ?? String(err) });
        });
      }));
      entry.server.listen(handle, 1024);
      this.listening.set(id, entry);
    }
    return (await Promise.all(starting)).filter((f) => f !== null);
  }

  private accept(entry: Listening, socket: Socket): void {
    const ip = unmapIpv4(socket.remoteAddress ?? '');
    if (!this.ctx.connectionsPerIp.acquire(ip)) {
      this.ctx.security.note('conn_limit', ip);
      socket.destroy();
      return;
    }
    const closed = (c: ClientConnection | H2Connection): void => {
      this.connections.delete(c);
      entry.connections.delete(c);
      this.ctx.connectionsPerIp.release(ip);
    };
    const conn = new ClientConnection(this.ctx, entry.info, socket, ip, closed, null, () => {
      // h2c with prior knowledge: the connection began with the HTTP/2 preface.
      this.connections.delete(conn);
      entry.connections.delete(conn);
      const h2 = new H2Connection(this.ctx, entry.info, socket, ip, closed, null);
      this.connections.add(h2);
      entry.connections.add(h2);
    });
    this.connections.add(conn);
    entry.connections.add(conn);
  }

  /**
   * A TLS client: read its ClientHello (bounded in size and time), pick the
   * certificate by SNI — exact name, longest wildcard, else the listener's
   * neutral default unless strict — and only then start TLS with that
   * certificate's own context, so session tickets and ids stay per certificate.
   * Requests then take the HTTP path, knowing the SNI name for the 421 check.
   */
  private acceptTls(entry: Listening, socket: Socket): void {
    const ip = unmapIpv4(socket.remoteAddress ?? '');
    if (!this.ctx.connectionsPerIp.acquire(ip)) {
      this.ctx.security.note('conn_limit', ip);
      socket.destroy();
      return;
    }
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      this.ctx.connectionsPerIp.release(ip);
    };
    socket.on('close', release);
    socket.on('error', () => {});
    const timer = setTimeout(() => socket.destroy(), this.opts.tlsHandshakeTimeoutMs);
    timer.unref();
    let buffered: Buffer = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      const hello = parseClientHello(buffered);
      if (hello.kind === 'partial' && buffered.length <= MAX_HELLO_BYTES + 1024) return;
      socket.removeListener('data', onData);
      socket.pause();
      if (hello.kind === 'hello' && hello.acmeTls === true) {
        answerAcmeTlsAlpn(this.opts.acmeChallengeDir, socket, hello.sni, buffered, () => clearTimeout(timer));
        return;
      }
      const cert = hello.kind === 'hello' ? this.certificateFor(entry.info, hello.sni) : null;
      if (cert === null) {
        clearTimeout(timer);
        socket.destroy();
        return;
      }
      socket.unshift(buffered);
      this.startTls(entry, socket, ip, hello.kind === 'hello' ? hello.sni : null, cert, timer, release);
    };
    socket.on('data', onData);
  }

  private certificateFor(info: ListenerInfo, sni: string | null): CertificateEntry | null {
    const named = sni === null ? null : this.certificates.lookup(sni);
    if (named !== null) return named;
    if (info.strictSni || info.defaultCertificate === undefined) return null;
    return this.certificates.byId.get(info.defaultCertificate) ?? null;
  }

  private startTls(
    entry: Listening, socket: Socket, ip: string, sni: string | null, cert: CertificateEntry,
    timer: NodeJS.Timeout, release: () => void,
  ): void {
    let tls: TLSSocket;
    try {
      tls = new TLSSocket(socket, {
        isServer: true, secureContext: cert.secureContext(), ALPNProtocols: ['h2', 'http/1.1'], requestCert: false, rejectUnauthorized: false,
      });
    } catch {
      clearTimeout(timer);
      send({ type: 'warning', message: 'certificate cannot be loaded', details: { certificate: cert.config.id } });
      socket.destroy();
      return;
    }
    tls.on('error', () => tls.destroy());
    tls.on('close', release);
    tls.once('secure', () => {
      clearTimeout(timer);
      if (this.listening.get(entry.info.id) !== entry) { // the listener went away during the handshake
        tls.destroy();
        return;
      }
      const closed = (c: ClientConnection | H2Connection): void => {
        this.connections.delete(c);
        entry.connections.delete(c);
        release();
      };
      const conn = tls.alpnProtocol === 'h2'
        ? new H2Connection(this.ctx, entry.info, tls, ip, closed, sni)
        : new ClientConnection(this.ctx, entry.info, tls, ip, closed, sni);
      this.connections.add(conn);
      entry.connections.add(conn);
    });
  }

  metrics(request: number): void {
    const stats = new Set([this.ctx.unrouted]);
    for (const { site } of this.sites.values()) stats.add(site.stats);
    const active = { name: 'strata_gateway_connections_active', help: 'Client connections open now (HTTP/1.1, HTTP/2, TLS passthrough), summed over the workers.', type: 'gauge' as const, aggregator: 'sum' as const, values: [{ value: this.connections.size + this.passthrough.size, labels: {} }] };
    send({ type: 'metrics', request, metrics: [...statsToJson(stats), ...this.passthrough.metrics(stats), active] });
  }

  async reopenLog(request: number): Promise<void> {
    await this.ctx.accessLog?.reopen();
    send({ type: 'reopened', request });
  }

  /** Stops accepting, lets responses in flight finish for up to `graceMs`, then exits. */
  async close(graceMs: number): Promise<void> {
    for (const l of this.listening.values()) l.server.close();
    for (const c of this.connections) c.drain();
    const deadline = Date.now() + graceMs;
    while (this.connections.size + this.passthrough.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    for (const c of this.connections) c.destroy();
    await this.passthrough.destroyAll();
    for (const pool of this.pools.values()) pool.retire();
    clearInterval(this.sweeper);
    await this.ctx.accessLog?.close();
    process.exit(0);
  }
}

/** The TLS settings of a listener, as connections read them. */
function tlsSettings(l: ListenerConfig): Pick<ListenerInfo, 'strictSni' | 'defaultCertificate'> {
  return { strictSni: l.strictSni === true, defaultCertificate: l.defaultCertificate };
}

/** '::ffff:1.2.3.4' (an IPv4 client on a dual-stack listener) → '1.2.3.4'. */
function unmapIpv4(ip: string): string {
  return ip.startsWith('::ffff:') && ip.includes('.') ? ip.slice(7) : ip;
}

assertParserShape();
assertRawTcpShape();
let worker: Worker | null = null;
process.on('message', (message: ToWorker, handle: unknown) => {
  switch (message.type) {
    case 'init':
      worker ??= new Worker(message.opts);
      break;
    case 'handle':
      worker?.storeHandle(message.listener, handle as object);
      break;
    case 'config':
      void worker?.apply(message.version, message.config);
      break;
    case 'sites':
      worker?.applyChanges(message.version, message.upsert, message.remove, message.trustedProxies, message.certificates);
      break;
    case 'metrics':
      worker?.metrics(message.request);
      break;
    case 'reopen-log':
      void worker?.reopenLog(message.request);
      break;
    case 'close':
      void worker?.close(message.graceMs);
      break;
  }
});
// The supervisor is gone: nobody can reconfigure or stop this worker any more.
process.on('disconnect', () => process.exit(0));
