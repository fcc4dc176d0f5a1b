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
import { AccessLog } from './access-log.js';
import type { ResolvedOptions } from './config.js';
import { ClientConnection, type ListenerInfo } from './connection.js';
import type { WorkerContext } from './context.js';
import { assertParserShape } from './http-parser.js';
import type { FromWorker, ToWorker } from './ipc.js';
import { ConnectionCounter, RateLimiter } from './limits.js';
import { SiteStats, UNROUTED, statsToJson } from './metrics.js';
import { RouteTable } from './routes.js';
import type { Site } from './site.js';
import { StaticFiles } from './static.js';
import type { GatewayConfig, SiteRoute } from './types.js';
import { UpstreamPool } from './upstream.js';

interface Listening {
  info: ListenerInfo;
  server: Server;
  connections: Set<ClientConnection>;
}

const send = (message: FromWorker): void => {
  process.send?.(message);
};

class Worker {
  private readonly ctx: WorkerContext;
  private readonly handles = new Map<string, object>();
  private readonly listening = new Map<string, Listening>();
  private readonly connections = new Set<ClientConnection>();
  private readonly pools = new Map<string, UpstreamPool>();
  private readonly stats = new Map<string, SiteStats>();
  private readonly limiters = new Map<string, { rate: number; limiter: RateLimiter }>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(private readonly opts: ResolvedOptions) {
    this.ctx = {
      routes: RouteTable.compile<Site>({ listeners: [], sites: [] }, () => { throw new Error('unreachable'); }),
      opts,
      trustedProxies: new Set(),
      accessLog: opts.accessLogPath === null ? null : new AccessLog(opts.accessLogPath),
      unrouted: new SiteStats(UNROUTED, UNROUTED),
      connectionsPerIp: new ConnectionCounter(Math.ceil(opts.maxConnectionsPerIp / opts.workers)),
      staticFiles: new StaticFiles(),
      now: Date.now(),
    };
    const shortest = Math.min(opts.headersTimeoutMs, opts.requestTimeoutMs, opts.keepAliveTimeoutMs,
      opts.upstreamConnectTimeoutMs, opts.upstreamResponseTimeoutMs, opts.upstreamIdleTimeoutMs);
    this.sweeper = setInterval(() => this.sweep(), Math.min(1000, Math.max(25, shortest / 4)));
  }

  /** Advances the clock and fires every deadline that has passed. */
  private sweep(): void {
    const now = (this.ctx.now = Date.now());
    for (const c of this.connections) c.checkTimeouts(now);
    for (const pool of this.pools.values()) pool.sweep(now);
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

  apply(version: number, config: GatewayConfig): void {
    this.ctx.now = Date.now();
    const liveSites = new Set<string>();
    const livePools = new Set<string>();
    const routes = RouteTable.compile<Site>(config, (route) => {
      const key = `${route.tenantId}\0${route.hostname}`;
      liveSites.add(key);
      const pool = route.target.kind === 'upstream' ? this.pool(route.target.host, route.target.port) : null;
      if (pool !== null) livePools.add(`${pool.host}:${pool.port}`);
      return {
        hostname: route.hostname,
        tenantId: route.tenantId,
        target: route.target,
        maxBodyBytes: route.limits?.maxBodyBytes ?? this.opts.maxBodyBytes,
        limiter: this.limiter(key, route),
        stats: this.siteStats(key, route),
        pool,
      };
    });
    // The swap: from here every new request routes with the new table.
    this.ctx.routes = routes;
    this.ctx.trustedProxies = new Set(config.trustedProxies ?? []);

    for (const key of [...this.stats.keys()]) if (!liveSites.has(key)) this.stats.delete(key);
    for (const key of [...this.limiters.keys()]) if (!liveSites.has(key)) this.limiters.delete(key);
    for (const [key, pool] of this.pools) {
      if (!livePools.has(key)) {
        pool.retire();
        this.pools.delete(key);
      }
    }
    this.reconcileListeners(config);
    send({ type: 'applied', version });
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

  private limiter(key: string, route: SiteRoute): RateLimiter | null {
    const rate = route.limits?.ratePerSecond;
    if (rate === undefined) return null;
    const share = rate / this.opts.workers;
    const kept = this.limiters.get(key);
    if (kept !== undefined && kept.rate === share) return kept.limiter;
    const limiter = new RateLimiter(share, performance.now());
    this.limiters.set(key, { rate: share, limiter });
    return limiter;
  }

  private siteStats(key: string, route: SiteRoute): SiteStats {
    let stats = this.stats.get(key);
    if (stats === undefined) {
      stats = new SiteStats(route.hostname, route.tenantId);
      this.stats.set(key, stats);
    }
    return stats;
  }

  private reconcileListeners(config: GatewayConfig): void {
    const wanted = new Map(config.listeners.map((l) => [l.id, l]));
    for (const [id, l] of this.listening) {
      if (!wanted.has(id)) {
        this.stopListening(l);
        this.listening.delete(id);
        this.handles.delete(id);
      }
    }
    for (const [id, l] of wanted) {
      if (this.listening.has(id)) continue;
      const handle = this.handles.get(id);
      if (handle === undefined) {
        send({ type: 'warning', message: 'no socket for listener', details: { listener: id } });
        continue;
      }
      const info: ListenerInfo = { id, protocol: l.protocol === 'https' ? 'https' : 'http' };
      const entry: Listening = { info, server: new Server({ allowHalfOpen: true, noDelay: true }), connections: new Set() };
      entry.server.on('connection', (socket: Socket) => this.accept(entry, socket));
      entry.server.on('error', (err) => send({ type: 'warning', message: 'listener error', details: { listener: id, error: String(err) } }));
      entry.server.listen(handle, 1024);
      this.listening.set(id, entry);
    }
  }

  private accept(entry: Listening, socket: Socket): void {
    const ip = unmapIpv4(socket.remoteAddress ?? '');
    if (!this.ctx.connectionsPerIp.acquire(ip)) {
      socket.destroy();
      return;
    }
    const conn = new ClientConnection(this.ctx, entry.info, socket, ip, (c) => {
      this.connections.delete(c);
      entry.connections.delete(c);
      this.ctx.connectionsPerIp.release(ip);
    });
    this.connections.add(conn);
    entry.connections.add(conn);
  }

  metrics(request: number): void {
    send({ type: 'metrics', request, metrics: statsToJson([this.ctx.unrouted, ...this.stats.values()]) });
  }

  /** Stops accepting, lets responses in flight finish for up to `graceMs`, then exits. */
  async close(graceMs: number): Promise<void> {
    for (const l of this.listening.values()) l.server.close();
    for (const c of this.connections) c.drain();
    const deadline = Date.now() + graceMs;
    while (this.connections.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    for (const c of this.connections) c.destroy();
    for (const pool of this.pools.values()) pool.retire();
    clearInterval(this.sweeper);
    await this.ctx.accessLog?.close();
    process.exit(0);
  }
}

/** '::ffff:1.2.3.4' (an IPv4 client on a dual-stack listener) → '1.2.3.4'. */
function unmapIpv4(ip: string): string {
  return ip.startsWith('::ffff:') && ip.includes('.') ? ip.slice(7) : ip;
}

assertParserShape();
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
      worker?.apply(message.version, message.config);
      break;
    case 'metrics':
      worker?.metrics(message.request);
      break;
    case 'close':
      void worker?.close(message.graceMs);
      break;
  }
});
// The supervisor is gone: nobody can reconfigure or stop this worker any more.
process.on('disconnect', () => process.exit(0));
