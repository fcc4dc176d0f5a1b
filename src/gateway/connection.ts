/**
 * One visitor's connection: llhttp parses the requests, each becomes an
 * `Exchange` that is routed by Host and answered by its site's handler, one
 * at a time in order (pipelined requests wait, and the socket stops reading
 * while they do). Timeouts are deadlines checked by the worker's sweep, so a
 * request costs no timer.
 *
 * Anything the parser rejects (see http-parser.ts) answers 400 (431 for an
 * oversized head) and closes the connection: after a framing error nothing
 * later on the connection can be trusted to belong to a request boundary.
 */
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { WorkerContext } from './context.js';
import { answerAcmeHttp01, isAcmeHttp01 } from './acme-http.js';
import { dispatchExchange } from './dispatch.js';
import { Exchange } from './exchange.js';
import { METHODS, REQUEST, createParser, feedParser, setOnMessageComplete, type HttpParser, type ParseError, type SocketFeed } from './http-parser.js';
import { ERROR_PAGE_HEADERS, errorPage, httpDate, reason } from './pages.js';
import { recordExchange } from './record.js';
import { readRequestHead } from './request-head.js';
import { isFramingError } from './security.js';
import { countUpstreamFailure } from './metrics.js';

/** The HTTP/2 client connection preface (RFC 9113 §3.4). */
const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/** How long a half-closed connection may keep sending before it is reset. */
const LINGER_MS = 2_000;
const PAUSED_FOR_QUEUE = 1;
const PAUSED_FOR_UPSTREAM = 2;

const enum Reading {
  /** Between requests. */
  Idle,
  /** Inside a request head (header timeout running). */
  Head,
  /** Inside a request body (request timeout running). */
  Body,
  /** No more requests on this connection (after an error, a rejected body, or an upgrade). */
  Stopped,
}

export interface ListenerInfo {
  id: string;
  protocol: 'http' | 'https';
  /** `https`: refuse handshakes that name no certificate (updated in place by a new configuration). */
  strictSni: boolean;
  /** `https`: certificate id for clients without (matching) SNI. */
  defaultCertificate: string | undefined;
}

export class ClientConnection {
  /** Discriminates the responders (see responder.ts). */
  readonly h2 = false;
  /** Client address, IPv4-mapped IPv6 unwrapped. */
  readonly ip: string;
  /** Finish the current response, then close (listener removed, worker stopping). */
  draining = false;
  private readonly parser: HttpParser;
  private active: Exchange | null = null;
  private queue: Exchange[] | null = null;
  private receiving: Exchange | null = null;
  private reading = Reading.Idle;
  private readStartedAt = 0;
  private idleSince: number;
  private paused = 0;
  private closed = false;
  private clientEnded = false;
  /** When the gateway half-closed the connection (0: it has not). */
  private closingSince = 0;
  private tunnelPeer: Socket | null = null;
  private drainWaiter: (() => void) | null = null;
  private longHead: string[] = [];
  private longUrl = '';
  private readonly feed: SocketFeed;
  /** The last parse met an Upgrade request, after which the parser stops early. */
  private upgradeSeen = false;
  /** A request head was read on this connection (an h2c preface is only taken before any). */
  private sawRequest = false;
  /** The parser calls onMessageComplete (cleared while requests come without bodies). */
  private completeArmed = true;
  private readonly completeHandler: () => void;
  /** A request head or a whole request completed during the current read (see onExecute). */
  private progressInRead = false;

  constructor(
    private readonly ctx: WorkerContext,
    readonly listener: ListenerInfo,
    readonly socket: Socket,
    ip: string,
    private readonly onClosed: (c: ClientConnection) => void,
    /** The normalised SNI name the TLS connection was made for (null: plain HTTP, or no SNI). */
    private readonly sni: string | null = null,
    /** Plain HTTP listeners: takes the socket over as HTTP/2 when it opens with the h2 preface (h2c, prior knowledge). */
    private readonly startH2c: (() => void) | null = null,
  ) {
    this.ip = ip;
    this.idleSince = ctx.now;
    this.completeHandler = this.onMessageComplete.bind(this);
    this.parser = createParser(REQUEST, ctx.opts.maxHeaderSize, {
      onHeaders: this.onHeaders.bind(this),
      onHeadersComplete: this.onHeadersComplete.bind(this),
      onBody: this.onBody.bind(this),
      onMessageComplete: this.completeHandler,
    });
    this.feed = feedParser(this.parser, socket, this.onExecute.bind(this));
    socket.on('drain', this.onDrain.bind(this));
    socket.on('end', this.onEnd.bind(this));
    socket.on('error', () => {});
    socket.on('close', this.onClose.bind(this));
  }

  now(): number {
    return this.ctx.now;
  }

  // ---- parsing ----

  /** After the parser ran over one read (`current` gives its bytes, for what follows an upgrade head). */
  private onExecute(ret: number | ParseError, current: () => Buffer): void {
    if (this.closingSince !== 0 || this.closed) return; // discarding what a closing client still sends
    if (typeof ret !== 'number') {
      if (ret.code === 'HPE_PAUSED_H2_UPGRADE' && this.handOverToH2(ret, current())) return;
      if (this.reading !== Reading.Stopped) this.onParseError(ret);
      return;
    }
    // Bytes that completed neither a head nor a request while idle are the start of a head: the header
    // timeout starts. (This replaces llhttp's message-begin callback, one native→JS call per request.)
    // Bytes left after a complete request stay under the shorter keep-alive timeout until their head completes.
    if (this.reading === Reading.Idle && !this.progressInRead) {
      this.reading = Reading.Head;
      this.readStartedAt = this.ctx.now;
    }
    this.progressInRead = false;
    if (!this.upgradeSeen) return;
    // llhttp stops at the end of an upgrade request's head; only then can bytes be left over.
    this.upgradeSeen = false;
    const chunk = current();
    if (ret > 0 && ret < chunk.length) {
      const rest = chunk.subarray(ret);
      if (this.reading === Reading.Stopped) {
        // The rest belongs to a WebSocket tunnel (or to nobody, after an early answer).
        const ex = this.lastQueued();
        if (ex !== null && ex.websocket) ex.tunnelHead = Buffer.from(rest);
      } else {
        // A non-WebSocket Upgrade was served as a plain request: parsing goes on.
        this.onExecute(this.parser.execute(rest), () => rest);
      }
    }
  }

  /**
   * The HTTP/2 connection preface as the very first bytes (llhttp pauses
   * right after it): the socket goes to an H2Connection with those bytes put
   * back, and this object falls silent. Anywhere else the preface is a 400.
   */
  private handOverToH2(err: ParseError, chunk: Buffer): boolean {
    if (this.startH2c === null || this.sawRequest || err.bytesParsed !== H2_PREFACE.length ||
      chunk.length < H2_PREFACE.length || !chunk.subarray(0, H2_PREFACE.length).equals(H2_PREFACE)) return false;
    this.closed = true;
    this.feed.release();
    // We are inside the parser's own execute callback, and its native side touches itself after we return:
    // freeing it now is a use-after-free that corrupted the worker's heap under load (as Node's freeParser, wait).
    const parser = this.parser;
    setImmediate(() => parser.close());
    this.socket.unshift(Buffer.from(chunk));
    this.startH2c();
    return true;
  }

  private lastQueued(): Exchange | null {
    return this.queue !== null && this.queue.length > 0 ? this.queue[this.queue.length - 1]! : this.active;
  }

  private onHeaders(headers: string[], url: string): void {
    for (const x of headers) this.longHead.push(x);
    this.longUrl += url;
  }

  private onHeadersComplete(
    major: number, minor: number, headers: string[] | undefined, method: number, url: string | undefined,
    _status: number, _message: string, upgrade: boolean, keepAlive: boolean,
  ): number {
    if (this.reading === Reading.Stopped || this.closed) return 0;
    if (upgrade) this.upgradeSeen = true;
    this.progressInRead = true;
    this.sawRequest = true;
    const ex = new Exchange();
    ex.startedAt = performance.now();
    ex.method = METHODS[method] ?? '';
    ex.http10 = minor === 0;
    ex.keepAlive = keepAlive;
    ex.headers = headers ?? this.longHead.splice(0);
    const target = url ?? this.longUrl;
    this.longUrl = '';
    if (major !== 1) ex.reject = 505;
    else if (readRequestHead(ex, target, upgrade, this.ctx.opts.maxHeadersCount)) this.ctx.security.note('smuggling', this.ip);
    if (ex.reject === 0 && this.sni !== null) {
      // No domain fronting: a request may only name the host its TLS connection was made (and its certificate chosen) for.
      if (ex.host === null) ex.host = { name: this.sni, isIp: false };
      else if (ex.host.name !== this.sni) ex.reject = 421;
    }
    if (ex.reject === 0) {
      ex.site = this.ctx.routes.lookup(this.listener.id, ex.host);
      const limit = ex.site?.maxBodyBytes ?? this.ctx.opts.maxBodyBytes;
      if (ex.contentLength > limit) ex.reject = 413;
    }
    if (ex.reject !== 0) {
      ex.closeAfter = true;
      this.stopReading();
    } else if (ex.websocket) {
      // The bytes after this head belong to the tunnel, not to the parser.
      this.stopReading();
    } else if (!upgrade && ex.contentLength <= 0 && !ex.chunked) {
      // llhttp completes a request without a body right after its head: completing it here spares
      // the parser's message-complete callback (one native→JS call per request).
      ex.bodyComplete = true;
      this.reading = Reading.Idle;
      this.armMessageComplete(false);
      this.enqueue(ex);
      return 0;
    } else {
      this.reading = Reading.Body;
    }
    this.armMessageComplete(true);
    this.receiving = ex;
    this.enqueue(ex);
    return 0;
  }

  private armMessageComplete(on: boolean): void {
    if (on === this.completeArmed) return;
    this.completeArmed = on;
    setOnMessageComplete(this.parser, on ? this.completeHandler : undefined);
  }

  private onBody(chunk: Buffer): void {
    const ex = this.receiving;
    if (ex === null || this.closed) return;
    ex.bodyBytes += chunk.length;
    if (ex.bodyBytes > (ex.site?.maxBodyBytes ?? this.ctx.opts.maxBodyBytes)) {
      this.bodyTooLarge(ex);
      return;
    }
    if (ex.done || ex.reject !== 0) return;
    const up = ex.upstream;
    if (up !== null) {
      if (!up.sendBody(chunk, ex.chunked)) this.pause(PAUSED_FOR_UPSTREAM);
    } else if (!ex.dispatched) {
      (ex.pendingBody ??= []).push(chunk);
    }
  }

  private onMessageComplete(): void {
    this.progressInRead = true;
    const ex = this.receiving;
    this.receiving = null;
    if (this.reading !== Reading.Stopped) this.reading = Reading.Idle;
    if (ex === null) return;
    ex.bodyComplete = true;
    if (ex.upstream !== null && ex.reject === 0) ex.upstream.endBody(ex.chunked);
  }

  private bodyTooLarge(ex: Exchange): void {
    if (ex.reject === 413) return;
    ex.reject = 413;
    ex.closeAfter = true;
    ex.pendingBody = null;
    this.stopReading();
    if (!ex.dispatched) return; // answered 413 when its turn comes
    if (ex.done || ex.headSent) {
      this.destroy();
      return;
    }
    this.abandonWork(ex);
    this.respondError(ex, 413);
  }

  private onParseError(err: ParseError): void {
    this.stopReading();
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
    this.ctx.security.note(isFramingError(err.code) ? 'smuggling' : 'malformed', this.ip);
    const partial = this.receiving;
    if (partial !== null) {
      // A framing error inside a body: that request is broken too.
      this.receiving = null;
      partial.reject = status;
      partial.closeAfter = true;
      partial.pendingBody = null;
      if (!partial.dispatched) return;
      if (partial.done || partial.headSent) {
        this.destroy();
        return;
      }
      this.abandonWork(partial);
      this.respondError(partial, status);
      return;
    }
    const bad = new Exchange();
    bad.startedAt = performance.now();
    bad.reject = status;
    bad.closeAfter = true;
    bad.bodyComplete = true;
    this.enqueue(bad);
  }

  private stopReading(): void {
    this.reading = Reading.Stopped;
    this.feed.pause();
  }

  // ---- dispatch ----

  private enqueue(ex: Exchange): void {
    if (this.active === null) {
      this.dispatch(ex);
    } else {
      (this.queue ??= []).push(ex);
      this.pause(PAUSED_FOR_QUEUE);
    }
  }

  private dispatch(ex: Exchange): void {
    this.active = ex;
    ex.dispatched = true;
    if (this.listener.protocol === 'http' && isAcmeHttp01(this.ctx, ex)) {
      answerAcmeHttp01(this.ctx, this, ex, () => dispatchExchange(this.ctx, this, ex, this.ip, this.listener.protocol));
      return;
    }
    dispatchExchange(this.ctx, this, ex, this.ip, this.listener.protocol);
  }

  /** Called by the upstream connection when it failed before or while relaying the response. */
  upstreamFailed(ex: Exchange, stale: boolean, timedOut: boolean): void {
    if (this.closed || ex.done) return;
    if (!(stale && ex.retryable && ex.site?.pool && !ex.headSent)) countUpstreamFailure(ex.site?.stats, timedOut);
    if (ex.headSent) {
      this.destroy(); // a truncated response: the client must see the failure
      return;
    }
    if (stale && ex.retryable && ex.site?.pool) {
      // The backend closed a pooled connection just as it was reused: one retry on a fresh one.
      ex.retried = true;
      ex.site.pool.open(this.ctx.now).begin(this, ex, ex.upstreamHead, this.ctx.now);
      return;
    }
    if (!ex.bodyComplete) ex.closeAfter = true;
    this.respondError(ex, timedOut ? 504 : 502);
  }

  // ---- writing ----

  write(data: string | Buffer): boolean {
    if (this.closed) return true;
    const ex = this.active;
    if (ex !== null) ex.bytesOut += data.length;
    return this.socket.write(data, 'latin1');
  }

  cork(): void {
    this.socket.cork();
  }

  uncork(): void {
    this.socket.uncork();
  }

  /** Writes a response head with a known body length (the body follows through `write`). */
  writeHead(ex: Exchange, status: number, headerLines: string, contentLength: number): void {
    const close = ex.closeAfter || !ex.keepAlive || this.draining || this.clientEnded || ex.bodyPending;
    if (close) ex.closeAfter = true;
    ex.status = status;
    ex.headSent = true;
    this.write(`HTTP/1.1 ${status} ${reason(status)}\r\nDate: ${httpDate()}\r\n${headerLines}Content-Length: ${contentLength}\r\n${
      close ? 'Connection: close\r\n' : ex.http10 ? 'Connection: keep-alive\r\n' : ''}\r\n`);
  }

  /** A whole response from the gateway itself (errors, redirects, small files). */
  respondLocal(ex: Exchange, status: number, headerLines: string, body: Buffer | null): void {
    this.cork();
    this.writeHead(ex, status, headerLines, body === null ? 0 : body.length);
    if (body !== null && ex.method !== 'HEAD') this.write(body);
    this.uncork();
    this.finish(ex);
  }

  respondError(ex: Exchange, status: number, extraHeaders = ''): void {
    this.respondLocal(ex, status, extraHeaders + ERROR_PAGE_HEADERS, errorPage(status));
  }

  /** Called when the socket can take more after `write` returned false. */
  waitForDrain(resume?: () => void): void {
    this.drainWaiter = resume ?? null;
  }

  private onDrain(): void {
    const ex = this.active;
    if (ex?.upstream) ex.upstream.resumeReading();
    const waiter = this.drainWaiter;
    this.drainWaiter = null;
    waiter?.();
  }

  resumeFromUpstream(): void {
    this.resume(PAUSED_FOR_UPSTREAM);
  }

  /** The response to `ex` is complete: count it, then serve the next request or close. */
  finish(ex: Exchange): void {
    if (ex.done) return;
    ex.done = true;
    this.record(ex);
    if (this.active === ex) this.active = null;
    if (this.closed) return;
    if (ex.closeAfter || !ex.keepAlive || this.draining) {
      this.closeGracefully();
      return;
    }
    this.idleSince = this.ctx.now;
    const next = this.queue?.shift();
    if (next !== undefined) {
      this.dispatch(next);
    } else {
      this.resume(PAUSED_FOR_QUEUE);
      if (this.clientEnded && this.receiving === null) this.closeGracefully();
    }
  }

  private record(ex: Exchange): void {
    recordExchange(this.ctx, this.listener.id, this.ip, ex);
  }

  /**
   * After a 101 from the backend: bytes flow both ways untouched until either
   * side closes. This side pipes client → backend; the upstream connection
   * relays backend → client (its reads land in a shared buffer, not a stream).
   */
  tunnel(ex: Exchange, upstream: Socket, rest: Buffer): void {
    ex.done = true;
    this.record(ex);
    this.active = null;
    if (this.closed) {
      upstream.destroy();
      return;
    }
    this.tunnelPeer = upstream;
    if (ex.tunnelHead !== null && ex.tunnelHead.length > 0) upstream.write(ex.tunnelHead);
    if (rest.length > 0) this.socket.write(rest);
    this.feed.release();
    this.socket.pipe(upstream);
    this.socket.resume();
  }

  private pause(reason: number): void {
    if (this.paused === 0) this.feed.pause();
    this.paused |= reason;
  }

  private resume(reason: number): void {
    // Not paused for this reason: nothing to restart (spares a native readStart per request).
    if ((this.paused & reason) === 0) return;
    this.paused &= ~reason;
    if (this.paused === 0 && !this.closed && this.reading !== Reading.Stopped) this.feed.resume();
  }

  // ---- lifecycle ----

  /** Checked by the worker's sweep (a few times a second). */
  checkTimeouts(now: number): void {
    if (this.closed || this.tunnelPeer !== null) return;
    if (this.closingSince !== 0) {
      if (now - this.closingSince > LINGER_MS) this.destroy();
      return;
    }
    const up = this.active?.upstream;
    if (up != null && up.expired(now)) return;
    const opts = this.ctx.opts;
    if (this.reading === Reading.Head && now - this.readStartedAt > opts.headersTimeoutMs) this.requestTimedOut();
    else if (this.reading === Reading.Body && now - this.readStartedAt > opts.requestTimeoutMs) this.requestTimedOut();
    else if (this.reading === Reading.Idle && this.active === null && now - this.idleSince > opts.keepAliveTimeoutMs) this.destroy();
  }

  /** A head or body that takes too long (slowloris): 408 when nothing else is being answered, then close. */
  private requestTimedOut(): void {
    this.stopReading();
    if (this.active !== null) {
      this.destroy();
      return;
    }
    const partial = this.receiving;
    this.receiving = null;
    const ex = partial ?? new Exchange();
    if (partial === null) ex.startedAt = performance.now();
    ex.reject = 408;
    ex.closeAfter = true;
    if (ex.dispatched) {
      this.destroy();
      return;
    }
    this.dispatch(ex);
  }

  /** Stop taking requests; close now if idle, else after the current response. */
  drain(): void {
    this.draining = true;
    if (this.active === null && this.tunnelPeer === null) this.destroy();
  }

  destroy(): void {
    this.socket.destroy();
  }

  /**
   * Sends FIN after the last response and discards whatever the client still
   * sends (an oversized body), so it reads our answer instead of a reset;
   * the sweep destroys the socket if the client does not close within LINGER_MS.
   */
  private closeGracefully(): void {
    this.stopReading();
    this.closingSince = this.ctx.now;
    this.socket.end();
    this.feed.resume();
  }

  private onEnd(): void {
    if (this.closed) return; // handed over to HTTP/2, or gone
    this.clientEnded = true;
    if (this.tunnelPeer !== null) return; // pipe() carries the half-close
    if (this.active === null && this.receiving === null) this.closeGracefully();
  }

  private abandonWork(ex: Exchange): void {
    ex.upstream?.abandon();
    ex.upstream = null;
    ex.onAbort?.();
    ex.onAbort = null;
  }

  private onClose(): void {
    if (this.closed) return;
    this.closed = true;
    const active = this.active;
    if (active !== null && !active.done) {
      this.abandonWork(active);
      if (active.status === 0) active.status = 499; // the client closed first (nginx's code)
      active.done = true;
      this.record(active);
    }
    for (const ex of this.queue ?? []) this.abandonWork(ex);
    this.tunnelPeer?.destroy();
    this.parser.close();
    this.onClosed(this);
  }
}
