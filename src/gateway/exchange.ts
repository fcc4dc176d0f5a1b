/**
 * One request and its response on a client connection. Plain fields, set once
 * per request: the hot path reads them without getters or closures.
 */
import type { NormalisedHost } from './host.js';
import type { Site } from './site.js';
import type { UpstreamConnection } from './upstream.js';

export class Exchange {
  // The request, as parsed.
  method = '';
  /** Origin-form target (path and query) sent upstream; '*' for OPTIONS *. */
  target = '';
  http10 = false;
  /** Flat [name, value, …] as received (latin1). */
  headers: string[] = [];
  keepAlive = false;
  /** Host header value as received (absolute-form authority when the target carried one). */
  hostRaw: string | null = null;
  /** True when the target was absolute-form: Host is then replaced by the target's authority. */
  absoluteForm = false;
  host: NormalisedHost | null = null;
  /** The Connection header values, when any (for hop-by-hop stripping). */
  connection: string[] | null = null;
  chunked = false;
  contentLength = -1;
  /** WebSocket handshake: the tunnel starts after a 101. */
  websocket = false;
  /** Bytes the client sent after a WebSocket handshake head, before the 101. */
  tunnelHead: Buffer | null = null;

  site: Site | null = null;
  /** Answer with this status instead of routing (a bad request found while parsing). */
  reject = 0;

  // The request body, as it arrives.
  bodyBytes = 0;
  bodyComplete = false;
  /** Body chunks that arrived before the exchange was dispatched (pipelining). */
  pendingBody: Buffer[] | null = null;
  dispatched = false;

  // The response.
  startedAt = 0;
  status = 0;
  bytesOut = 0;
  headSent = false;
  /** Close the client connection once this response is written. */
  closeAfter = false;
  /** Finished: counted and logged, the connection has moved on. */
  done = false;
  upstream: UpstreamConnection | null = null;
  /** The head sent upstream, kept for the one retry on a stale pooled connection. */
  upstreamHead = '';
  retried = false;
  /** Stops local work (a static file stream) when the client goes away. */
  onAbort: (() => void) | null = null;

  /**
   * The request has a body that has not all arrived. Answering now means the
   * connection must close: the client may never send it (Expect:
   * 100-continue), and its bytes must not be read as the next request.
   */
  get bodyPending(): boolean {
    return !this.bodyComplete && (this.contentLength > 0 || this.chunked);
  }

  /** Safe to resend on a fresh upstream connection: no body, and a method without side effects. */
  get retryable(): boolean {
    return !this.retried && this.bodyBytes === 0 && this.contentLength <= 0 && !this.chunked &&
      (this.method === 'GET' || this.method === 'HEAD' || this.method === 'OPTIONS');
  }
}
