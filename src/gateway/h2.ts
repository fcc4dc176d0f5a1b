/**
 * An HTTP/2 client connection (ALPN `h2` on an https listener). Node's
 * nghttp2 binding does the framing, HPACK and flow control; each request
 * stream becomes an `Exchange`, routed by `:authority` and answered by the
 * same dispatch as HTTP/1.1 (dispatch.ts) through an `H2Stream`.
 *
 * Limits are HTTP/1.1's, mapped onto HTTP/2: the header list size and count
 * (SETTINGS_MAX_HEADER_LIST_SIZE, nghttp2 resets a stream over it), streams
 * at once (SETTINGS_MAX_CONCURRENT_STREAMS), body size, rate and connections
 * per IP (as for HTTP/1.1); the request timeout per stream, the keep-alive
 * timeout once no stream is open (which also ends a connection whose headers
 * never complete: a CONTINUATION flood opens no stream). Timeouts are checked
 * by the worker's sweep, as for HTTP/1.1.
 *
 * Rapid reset (CVE-2023-44487): a client that opens streams and resets them
 * at once makes the gateway start work (an upstream request) it then throws
 * away. Streams the client cancels before their answer draw from a token
 * bucket per connection; when it runs dry the connection gets GOAWAY
 * ENHANCE_YOUR_CALM and closes. nghttp2 bounds CONTINUATION frames per header
 * block and Node bounds the memory of a session on top.
 */
import http2, { constants, type Http2Server, type IncomingHttpHeaders, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { ListenerInfo } from './connection.js';
import type { WorkerContext } from './context.js';
import { dispatchExchange } from './dispatch.js';
import { Exchange } from './exchange.js';
import { readH2Request } from './h2-headers.js';
import { H2Stream } from './h2-stream.js';
import { recordExchange } from './record.js';

/** Client-cancelled streams a connection may have in a burst, and how many per second it earns back. */
const CANCEL_BURST = 100;
const CANCELS_PER_SECOND = 20;
/** How long a closing connection may take to finish its streams before it is destroyed. */
const LINGER_MS = 2_000;

/** One session factory per worker: a server object that never listens, only turns sockets into sessions. */
let factory: Http2Server | null = null;
let adopting: H2Connection | null = null;

function sessionFactory(ctx: WorkerContext): Http2Server {
  if (factory !== null) return factory;
  const opts = ctx.opts;
  factory = http2.createServer({
    settings: {
      maxConcurrentStreams: opts.h2MaxConcurrentStreams,
      maxHeaderListSize: opts.maxHeaderSize,
      enablePush: false,
    },
    // Pseudo-headers count as pairs too.
    maxHeaderListPairs: opts.maxHeadersCount + 4,
    maxSessionMemory: 16,
  });
  // The compatibility layer (request/response objects per stream) is not used.
  factory.removeAllListeners('stream');
  factory.on('session', (session: ServerHttp2Session) => adopting?.adopt(session));
  return factory;
}

export class H2Connection {
  draining = false;
  private session: ServerHttp2Session | null = null;
  private readonly streams = new Set<H2Stream>();
  private idleSince: number;
  private closingSince = 0;
  private closed = false;
  private cancelTokens = CANCEL_BURST;
  private cancelRefilledAt: number;

  constructor(
    private readonly ctx: WorkerContext,
    readonly listener: ListenerInfo,
    readonly socket: Socket,
    readonly ip: string,
    private readonly onClosed: (c: H2Connection) => void,
    /** The normalised SNI name of the TLS connection (null: no SNI, routing by `:authority` alone). */
    private readonly sni: string | null,
  ) {
    this.idleSince = ctx.now;
    this.cancelRefilledAt = ctx.now;
    socket.on('close', this.onSocketClose.bind(this));
    // A server-side TLSSocket made without a tls.Server keeps `secureConnecting` set after its handshake
    // (tls.Server clears it); http2 would then wait forever for a 'secureConnect' that servers never emit.
    (socket as Socket & { secureConnecting?: boolean }).secureConnecting = false;
    adopting = this;
    try {
      sessionFactory(ctx).emit('connection', socket);
    } finally {
      adopting = null;
    }
    if (this.session === null) socket.destroy();
  }

  adopt(session: ServerHttp2Session): void {
    this.session = session;
    session.on('stream', this.onStream.bind(this));
    session.on('error', () => {});
    session.on('close', this.onSocketClose.bind(this));
  }

  now(): number {
    return this.ctx.now;
  }

  private onStream(stream: ServerHttp2Stream, _headers: IncomingHttpHeaders, flags: number, raw: string[]): void {
    if (this.closingSince !== 0 || this.closed) {
      // Closing (GOAWAY sent, or cut off for resetting too much): no new work starts.
      stream.close(constants.NGHTTP2_REFUSED_STREAM);
      return;
    }
    const ex = new Exchange();
    ex.startedAt = performance.now();
    ex.dispatched = true;
    readH2Request(ex, raw, (flags & constants.NGHTTP2_FLAG_END_STREAM) !== 0, this.ctx.opts.maxHeadersCount);
    if (ex.reject === 0 && this.sni !== null && ex.host!.name !== this.sni) {
      // No domain fronting, and no coalescing onto a connection made for another name: the client retries on a new connection.
      ex.reject = 421;
    }
    if (ex.reject === 0) {
      ex.site = this.ctx.routes.lookup(this.listener.id, ex.host);
      if (ex.contentLength > (ex.site?.maxBodyBytes ?? this.ctx.opts.maxBodyBytes)) ex.reject = 413;
    }
    const s = new H2Stream(this, stream, ex);
    s.bodyLimit = ex.site?.maxBodyBytes ?? this.ctx.opts.maxBodyBytes;
    this.streams.add(s);
    dispatchExchange(this.ctx, s, ex, this.ip, this.listener.protocol);
  }

  streamClosed(s: H2Stream, cancelled: boolean): void {
    this.streams.delete(s);
    if (this.streams.size === 0) this.idleSince = this.ctx.now;
    if (cancelled) this.countCancel();
    if (this.draining && this.streams.size === 0) this.close();
  }

  record(ex: Exchange): void {
    recordExchange(this.ctx, this.listener.id, this.ip, ex);
  }

  /** Rapid reset: each stream the client cancels before its answer takes a token; none left → GOAWAY and close. */
  private countCancel(): void {
    const now = this.ctx.now;
    this.cancelTokens = Math.min(CANCEL_BURST, this.cancelTokens + ((now - this.cancelRefilledAt) * CANCELS_PER_SECOND) / 1000);
    this.cancelRefilledAt = now;
    this.cancelTokens -= 1;
    if (this.cancelTokens >= 0 || this.closed || this.closingSince !== 0) return;
    this.closingSince = now; // refuses whatever streams the rest of this read opens
    const session = this.session;
    // destroy with an error code sends GOAWAY ENHANCE_YOUR_CALM before the socket closes.
    if (session !== null && !session.destroyed) session.destroy(new Error('rapid reset'), constants.NGHTTP2_ENHANCE_YOUR_CALM);
    else this.destroy();
  }

  /** Checked by the worker's sweep. */
  checkTimeouts(now: number): void {
    if (this.closed) return;
    if (this.closingSince !== 0) {
      if (now - this.closingSince > LINGER_MS) this.destroy();
      return;
    }
    const opts = this.ctx.opts;
    for (const s of this.streams) {
      const up = s.ex.upstream;
      if (up !== null && up.expired(now)) continue;
      if (!s.ex.bodyComplete && now - s.openedAt > opts.requestTimeoutMs) s.timedOut();
    }
    if (this.streams.size === 0 && now - this.idleSince > opts.keepAliveTimeoutMs) this.close();
  }

  /** Stop taking streams; close once those open are answered. */
  drain(): void {
    this.draining = true;
    if (this.streams.size === 0) this.close();
  }

  /** GOAWAY, then close when the open streams are done (destroyed after LINGER_MS at the latest). */
  private close(): void {
    if (this.closingSince !== 0 || this.closed) return;
    this.closingSince = this.ctx.now;
    if (this.session === null || this.session.destroyed) this.destroy();
    else this.session.close();
  }

  destroy(): void {
    this.session?.destroy();
    this.socket.destroy();
  }

  private onSocketClose(): void {
    if (this.closed) return;
    this.closed = true;
    this.onClosed(this);
  }
}
