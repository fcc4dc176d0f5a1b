/**
 * Upstream connections: a pool of keep-alive HTTP/1.1 connections per backend
 * address, each with its own response parser whose callbacks are set once, so
 * a proxied request allocates no closures.
 *
 * The response is relayed as it is parsed: its head rewritten (hop-by-hop
 * headers dropped, framing chosen for the client), its body forwarded chunk by
 * chunk. A connection goes back to the pool only when the response ended
 * exactly at the end of what the backend sent and the request was fully sent;
 * anything else (extra bytes, an early answer) closes it, so a confused backend
 * cannot make one visitor's response land on another's request.
 */
import { connect, type Socket } from 'node:net';
import type { ClientConnection } from './connection.js';
import type { Exchange } from './exchange.js';
import { Header, classifyHeader, connectionListed } from './headers.js';
import { RESPONSE, createParser, feedParser, type HttpParser, type ParseError, type SocketFeed } from './http-parser.js';

/** Body chunks up to this size are copied into the head's write; bigger ones are written as they are. */
const MERGE_MAX = 16 * 1024;

export interface UpstreamTimeouts {
  connectMs: number;
  responseMs: number;
  idleMs: number;
  maxIdle: number;
}

export class UpstreamPool {
  private readonly idle: UpstreamConnection[] = [];
  /** Set when the address left the configuration: connections close instead of returning. */
  retired = false;

  constructor(readonly host: string, readonly port: number, private readonly timeouts: UpstreamTimeouts) {}

  /** An idle pooled connection (most recently used first), or a new one. */
  acquire(now: number): UpstreamConnection {
    const pooled = this.idle.pop();
    if (pooled !== undefined) {
      pooled.reused = true;
      return pooled;
    }
    return this.open(now);
  }

  /** A new connection, for the one retry after a stale pooled one failed. */
  open(now: number): UpstreamConnection {
    return new UpstreamConnection(this, this.timeouts, now);
  }

  release(c: UpstreamConnection, now: number): void {
    if (this.retired || this.idle.length >= this.timeouts.maxIdle) {
      c.destroy();
      return;
    }
    c.idleSince = now;
    this.idle.push(c);
  }

  forget(c: UpstreamConnection): void {
    const i = this.idle.indexOf(c);
    if (i !== -1) this.idle.splice(i, 1);
  }

  /** Closes connections idle longer than the idle timeout (the oldest are at the front). */
  sweep(now: number): void {
    while (this.idle.length > 0 && now - this.idle[0]!.idleSince > this.timeouts.idleMs) this.idle.shift()!.destroy();
  }

  retire(): void {
    this.retired = true;
    for (const c of this.idle.splice(0)) c.destroy();
  }
}

const enum Phase { Connecting, Waiting, Relaying, Idle, Closed }

export class UpstreamConnection {
  readonly socket: Socket;
  private readonly parser: HttpParser;
  private phase = Phase.Connecting;
  private client: ClientConnection | null = null;
  private ex: Exchange | null = null;
  /** Taken from the pool: may have been closed by the backend meanwhile (then a retry is safe). */
  reused = false;
  idleSince = 0;
  /** When the current wait (connect, or response head) times out. */
  deadline: number;
  private gotBytes = false;
  private interim = false;
  private rechunk = false;
  private upstreamKeepAlive = false;
  private complete = false;
  private upgraded = false;
  private timedOut = false;
  private unsolicited = false;
  private readonly feed: SocketFeed;
  /** The response head, held back so it leaves in one write with the first body bytes. */
  private pendingHead: string | null = null;
  /** Header lines of a long response head, delivered before its end (more than 32 lines). */
  private longHead: string[] = [];

  constructor(private readonly pool: UpstreamPool, private readonly timeouts: UpstreamTimeouts, now: number) {
    this.deadline = now + timeouts.connectMs;
    this.socket = connect({ host: pool.host, port: pool.port, noDelay: true });
    this.parser = createParser(RESPONSE, 0, {
      onMessageBegin: () => {
        // A second message after a complete response: bytes nobody asked for.
        if (this.complete) this.unsolicited = true;
      },
      onHeaders: (headers) => {
        for (const x of headers) this.longHead.push(x);
      },
      onHeadersComplete: this.onHeadersComplete.bind(this),
      onBody: this.onBody.bind(this),
      onMessageComplete: this.onMessageComplete.bind(this),
    });
    this.socket.on('connect', this.onConnect.bind(this));
    this.feed = feedParser(this.parser, this.socket, this.onExecute.bind(this));
    this.socket.on('end', this.onEnd.bind(this));
    this.socket.on('drain', this.onDrain.bind(this));
    this.socket.on('error', () => {});
    this.socket.on('close', this.onClose.bind(this));
  }

  /** Sends a request head; the response is relayed to `client` and ends with `client.finish(ex)`. */
  begin(client: ClientConnection, ex: Exchange, head: string, now: number): void {
    this.client = client;
    this.ex = ex;
    ex.upstream = this;
    ex.upstreamHead = head;
    this.gotBytes = false;
    this.complete = false;
    this.interim = false;
    this.unsolicited = false;
    if (this.phase !== Phase.Connecting) {
      this.phase = Phase.Waiting;
      this.deadline = now + this.timeouts.responseMs;
    }
    this.socket.write(head, 'latin1');
  }

  /** Forwards a request body chunk; returns false when the client should stop reading for a while. */
  sendBody(chunk: Buffer, chunked: boolean): boolean {
    if (chunked) this.socket.write(`${chunk.length.toString(16)}\r\n`, 'latin1');
    const ok = this.socket.write(chunk);
    if (chunked) return this.socket.write('\r\n', 'latin1');
    return ok;
  }

  endBody(chunked: boolean): void {
    if (chunked) this.socket.write('0\r\n\r\n', 'latin1');
  }

  /** The client went away or the exchange was answered another way: this connection cannot be reused. */
  abandon(): void {
    this.client = null;
    this.ex = null;
    this.destroy();
  }

  destroy(): void {
    if (this.phase === Phase.Closed) return;
    this.phase = Phase.Closed;
    this.socket.destroy();
  }

  resumeReading(): void {
    this.feed.resume();
  }

  /** Called by the worker's sweep: true when this connection's wait has run out (then it answers 504). */
  expired(now: number): boolean {
    if ((this.phase !== Phase.Connecting && this.phase !== Phase.Waiting) || now < this.deadline) return false;
    this.timedOut = true;
    this.fail();
    return true;
  }

  private onConnect(): void {
    if (this.phase !== Phase.Connecting) return;
    if (this.ex === null) {
      this.phase = Phase.Idle;
      return;
    }
    this.phase = Phase.Waiting;
    this.deadline = this.client!.now() + this.timeouts.responseMs;
  }

  /** After the parser ran over one read from the backend. */
  private onExecute(ret: number | ParseError, current: () => Buffer): void {
    if (this.client === null || this.ex === null) {
      // Bytes nobody asked for: never let them prefix the next response.
      this.destroy();
      return;
    }
    this.gotBytes = true;
    if (this.phase === Phase.Waiting) this.phase = Phase.Relaying;
    if (this.upgraded && typeof ret === 'number') {
      this.startTunnel(current().subarray(ret));
      return;
    }
    if (this.complete) this.completeExchange(typeof ret === 'number' && !this.unsolicited);
    else if (typeof ret !== 'number') this.fail();
  }

  private onEnd(): void {
    if (this.ex === null) return;
    // A close-delimited response ends here; anything else is truncated.
    const err = this.parser.finish();
    if (err === undefined && this.complete) this.completeExchange(false);
    else this.fail();
  }

  private onDrain(): void {
    this.client?.resumeFromUpstream();
  }

  private onClose(): void {
    const wasIdle = this.phase === Phase.Idle || this.ex === null;
    this.phase = Phase.Closed;
    this.pool.forget(this);
    this.parser.close();
    if (!wasIdle) this.fail();
  }

  private fail(): void {
    const ex = this.ex;
    const client = this.client;
    this.ex = null;
    this.client = null;
    this.destroy();
    if (ex === null || client === null) return;
    ex.upstream = null;
    client.upstreamFailed(ex, this.reused && !this.gotBytes, this.timedOut);
  }

  private onHeadersComplete(
    _major: number, _minor: number, headers: string[] | undefined, _method: number, _url: string | undefined,
    status: number, statusMessage: string, upgrade: boolean, keepAlive: boolean,
  ): number {
    const ex = this.ex!;
    const client = this.client!;
    const h = headers ?? this.longHead.splice(0);
    if (status < 200 && status !== 101) {
      // Interim (100 Continue, 103 Early Hints): relayed to HTTP/1.1 clients, then the real response follows.
      this.interim = true;
      if (!ex.http10) client.write(responseHead(status, statusMessage, h, null, ''));
      return 0;
    }
    if (status === 101) {
      if (!ex.websocket || !upgrade) {
        this.fail();
        return 0;
      }
      this.upgraded = true;
      ex.status = 101;
      ex.headSent = true;
      client.write(responseHead(101, statusMessage, h, null, 'Connection: upgrade\r\nUpgrade: websocket\r\n'));
      return 0;
    }
    const noBody = ex.method === 'HEAD' || status === 204 || status === 304;
    let hasLength = false;
    let hasTransferEncoding = false;
    for (let i = 0; i < h.length; i += 2) {
      const kind = classifyHeader(h[i]!);
      if (kind === Header.ContentLength) hasLength = true;
      else if (kind === Header.TransferEncoding) hasTransferEncoding = true;
    }
    const lengthKnown = hasLength && !hasTransferEncoding;
    this.rechunk = !noBody && !lengthKnown && !ex.http10;
    // An HTTP/1.0 client gets an unknown-length body delimited by closing the connection.
    if (!noBody && !lengthKnown && ex.http10) ex.closeAfter = true;
    const close = ex.closeAfter || !ex.keepAlive || client.draining;
    const framing = (this.rechunk ? 'Transfer-Encoding: chunked\r\n' : '') +
      (close ? 'Connection: close\r\n' : ex.http10 ? 'Connection: keep-alive\r\n' : '');
    if (close) ex.closeAfter = true;
    ex.status = status;
    ex.headSent = true;
    this.upstreamKeepAlive = keepAlive;
    this.pendingHead = responseHead(status, statusMessage, h, lengthKnown ? null : 'drop-length', framing);
    return ex.method === 'HEAD' ? 1 : 0;
  }

  /**
   * Relays a body chunk. A small chunk leaves in the same write as the head
   * (and its chunk framing): one syscall and one write request for the common
   * small response, instead of a corked writev.
   */
  private onBody(chunk: Buffer): void {
    const client = this.client!;
    const head = this.pendingHead;
    this.pendingHead = null;
    let ok: boolean;
    if (chunk.length <= MERGE_MAX) {
      const body = chunk.toString('latin1');
      const framed = this.rechunk ? `${chunk.length.toString(16)}\r\n${body}\r\n` : body;
      ok = client.write(head === null ? framed : head + framed);
    } else {
      client.cork();
      if (head !== null) client.write(head);
      if (this.rechunk) client.write(`${chunk.length.toString(16)}\r\n`);
      client.write(chunk);
      ok = this.rechunk ? client.write('\r\n') : true;
      client.uncork();
      ok &&= !client.socket.writableNeedDrain;
    }
    if (!ok) {
      this.feed.pause();
      client.waitForDrain();
    }
  }

  private onMessageComplete(): void {
    if (this.interim) {
      this.interim = false;
      return;
    }
    if (this.upgraded) return;
    const head = this.pendingHead;
    this.pendingHead = null;
    const end = this.rechunk ? '0\r\n\r\n' : '';
    if (head !== null) this.client!.write(head + end);
    else if (end !== '') this.client!.write(end);
    this.complete = true;
  }

  /** The response is whole: the connection returns to the pool if it is clean, and the client moves on. */
  private completeExchange(endedCleanly: boolean): void {
    const ex = this.ex!;
    const client = this.client!;
    this.ex = null;
    this.client = null;
    ex.upstream = null;
    if (endedCleanly && this.upstreamKeepAlive && ex.bodyComplete && this.phase !== Phase.Closed) {
      this.phase = Phase.Idle;
      this.reused = false;
      this.pool.release(this, client.now());
    } else {
      this.destroy();
    }
    client.finish(ex);
  }

  /** After a 101: the rest is raw bytes both ways, and this connection leaves the pool for good. */
  private startTunnel(rest: Buffer): void {
    const client = this.client!;
    const ex = this.ex!;
    this.ex = null;
    this.client = null;
    ex.upstream = null;
    this.phase = Phase.Closed;
    this.socket.removeAllListeners('end');
    this.socket.removeAllListeners('drain');
    this.socket.removeAllListeners('close');
    this.feed.release();
    this.parser.close();
    client.tunnel(ex, this.socket, rest);
  }
}

/**
 * A response head for the client: status line, the backend's headers minus
 * hop-by-hop ones (and minus Content-Length when the body is re-framed), then
 * the gateway's framing lines.
 */
function responseHead(status: number, statusMessage: string, h: string[], dropLength: 'drop-length' | null, framing: string): string {
  let connection: string[] | null = null;
  for (let i = 0; i < h.length; i += 2) {
    if (classifyHeader(h[i]!) === Header.Connection) (connection ??= []).push(h[i + 1]!);
  }
  const listed = connectionListed(connection);
  let head = `HTTP/1.1 ${status} ${statusMessage}\r\n`;
  for (let i = 0; i < h.length; i += 2) {
    const name = h[i]!;
    const kind = classifyHeader(name);
    if (kind === Header.Other || kind === Header.Host || kind === Header.XForwardedFor || kind === Header.XForwardedProto ||
      kind === Header.XForwardedHost || kind === Header.Forwarded || (kind === Header.ContentLength && dropLength === null)) {
      if (listed !== null && listed.has(name.toLowerCase())) continue;
      head += `${name}: ${h[i + 1]!}\r\n`;
    }
  }
  return `${head}${framing}\r\n`;
}
