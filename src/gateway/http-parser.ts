/**
 * Node's own HTTP/1.1 parser (llhttp, in C), used directly.
 *
 * Why not `http.Server`: a proxy built on IncomingMessage/ServerResponse and
 * ClientRequest spends most of its time in stream machinery (a naive one does
 * about 0.2× nginx here). Driving llhttp ourselves keeps exactly the strictness
 * of Node's server in non-insecure mode (CL+TE, duplicate Content-Length,
 * obs-fold, bare LF, invalid header characters and bad chunk framing are parse
 * errors) while the hot path forwards bytes with a handful of calls.
 *
 * `_http_common` is Node's internal module; the shape used here is stable
 * across Node 20 (the machine's), and `assertParserShape` fails loudly at
 * start if a Node upgrade changes it.
 */
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';

export interface HttpParser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenientFlags: number): void;
  /** Bytes consumed, or an Error with `code` ('HPE_…') and `bytesParsed`. */
  execute(data: Buffer): number | ParseError;
  /** End of input: completes a close-delimited message, or errors on a truncated one. */
  finish(): undefined | ParseError;
  close(): void;
  /** Reads straight from a socket's native stream (no JS Buffer or stream events per read); results arrive through kOnExecute. */
  consume(handle: object): void;
  unconsume(): void;
  /** Inside kOnExecute: the bytes of the read just parsed. */
  getCurrentBuffer(): Buffer;
  [slot: number]: unknown;
}

export interface ParseError extends Error {
  code: string;
  reason?: string;
  bytesParsed: number;
}

/**
 * Called when the head is parsed. `headers` is the flat [name, value, …] list
 * (undefined when long heads were delivered through onHeaders). Return 1 to tell
 * a response parser there is no body (the answer to a HEAD), else 0.
 */
export type OnHeadersComplete = (
  versionMajor: number, versionMinor: number, headers: string[] | undefined, method: number,
  url: string | undefined, statusCode: number, statusMessage: string, upgrade: boolean, shouldKeepAlive: boolean,
) => number;

interface HttpParserConstructor {
  new (): HttpParser;
  REQUEST: number;
  RESPONSE: number;
  kOnMessageBegin: number;
  kOnHeaders: number;
  kOnHeadersComplete: number;
  kOnBody: number;
  kOnMessageComplete: number;
  kOnExecute: number;
  kLenientNone: number;
}

const common = createRequire(import.meta.url)('_http_common') as { HTTPParser: HttpParserConstructor; methods: string[] };

export const HTTPParser = common.HTTPParser;
/** Method names by llhttp's method index. */
export const METHODS: readonly string[] = common.methods;

export const { REQUEST, RESPONSE, kOnMessageBegin, kOnHeaders, kOnHeadersComplete, kOnBody, kOnMessageComplete, kOnExecute, kLenientNone } = HTTPParser;

export function assertParserShape(): void {
  const p = new HTTPParser();
  const slots = [kOnMessageBegin, kOnHeaders, kOnHeadersComplete, kOnBody, kOnMessageComplete, kOnExecute];
  if (typeof p.execute !== 'function' || typeof p.initialize !== 'function' || typeof p.consume !== 'function' || slots.some((s) => typeof s !== 'number') || kLenientNone !== 0) {
    throw new Error(`this Node.js (${process.version}) has an HTTP parser binding the gateway does not know`);
  }
  p.close();
}

/** The native stream behind a net.Socket, when a parser can consume it. */
interface StreamHandle {
  isStreamBase?: boolean;
  _consumed?: boolean;
  /** net.Socket's own record of whether it reads; kept true to the handle so `socket.resume()` works after `release`. */
  reading?: boolean;
  readStart(): number;
  readStop(): number;
}

/**
 * Feeds `parser` from `socket` the fastest way there is: straight from the
 * native stream (what Node's http server does), or else through 'data'
 * events. Either way `onExecute` gets each result and the bytes it came from.
 * Returns the controls to stop and restart reading, and to hand the socket
 * back to JS streams (for a tunnel).
 */
export function feedParser(
  parser: HttpParser, socket: Socket, onExecute: (ret: number | ParseError, current: () => Buffer) => void,
): SocketFeed {
  const handle = (socket as unknown as { _handle: StreamHandle | null })._handle;
  if (handle?.isStreamBase === true && handle._consumed !== true) {
    handle._consumed = true;
    const current = (): Buffer => parser.getCurrentBuffer();
    parser[kOnExecute] = (ret: number | ParseError) => onExecute(ret, current);
    parser.consume(handle);
    return {
      pause: () => {
        handle.reading = false;
        handle.readStop();
      },
      resume: () => {
        handle.reading = true;
        handle.readStart();
      },
      release: () => {
        parser.unconsume();
        handle._consumed = false;
        // net.Socket thinks its first read is still pending (nothing was ever pushed through it), so it would never start one.
        handle.reading = true;
        handle.readStart();
      },
    };
  }
  const onData = (chunk: Buffer): void => onExecute(parser.execute(chunk), () => chunk);
  socket.on('data', onData);
  return {
    pause: () => { socket.pause(); },
    resume: () => { socket.resume(); },
    release: () => { socket.removeListener('data', onData); },
  };
}

export interface SocketFeed {
  pause(): void;
  resume(): void;
  /** Stops feeding the parser; the socket's bytes flow through its JS stream again. */
  release(): void;
}

/**
 * Sets or clears the message-complete callback between messages: a request
 * parser clears it while requests come without bodies (the connection
 * completes those at their head) and sets it again for one with a body.
 */
export function setOnMessageComplete(parser: HttpParser, fn: (() => void) | undefined): void {
  parser[kOnMessageComplete] = fn;
}

/** A parser with its callbacks set once (one per connection, reused for every message). */
export function createParser(
  type: number, maxHeaderSize: number,
  handlers: {
    /** The first byte of a message (requests: starts the header timeout). */
    onMessageBegin?(): void;
    onHeaders(headers: string[], url: string): void;
    onHeadersComplete: OnHeadersComplete;
    onBody(chunk: Buffer): void;
    onMessageComplete(): void;
  },
): HttpParser {
  const parser = new HTTPParser();
  parser.initialize(type, {}, maxHeaderSize, kLenientNone);
  if (handlers.onMessageBegin !== undefined) parser[kOnMessageBegin] = handlers.onMessageBegin;
  parser[kOnHeaders] = handlers.onHeaders;
  parser[kOnHeadersComplete] = handlers.onHeadersComplete;
  parser[kOnBody] = handlers.onBody;
  parser[kOnMessageComplete] = handlers.onMessageComplete;
  return parser;
}
