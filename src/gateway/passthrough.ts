/**
 * TLS passthrough: on a `tls-passthrough` listener the gateway never decrypts.
 * It reads the visitor's ClientHello (our own parser, bounded in size and in
 * time), picks the site by the SNI name exactly as HTTP routing picks it by
 * Host (exact name, longest wildcard, the listener's default), connects to
 * that site's upstream, replays the bytes already read — after a PROXY
 * protocol v2 header when the site asks for one — and then copies bytes both
 * ways with backpressure, carrying each side's half-close to the other.
 *
 * A ClientHello that is malformed, too large or too slow, or names no site,
 * closes the connection without a byte sent back: nothing tells a scanner
 * which names are hosted here. The route is chosen once per connection, so a
 * new route table applies to new connections and established streams go on.
 * Deadlines (hello, connect, idle) are checked by the worker's sweep.
 */
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { AccessEntry } from './access-log.js';
import { MAX_HELLO_BYTES, parseClientHello } from './client-hello.js';
import type { WorkerContext } from './context.js';
import type { MetricJson, SiteStats } from './metrics.js';
import { encodeProxyV2 } from './proxy-protocol.js';
import { RawTcp, type RawTcpEvents } from './raw-tcp.js';
import type { Site } from './site.js';

const enum Phase {
  /** Reading the ClientHello (tlsHandshakeTimeoutMs). */
  Hello,
  /** Connecting to the upstream (upstreamConnectTimeoutMs). */
  Connecting,
  /** Bytes flow both ways (passthroughIdleTimeoutMs without any). */
  Open,
}

/**
 * How a stream ended, in the access log's `status` (nginx's stream module
 * uses the same numbers): 200 a stream that ran, 400 not a valid ClientHello,
 * 404 no site for its name, 503 its site is held but not served now (instance
 * paused, stopped …), 408 ClientHello too slow, 502 upstream refused or
 * broke, 504 upstream did not connect in time.
 */
type StreamStatus = 200 | 400 | 404 | 408 | 502 | 503 | 504;

/**
 * Each stream reads its backend into a buffer of its own, reused read after
 * read, so a download allocates nothing per read and leaves the garbage
 * collector little to do. It starts at 16 KiB (nginx's stream module keeps
 * 16 KiB per direction) and grows to 64 KiB once a read fills it (a bulk
 * transfer: fewer, larger reads and writes).
 */
const READ_BYTES = 16 * 1024;
const BULK_READ_BYTES = 64 * 1024;

/**
 * Read buffers of finished streams, for the next ones: a connection rate in
 * the thousands per second would otherwise allocate (and leave the garbage
 * collector) 16 KiB of memory outside the heap per connection.
 */
const spareReadBuffers: Buffer[] = [];
const MAX_SPARE_READ_BUFFERS = 256;
const NO_BYTES = Buffer.alloc(0);

/** All passthrough streams of one worker. */
export class PassthroughStreams {
  private readonly streams = new Set<PassthroughStream>();
  /** Streams opened per site; the bytes go into the site's own SiteStats. */
  private readonly opened = new WeakMap<SiteStats, number>();

  constructor(private readonly ctx: WorkerContext) {}

  get size(): number {
    return this.streams.size;
  }

  /** A new connection on listener `listener` from client address `ip` (IPv4-mapped unwrapped). */
  accept(listener: string, socket: Socket, ip: string): void {
    if (!this.ctx.connectionsPerIp.acquire(ip)) {
      this.ctx.security.note('conn_limit', ip);
      socket.destroy();
      return;
    }
    const stream = new PassthroughStream(this.ctx, listener, socket, ip, (s) => {
      this.streams.delete(s);
      this.ctx.connectionsPerIp.release(ip);
    }, (stats) => this.opened.set(stats, (this.opened.get(stats) ?? 0) + 1));
    this.streams.add(stream);
  }

  /** Fires the deadlines that have passed (called by the worker's sweep). */
  sweep(now: number): void {
    for (const s of this.streams) s.checkTimeouts(now);
  }

  /** Ends every stream; resolves once they have closed (and written their access log lines), or after a few turns. */
  async destroyAll(): Promise<void> {
    for (const s of this.streams) s.destroy();
    for (let i = 0; i < 10 && this.streams.size > 0; i++) await new Promise((r) => setImmediate(r));
  }

  /** `strata_gateway_passthrough_connections_total{site,tenant}` for the given sites (counters as prom-client JSON). */
  metrics(all: Iterable<SiteStats>): MetricJson[] {
    const values: MetricJson['values'] = [];
    for (const s of all) {
      const n = this.opened.get(s);
      if (n !== undefined) values.push({ value: n, labels: { site: s.site, tenant: s.tenant } });
    }
    return [{
      name: 'strata_gateway_passthrough_connections_total',
      help: 'TLS passthrough connections, per site (bytes are in strata_gateway_bytes_total: in = client to backend).',
      type: 'counter', aggregator: 'sum', values,
    }];
  }
}

/** One visitor's stream: the client is a net.Socket (accepted by the listener), the backend side a RawTcp. */
class PassthroughStream implements RawTcpEvents {
  private phase = Phase.Hello;
  private deadline: number;
  private lastActive: number;
  private readonly startedAt = performance.now();
  private buffered: Buffer = NO_BYTES;
  private upstream: RawTcp | null = null;
  private proxyProtocol = false;
  private upstreamClosed = false;
  private clientClosed = false;
  private site: Site | null = null;
  private sni: string | null = null;
  private status: StreamStatus = 200;
  private bytesIn = 0;
  private bytesOut = 0;
  /** Where the next read from the upstream lands. */
  private readBuffer: Buffer | null = null;

  constructor(
    private readonly ctx: WorkerContext,
    private readonly listener: string,
    private readonly client: Socket,
    private readonly ip: string,
    private readonly onClosed: (s: PassthroughStream) => void,
    private readonly onOpened: (stats: SiteStats) => void,
  ) {
    this.lastActive = ctx.now;
    this.deadline = ctx.now + ctx.opts.tlsHandshakeTimeoutMs;
    // One 'data' listener for the stream's life: the ClientHello first, then the bytes to relay.
    client.on('data', (chunk: Buffer) => {
      if (this.phase === Phase.Open) this.fromClient(chunk);
      else if (this.phase === Phase.Hello) this.readHello(chunk);
      else this.buffered = Buffer.concat([this.buffered, chunk]); // read before the pause took effect
    });
    client.on('end', () => this.onClientEnd());
    client.on('error', () => this.destroy());
    client.on('close', () => this.onClientClose());
  }

  // ---- the ClientHello ----

  private readHello(chunk: Buffer): void {
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
    const hello = parseClientHello(this.buffered);
    if (hello.kind === 'partial' && this.buffered.length <= MAX_HELLO_BYTES + 1024) return;
    this.client.pause();
    if (hello.kind !== 'hello') {
      this.ctx.security.note('malformed', this.ip); // for the guard, as a malformed HTTP request is
      return this.refuse(400);
    }
    this.sni = hello.sni;
    const site = this.ctx.routes.lookup(this.listener, hello.sni === null ? null : { name: hello.sni, isIp: false });
    if (site !== null && site.target.kind === 'unavailable') return this.refuse(site.target.status);
    if (site === null || site.target.kind !== 'upstream') return this.refuse(404);
    this.site = site;
    this.onOpened(site.stats);
    this.connect(site.target);
  }

  /** Closes without a byte sent: the visitor learns nothing about what is hosted here. */
  private refuse(status: StreamStatus): void {
    this.status = status;
    this.ctx.unrouted.bytesIn += this.buffered.length;
    this.onOpened(this.ctx.unrouted);
    this.client.destroy();
  }

  // ---- the upstream ----

  private connect(target: { host: string; port: number; proxyProtocol?: 'v2' }): void {
    this.phase = Phase.Connecting;
    this.deadline = this.ctx.now + this.ctx.opts.upstreamConnectTimeoutMs;
    this.proxyProtocol = target.proxyProtocol === 'v2';
    this.readBuffer = spareReadBuffers.pop() ?? Buffer.allocUnsafe(READ_BYTES);
    this.upstream = new RawTcp(target.host, target.port, this.readBuffer, this);
  }

  /** RawTcpEvents: the backend accepted; the bytes read so far go first (after a PROXY header when the site wants one). */
  onConnect(): void {
    const up = this.upstream!;
    if (this.clientClosed) return up.destroy();
    this.phase = Phase.Open;
    this.lastActive = this.ctx.now;
    const first = this.proxyProtocol ? Buffer.concat([this.proxyHeader(), this.buffered]) : this.buffered;
    this.countIn(this.buffered.length);
    this.buffered = NO_BYTES;
    const client = this.client;
    client.on('drain', () => up.resumeReading());
    if (up.write(first)) client.resume(); // else onDrain resumes it
  }

  /** RawTcpEvents: the backend's half-close reaches the visitor. */
  onEnd(): void {
    this.client.end();
  }

  /** RawTcpEvents: the backend took every byte written to it; the visitor may send more. */
  onDrain(): void {
    this.client.resume();
  }

  onError(connecting: boolean): void {
    if (connecting) this.status = 502;
    this.destroy();
  }

  onClose(): void {
    this.onUpstreamClose();
  }

  private proxyHeader(): Buffer {
    return encodeProxyV2({
      source: { address: this.ip, port: this.client.remotePort ?? 0 },
      destination: { address: this.client.localAddress ?? '0.0.0.0', port: this.client.localPort ?? 0 },
      authority: this.sni,
    });
  }

  /**
   * RawTcpEvents: bytes from the backend, in the stream's read buffer,
   * written to the client straight from there. When the kernel did not take
   * them all at once, the pending write still holds that buffer, so the next
   * read gets a new one. Returning false (the client's buffer is full) stops
   * reading until the client drains: the backpressure. Both directions work
   * this way: a side that cannot take more pauses the other's reading.
   */
  onData(n: number, buf: Buffer): boolean {
    this.bytesOut += n;
    this.site!.stats.bytesOut += n;
    this.lastActive = this.ctx.now;
    const ok = this.client.write(buf.subarray(0, n));
    if (this.client.writableLength > 0) this.readBuffer = Buffer.allocUnsafe(buf.length);
    else if (n === buf.length && n < BULK_READ_BYTES) this.readBuffer = Buffer.allocUnsafe(BULK_READ_BYTES);
    else return ok;
    this.upstream!.buffer = this.readBuffer;
    return ok;
  }

  private fromClient(d: Buffer): void {
    this.countIn(d.length);
    if (!this.upstream!.write(d)) this.client.pause();
  }

  private countIn(n: number): void {
    this.bytesIn += n;
    this.site!.stats.bytesIn += n;
    this.lastActive = this.ctx.now;
  }

  // ---- lifecycle ----

  private onClientEnd(): void {
    if (this.phase === Phase.Open) this.upstream!.end(); // the visitor's half-close reaches the backend
    else this.destroy(); // a visitor that stops sending before its hello is routed gets nothing
  }

  checkTimeouts(now: number): void {
    if (this.phase === Phase.Hello && now > this.deadline) {
      this.status = 408;
      this.ctx.unrouted.bytesIn += this.buffered.length;
      this.onOpened(this.ctx.unrouted);
      this.destroy();
    } else if (this.phase === Phase.Connecting && now > this.deadline) {
      this.status = 504;
      this.destroy();
    } else if (this.phase === Phase.Open && now - this.lastActive > this.ctx.opts.passthroughIdleTimeoutMs) {
      this.destroy();
    }
  }

  destroy(): void {
    this.client.destroy();
    this.upstream?.destroy();
  }

  /**
   * One side has closed. If the other still has bytes to pass on (it ended
   * its writing normally) it finishes on its own; a side torn down without
   * ending takes the other with it.
   */
  private onClientClose(): void {
    this.clientClosed = true;
    const up = this.upstream;
    if (up !== null && !up.writableEnded) up.destroy();
    this.finishIfDone();
  }

  private onUpstreamClose(): void {
    this.upstreamClosed = true;
    if (!this.client.writableEnded) this.client.destroy();
    this.finishIfDone();
  }

  private finishIfDone(): void {
    if (!this.clientClosed || (this.upstream !== null && !this.upstreamClosed)) return;
    this.onClosed(this);
    // Both sockets are closed: nothing reads into this buffer or writes from it any more.
    const spare = this.readBuffer;
    this.readBuffer = null;
    if (spare !== null && spare.length === READ_BYTES && spareReadBuffers.length < MAX_SPARE_READ_BUFFERS) spareReadBuffers.push(spare);
    const log = this.ctx.accessLog;
    if (log === null) return;
    const entry: AccessEntry & { bytesIn: number; sni: string | null } = {
      site: this.site?.hostname ?? '-', tenant: this.site?.tenantId ?? '-', listener: this.listener, ip: this.ip,
      method: 'PASSTHROUGH', url: this.sni ?? '', sni: this.sni, status: this.status,
      bytes: this.bytesOut, bytesIn: this.bytesIn, ms: Math.round(performance.now() - this.startedAt),
    };
    log.write(entry);
  }
}
