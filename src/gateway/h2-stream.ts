/**
 * One HTTP/2 request stream, answering like an HTTP/1.1 connection does for
 * one exchange (responder.ts): the upstream relay, static files and the
 * gateway's own pages write through it. Errors stay on the stream: a broken
 * response resets this stream only, never the client's other streams.
 *
 * The request body flows from the stream's 'data' events to the upstream,
 * pausing the stream (hence HTTP/2 flow control) while the backend is full;
 * the response flows the other way, holding the backend while the stream is.
 */
import { constants, type OutgoingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import type { Exchange } from './exchange.js';
import { h2LocalHeaders, h2ResponseHeaders, h2TrailerLines } from './h2-headers.js';
import { ERROR_PAGE_HEADERS, errorPage, httpDate } from './pages.js';
import { countUpstreamFailure } from './metrics.js';

/** What a stream needs from its connection. */
export interface H2Session {
  readonly draining: boolean;
  now(): number;
  /** The stream answered or went away. `cancelled`: the client reset it before its answer. */
  streamClosed(s: H2Stream, cancelled: boolean): void;
  /** Counts and logs a finished exchange. */
  record(ex: Exchange): void;
}

export class H2Stream {
  /** Discriminates the responders (see responder.ts). */
  readonly h2 = true;
  /** When the request began, on the worker's coarse clock (request timeout). */
  readonly openedAt: number;
  private drainWaiter: (() => void) | null = null;
  private pausedForUpstream = false;
  /** The response's last frame is queued (END_STREAM). */
  private ended = false;
  private closed = false;

  constructor(private readonly session: H2Session, readonly stream: ServerHttp2Stream, readonly ex: Exchange) {
    this.openedAt = session.now();
    stream.on('data', this.onData.bind(this));
    stream.on('end', this.onEnd.bind(this));
    stream.on('trailers', this.onTrailers.bind(this));
    stream.on('drain', this.onDrain.bind(this));
    stream.on('error', () => {});
    stream.on('close', this.onClose.bind(this));
  }

  get draining(): boolean {
    return this.session.draining;
  }

  now(): number {
    return this.session.now();
  }

  // ---- the request body ----

  /** The largest body this request may send (set once routed). */
  bodyLimit = 0;

  private onData(chunk: Buffer): void {
    const ex = this.ex;
    ex.bodyBytes += chunk.length;
    if (ex.bodyBytes > this.bodyLimit) {
      this.bodyTooLarge();
      return;
    }
    if (ex.done || ex.reject !== 0) return;
    const up = ex.upstream;
    if (up !== null) {
      if (!up.sendBody(chunk, ex.chunked)) {
        this.pausedForUpstream = true;
        this.stream.pause();
      }
    } else if (!ex.dispatched) {
      (ex.pendingBody ??= []).push(chunk);
    }
  }

  /** Trailer lines from the client's trailing HEADERS, for a chunked upstream body (a sized one cannot carry them). */
  private trailers = '';

  private onTrailers(_headers: unknown, _flags: number, raw: string[]): void {
    if (this.ex.chunked) this.trailers = h2TrailerLines(raw);
  }

  private onEnd(): void {
    const ex = this.ex;
    if (ex.bodyComplete) return;
    ex.bodyComplete = true;
    if (ex.upstream !== null && ex.reject === 0) ex.upstream.endBody(ex.chunked, this.trailers);
  }

  private bodyTooLarge(): void {
    const ex = this.ex;
    if (ex.reject === 413) return;
    ex.reject = 413;
    ex.pendingBody = null;
    if (ex.done || ex.headSent) {
      this.destroy();
      return;
    }
    this.abandonWork();
    this.respondError(ex, 413);
  }

  resumeFromUpstream(): void {
    if (!this.pausedForUpstream) return;
    this.pausedForUpstream = false;
    if (!this.closed) this.stream.resume();
  }

  // ---- the response ----

  write(data: string | Buffer): boolean {
    if (this.closed || this.ended) return true;
    this.ex.bytesOut += data.length;
    return typeof data === 'string' ? this.stream.write(data, 'latin1') : this.stream.write(data);
  }

  /** HEADERS and DATA are separate frames, and nghttp2 sends what a tick queued in one write: nothing to batch here. */
  cork(): void {}
  uncork(): void {}

  /** A response head from the gateway itself (the body follows through `write`). */
  writeHead(ex: Exchange, status: number, headerLines: string, contentLength: number): void {
    const headers = h2LocalHeaders(headerLines, status);
    headers.date = httpDate();
    const noBody = ex.method === 'HEAD' || status === 204 || status === 304;
    if (status !== 204 && status !== 304) headers['content-length'] = contentLength;
    this.respond(ex, status, headers, noBody || contentLength === 0);
  }

  /** The backend's response head (upstream.ts), hop-by-hop fields dropped. */
  relayHead(ex: Exchange, status: number, fields: string[]): void {
    this.respond(ex, status, h2ResponseHeaders(fields, status), ex.method === 'HEAD' || status === 204 || status === 304);
  }

  /** An interim response (100 Continue, 103 Early Hints) from the backend, as an extra HEADERS frame. */
  relayInterim(status: number, fields: string[]): void {
    if (this.closed || this.ex.headSent) return;
    try {
      this.stream.additionalHeaders(h2ResponseHeaders(fields, status));
    } catch {
      // An interim response is advisory: one HTTP/2 cannot carry is dropped.
    }
  }

  private respond(ex: Exchange, status: number, headers: OutgoingHttpHeaders, endStream: boolean): void {
    ex.status = status;
    ex.headSent = true;
    if (this.closed) return;
    try {
      this.stream.respond(headers, { endStream });
    } catch {
      // A field HTTP/2 cannot carry (a backend's invalid header): this response cannot be given.
      this.destroy();
      return;
    }
    if (endStream) this.ended = true;
  }

  respondLocal(ex: Exchange, status: number, headerLines: string, body: Buffer | null): void {
    this.writeHead(ex, status, headerLines, body === null ? 0 : body.length);
    if (body !== null && body.length > 0 && ex.method !== 'HEAD') this.write(body);
    this.finish(ex);
  }

  respondError(ex: Exchange, status: number, extraHeaders = ''): void {
    this.respondLocal(ex, status, extraHeaders + ERROR_PAGE_HEADERS, errorPage(status));
  }

  waitForDrain(resume?: () => void): void {
    this.drainWaiter = resume ?? null;
  }

  private onDrain(): void {
    this.ex.upstream?.resumeReading();
    const waiter = this.drainWaiter;
    this.drainWaiter = null;
    waiter?.();
  }

  /** The response is complete: count it and end the stream; an upload still arriving is stopped (RST_STREAM NO_ERROR). */
  finish(ex: Exchange): void {
    if (ex.done) return;
    ex.done = true;
    this.session.record(ex);
    if (this.closed) return;
    if (!this.ended) {
      this.ended = true;
      this.stream.end();
    }
    if (!ex.bodyComplete) {
      // After our last frame is out, tell the client to stop sending (RFC 9113 §8.1).
      if (this.stream.writableFinished) this.stream.close(constants.NGHTTP2_NO_ERROR);
      else this.stream.once('finish', () => this.stream.close(constants.NGHTTP2_NO_ERROR));
    }
  }

  upstreamFailed(ex: Exchange, stale: boolean, timedOut: boolean): void {
    if (this.closed || ex.done) return;
    if (!(stale && ex.retryable && ex.site?.pool && !ex.headSent)) countUpstreamFailure(ex.site?.stats, timedOut);
    if (ex.headSent) {
      this.destroy(); // a truncated response: the client must see the failure
      return;
    }
    if (stale && ex.retryable && ex.site?.pool) {
      ex.retried = true;
      ex.site.pool.open(this.now()).begin(this, ex, ex.upstreamHead, this.now());
      return;
    }
    this.respondError(ex, timedOut ? 504 : 502);
  }

  /** A request that took too long to send its body: 408 if nothing was answered yet, else the stream is reset. */
  timedOut(): void {
    const ex = this.ex;
    if (ex.done) return;
    this.abandonWork();
    if (ex.headSent) this.destroy();
    else this.respondError(ex, 408);
  }

  /** Resets this stream only (the connection's other streams go on). */
  destroy(): void {
    if (!this.closed) this.stream.close(constants.NGHTTP2_INTERNAL_ERROR);
  }

  private abandonWork(): void {
    const ex = this.ex;
    ex.upstream?.abandon();
    ex.upstream = null;
    ex.onAbort?.();
    ex.onAbort = null;
  }

  private onClose(): void {
    if (this.closed) return;
    this.closed = true;
    const ex = this.ex;
    const cancelled = !ex.done;
    if (cancelled) {
      this.abandonWork();
      if (ex.status === 0) ex.status = 499; // the client went away first (nginx's code)
      ex.done = true;
      this.session.record(ex);
    }
    this.session.streamClosed(this, cancelled);
  }
}
