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

export interface HttpParser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenientFlags: number): void;
  /** Bytes consumed, or an Error with `code` ('HPE_…') and `bytesParsed`. */
  execute(data: Buffer): number | ParseError;
  /** End of input: completes a close-delimited message, or errors on a truncated one. */
  finish(): undefined | ParseError;
  close(): void;
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
  kOnHeaders: number;
  kOnHeadersComplete: number;
  kOnBody: number;
  kOnMessageComplete: number;
  kLenientNone: number;
}

const common = createRequire(import.meta.url)('_http_common') as { HTTPParser: HttpParserConstructor; methods: string[] };

export const HTTPParser = common.HTTPParser;
/** Method names by llhttp's method index. */
export const METHODS: readonly string[] = common.methods;

export const { REQUEST, RESPONSE, kOnHeaders, kOnHeadersComplete, kOnBody, kOnMessageComplete, kLenientNone } = HTTPParser;

export function assertParserShape(): void {
  const p = new HTTPParser();
  const slots = [kOnHeaders, kOnHeadersComplete, kOnBody, kOnMessageComplete];
  if (typeof p.execute !== 'function' || typeof p.initialize !== 'function' || slots.some((s) => typeof s !== 'number') || kLenientNone !== 0) {
    throw new Error(`this Node.js (${process.version}) has an HTTP parser binding the gateway does not know`);
  }
  p.close();
}

/** A parser with its callbacks set once (one per connection, reused for every message). */
export function createParser(
  type: number, maxHeaderSize: number,
  handlers: {
    onHeaders(headers: string[], url: string): void;
    onHeadersComplete: OnHeadersComplete;
    onBody(chunk: Buffer): void;
    onMessageComplete(): void;
  },
): HttpParser {
  const parser = new HTTPParser();
  parser.initialize(type, {}, maxHeaderSize, kLenientNone);
  parser[kOnHeaders] = handlers.onHeaders;
  parser[kOnHeadersComplete] = handlers.onHeadersComplete;
  parser[kOnBody] = handlers.onBody;
  parser[kOnMessageComplete] = handlers.onMessageComplete;
  return parser;
}
