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
import type { Responder } from './responder.js';
import type { Exchange } from './exchange.js';
import { Header, classifyHeader, connectionListed, isHopByHop } from './headers.js';
import { RESPONSE, createParser, type HttpParser } from './http-parser.js';
import { copyBytes, parseSimpleHead, type SimpleHead } from './response-head.js';

/** Body chunks up to this size are copied into the head's write; bigger ones are written as they are. */
const MERGE_MAX = 16 * 1024;

/**
 * Where a simple response (response-head.ts) is assembled — relayed head
 * lines, framing, body bytes — to leave in one Buffer write. Shared by the
 * worker's connections: it is only ever filled and written within one read,
 * and replaced by a fresh one whenever a write could not complete at once
 * (the socket then holds on to it). Room for a 16 KiB head and MERGE_MAX of body.
 */
const OUT_BYTES = 64 * 1024;
let OUT = Buffer.allocUnsafe(OUT_BYTES);
const CRLF = Buffer.from('\r\n', 'latin1');
const CONNECTION_CLOSE = Buffer.from('Connection: close\r\n\r\n', 'latin1');
const CONNECTION_KEEP_ALIVE = Buffer.from('Connection: keep-alive\r\n\r\n', 'latin1');

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

/** How the current response is being read. */
const enum Reading {
  /** Before its first byte: the fast path gets the first look. */
  Start,
  /** A simple Content-Length response (response-head.ts): body bytes are counted through. */
  Counted,
  /** Anything else: llhttp parses it. */
  Parsed,
  /** After a 101: raw bytes to the client. */
  Tunnel,
}

/**
 * Every read in a worker lands in this one buffer: reads are handled
 * synchronously and whatever must outlive the read is copied, so no buffer is
 * allocated per read.
 */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

export class UpstreamConnection {
  readonly socket: Socket;
  private readonly parser: HttpParser;
  private phase = Phase.Connecting;
  private reading = Reading.Start;
  private client: Responder | null = null;
  private ex: Exchange | null = null;
  /** Taken from the pool: may have been closed by the backend meanwhile (then a retry is safe). */
  reused = false;
  idleSince = 0;
  /** When the current wait (connect, response head, next body bytes) times out. */
  deadline: number;
  private gotBytes = false;
  private interim = false;
  private rechunk = false;
  private upstreamKeepAlive = false;
  private complete = false;
  private upgraded = false;
  private timedOut = false;
  /** Bytes after the response, or a response nobody asked for: the connection is not reused. */
  private unsolicited = false;
  /** Body bytes still to come of a Counted response. */
  private remaining = 0;
  /** Reading paused because the client's socket is full (the response timeout does not run meanwhile). */
  private waitingForClient = false;
  /** The response head, held back so it leaves in one write with the first body bytes. */
  private pendingHead: string | null = null;
  /** Header lines of a long response head, delivered before its end (more than 32 lines). */
  private longHead: string[] = [];
  /** The client connection a tunnel relays to. */
  private tunnelClient: ClientConnection | null = null;

  constructor(private readonly pool: UpstreamPool, private readonly timeouts: UpstreamTimeouts, now: number) {
    this.deadline = now + timeouts.connectMs;
    this.socket = connect({ host: pool.host, port: pool.port, noDelay: true, onread: { buffer: READ_BUFFER, callback: this.onRead.bind(this) } });
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
    this.socket.on('end', this.onEnd.bind(this));
    this.socket.on('drain', this.onDrain.bind(this));
    this.socket.on('error', () => {});
    this.socket.on('close', this.onClose.bind(this));
  }

  /** Sends a request head; the response is relayed to `client` and ends with `client.finish(ex)`. */
  begin(client: Responder, ex: Exchange, head: string, now: number): void {
    this.client = client;
    this.ex = ex;
    ex.upstream = this;
    ex.upstreamHead = head;
    this.gotBytes = false;
    this.complete = false;
    this.interim = false;
    this.unsolicited = false;
    this.reading = Reading.Start;
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

  /** `trailers`: trailer lines (`name: value\r\n` each) for a chunked body (an HTTP/2 client's, h2-headers.ts). */
  endBody(chunked: boolean, trailers = ''): void {
    if (chunked) this.socket.write(trailers === '' ? '0\r\n\r\n' : `0\r\n${trailers}\r\n`, 'latin1');
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

  /** The client's socket drained: read from the backend again. */
  resumeReading(): void {
    if (!this.waitingForClient) return;
    this.waitingForClient = false;
    if (this.client !== null) this.deadline = this.client.now() + this.timeouts.responseMs;
    // net.Socket cannot restart reads it stopped for an `onread` callback; the handle can.
    const handle = (this.socket as unknown as { _handle: { reading: boolean; readStart(): number } | null })._handle;
    if (handle !== null && !handle.reading) {
      handle.reading = true;
      handle.readStart();
    }
  }

  /**
   * Called by the worker's sweep: true when this connection's wait has run out
   * — connecting, waiting for the head (504), or between reads of the body
   * (the client connection is then cut).
   */
  expired(now: number): boolean {
    if (this.phase === Phase.Idle || this.phase === Phase.Closed || this.waitingForClient || now < this.deadline) return false;
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

  /** One read from the backend, in READ_BUFFER[0, n). Returning false stops reading until resumeReading. */
  private onRead(n: number, buf: Buffer): boolean {
    if (this.reading === Reading.Tunnel) return this.relayTunnel(buf, n);
    const client = this.client;
    const ex = this.ex;
    if (client === null || ex === null) {
      // Bytes nobody asked for: never let them prefix the next response.
      this.destroy();
      return false;
    }
    this.gotBytes = true;
    if (this.phase === Phase.Waiting) this.phase = Phase.Relaying;
    // A backend that stalls mid-response is given up on after the response timeout too.
    this.deadline = client.now() + this.timeouts.responseMs;
    if (this.reading === Reading.Start) {
      // HTTP/2 clients take llhttp's header list; the fast path yields HTTP/1.1 bytes.
      const head = ex.method === 'HEAD' || client.h2 ? null : parseSimpleHead(buf, n, OUT);
      if (head === null) {
        this.reading = Reading.Parsed;
      } else {
        this.startCounted(client as ClientConnection, ex, head, buf, n);
        return !this.waitingForClient;
      }
    }
    if (this.reading === Reading.Counted) {
      this.relayCounted(client as ClientConnection, buf, 0, n, 0);
      return !this.waitingForClient;
    }
    const ret = this.parser.execute(buf.subarray(0, n));
    if (this.upgraded && typeof ret === 'number') {
      this.startTunnel(Buffer.from(buf.subarray(ret, n)));
      return true;
    }
    if (this.complete) this.completeExchange(typeof ret === 'number' && !this.unsolicited);
    else if (typeof ret !== 'number') this.fail();
    return !this.waitingForClient;
  }

  /** A simple response (HTTP/1.1 clients only): its head, already in OUT, and the body bytes of this read leave in one write. */
  private startCounted(client: ClientConnection, ex: Exchange, head: SimpleHead, buf: Buffer, n: number): void {
    const close = ex.closeAfter || !ex.keepAlive || client.draining || ex.bodyPending;
    if (close) ex.closeAfter = true;
    ex.status = head.status;
    ex.headSent = true;
    this.upstreamKeepAlive = head.keepAlive;
    this.reading = Reading.Counted;
    this.remaining = head.contentLength;
    const end = close ? CONNECTION_CLOSE : ex.http10 ? CONNECTION_KEEP_ALIVE : CRLF;
    this.relayCounted(client, buf, head.bodyStart, n, copyBytes(end, 0, end.length, OUT, head.relayedEnd));
  }

  /**
   * Relays body bytes of a Counted response after the `queued` bytes already
   * in OUT (a head); completes the response at its length. Small bodies are
   * copied into OUT; big ones out of the shared read buffer into their own.
   */
  private relayCounted(client: ClientConnection, buf: Buffer, from: number, n: number, queued: number): void {
    const take = Math.min(n - from, this.remaining);
    this.remaining -= take;
    let ok: boolean;
    if (take <= MERGE_MAX) {
      ok = writeOut(client, copyBytes(buf, from, from + take, OUT, queued));
    } else {
      if (queued > 0) writeOut(client, queued);
      ok = client.write(Buffer.from(buf.subarray(from, from + take)));
    }
    if (!ok) this.holdForClient(client);
    if (this.remaining === 0) {
      this.complete = true;
      this.completeExchange(from + take === n);
    }
  }

  private holdForClient(client: Responder): void {
    // The client reads slower than the backend sends: hold the backend until the client drains.
    this.waitingForClient = true;
    client.waitForDrain();
  }

  private onEnd(): void {
    if (this.reading === Reading.Tunnel) {
      this.tunnelClient?.socket.end();
      return;
    }
    if (this.ex === null) return;
    // A close-delimited response ends here; anything else is truncated.
    const err = this.reading === Reading.Parsed ? this.parser.finish() : null;
    if (err === undefined && this.complete) this.completeExchange(false);
    else this.fail();
  }

  private onDrain(): void {
    this.client?.resumeFromUpstream();
  }

  private onClose(): void {
    if (this.reading === Reading.Tunnel) {
      this.tunnelClient?.destroy();
      this.parser.close();
      return;
    }
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
    const ex = this.ex;
    const client = this.client;
    const h = headers ?? this.longHead.splice(0);
    // A response nobody is waiting for (sent to an idle connection, or after a failure): onRead closes the connection.
    if (ex === null || client === null || this.complete) {
      this.unsolicited = true;
      return 0;
    }
    if (status < 200 && status !== 101) {
      // Interim (100 Continue, 103 Early Hints): relayed to HTTP/1.1 clients, then the real response follows.
      this.interim = true;
      if (client.h2) client.relayInterim(status, h);
      else if (!ex.http10) client.write(`HTTP/1.1 ${status} ${statusMessage}\r\n${relayedHeaderLines(h).lines}\r\n`);
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
      client.write(`HTTP/1.1 101 ${statusMessage}\r\n${relayedHeaderLines(h).lines}Connection: upgrade\r\nUpgrade: websocket\r\n\r\n`);
      return 0;
    }
    if (client.h2) {
      ex.status = status;
      ex.headSent = true;
      this.upstreamKeepAlive = keepAlive;
      this.rechunk = false;
      client.relayHead(ex, status, h);
      return ex.method === 'HEAD' ? 1 : 0;
    }
    const noBody = ex.method === 'HEAD' || status === 204 || status === 304;
    const { lines, hasLength: lengthKnown } = relayedHeaderLines(h);
    this.rechunk = !noBody && !lengthKnown && !ex.http10;
    // An HTTP/1.0 client gets an unknown-length body delimited by closing the connection.
    if (!noBody && !lengthKnown && ex.http10) ex.closeAfter = true;
    const close = ex.closeAfter || !ex.keepAlive || client.draining || ex.bodyPending;
    const framing = (this.rechunk ? 'Transfer-Encoding: chunked\r\n' : '') +
      (close ? 'Connection: close\r\n' : ex.http10 ? 'Connection: keep-alive\r\n' : '');
    if (close) ex.closeAfter = true;
    ex.status = status;
    ex.headSent = true;
    this.upstreamKeepAlive = keepAlive;
    this.pendingHead = `HTTP/1.1 ${status} ${statusMessage}\r\n${lines}${framing}\r\n`;
    return ex.method === 'HEAD' ? 1 : 0;
  }

  /**
   * Relays a body chunk llhttp parsed. A small chunk leaves in the same write
   * as the head (and its chunk framing): one syscall for the common small
   * response instead of a corked writev.
   */
  private onBody(chunk: Buffer): void {
    const client = this.client;
    if (client === null || this.complete) return;
    if (client.h2) {
      // llhttp hands body chunks over as copies: they can be queued on the stream as they are.
      if (!client.write(chunk)) this.holdForClient(client);
      return;
    }
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
    if (!ok) this.holdForClient(client);
  }

  private onMessageComplete(): void {
    if (this.client === null || this.complete) return;
    if (this.interim) {
      this.interim = false;
      return;
    }
    if (this.upgraded) return;
    const head = this.pendingHead;
    this.pendingHead = null;
    const end = this.rechunk ? '0\r\n\r\n' : '';
    if (head !== null) this.client.write(head + end);
    else if (end !== '') this.client.write(end);
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
      // The last read may have filled the client's socket yet finished the response: a pooled connection reads again.
      this.resumeReading();
      this.pool.release(this, client.now());
    } else {
      this.destroy();
    }
    client.finish(ex);
  }

  /** After a 101: the rest is raw bytes both ways, and this connection leaves the pool for good. */
  private startTunnel(rest: Buffer): void {
    // Only HTTP/1.1 WebSocket handshakes get here (an HTTP/2 exchange is never `websocket`).
    const client = this.client as ClientConnection;
    const ex = this.ex!;
    this.ex = null;
    this.client = null;
    ex.upstream = null;
    this.phase = Phase.Closed;
    this.reading = Reading.Tunnel;
    this.tunnelClient = client;
    client.tunnel(ex, this.socket, rest);
  }

  /** Tunnel bytes to the client (copied: the read buffer is reused); stops reading while the client is full. */
  private relayTunnel(buf: Buffer, n: number): boolean {
    const client = this.tunnelClient;
    if (client === null) return false;
    if (client.socket.write(Buffer.from(buf.subarray(0, n)))) return true;
    this.waitingForClient = true;
    client.waitForDrain(() => this.resumeReading());
    return false;
  }
}

/**
 * Writes OUT[0, length) to the client. A write that will be held — queued
 * behind others, or encrypted and completed later (TLS) — gets a copy (small
 * ones come from Node's buffer pool); otherwise OUT itself goes, and is
 * replaced if the socket kept hold of it after all.
 */
function writeOut(client: ClientConnection, length: number): boolean {
  const socket = client.socket as ClientConnection['socket'] & { encrypted?: boolean };
  if (socket.writableLength !== 0 || socket.encrypted === true) return client.write(Buffer.from(OUT.subarray(0, length)));
  const ok = client.write(OUT.subarray(0, length));
  if (socket.writableLength !== 0) OUT = Buffer.allocUnsafe(OUT_BYTES);
  return ok;
}

/**
 * The backend's header lines worth relaying: all but hop-by-hop ones (and
 * any header its Connection header names), in one pass over the list for
 * the usual response, a second only when Connection names extra headers.
 * Content-Length is kept: llhttp refuses a response that has it together
 * with Transfer-Encoding, so where it is present it frames the body.
 */
function relayedHeaderLines(h: string[]): { lines: string; hasLength: boolean } {
  let lines = '';
  let hasLength = false;
  let connection: string[] | null = null;
  for (let i = 0; i < h.length; i += 2) {
    const name = h[i]!;
    switch (classifyHeader(name)) {
      case Header.Connection:
        (connection ??= []).push(h[i + 1]!);
        break;
      case Header.ContentLength:
        hasLength = true;
        lines += `${name}: ${h[i + 1]!}\r\n`;
        break;
      case Header.KeepAlive: case Header.TE: case Header.Trailer: case Header.TransferEncoding: case Header.Upgrade: case Header.Proxy:
        break;
      default:
        lines += `${name}: ${h[i + 1]!}\r\n`;
    }
  }
  const listed = connectionListed(connection);
  if (listed !== null) {
    lines = '';
    for (let i = 0; i < h.length; i += 2) {
      const name = h[i]!;
      if (!isHopByHop(classifyHeader(name)) && !listed.has(name.toLowerCase())) lines += `${name}: ${h[i + 1]!}\r\n`;
    }
  }
  return { lines, hasLength };
}
