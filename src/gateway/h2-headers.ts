/**
 * Header conversions between HTTP/2 clients and HTTP/1.1 backends.
 *
 * Request: the pseudo-headers become the request line and Host
 * (`:authority`, which wins over a Host field, and must agree with one when
 * both are sent: RFC 9113 §8.3.1); `cookie` fields, which HTTP/2 lets a client
 * split, are joined with "; " (§8.2.3); the rest stays a flat list for the same
 * head builder as HTTP/1.1 (upstream-head.ts), which drops hop-by-hop fields.
 * nghttp2 has already refused connection-specific fields and a `te` other
 * than `trailers` (§8.2.2) as malformed.
 *
 * Response: the backend's fields minus hop-by-hop ones (and any its
 * Connection header names), names lower-cased as HTTP/2 requires.
 */
import type { OutgoingHttpHeaders } from 'node:http2';
import type { Exchange } from './exchange.js';
import { Header, classifyHeader, connectionListed, isHopByHop, tokenEquals } from './headers.js';
import { normaliseHost } from './host.js';

/**
 * Fills `ex` from an HTTP/2 request's raw header list ([name, value, …],
 * names lower case); sets `ex.reject` when the request cannot be served.
 * `endStream`: the HEADERS frame ended the stream (no body follows).
 */
export function readH2Request(ex: Exchange, raw: string[], endStream: boolean, maxHeadersCount: number): void {
  let method = '';
  let path: string | null = null;
  let authority: string | null = null;
  let host: string | null = null;
  let cookie: string | null = null;
  const headers: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    if (name.charCodeAt(0) === 0x3a /* : */) {
      if (name === ':method') method = value;
      else if (name === ':path') path = value;
      else if (name === ':authority') authority = value;
      continue;
    }
    if (name === 'cookie') {
      cookie = cookie === null ? value : `${cookie}; ${value}`;
      continue;
    }
    const kind = classifyHeader(name);
    if (kind === Header.Host) {
      if (host !== null) {
        ex.reject = 400;
        return;
      }
      host = value;
      continue;
    }
    if (kind === Header.ContentLength) ex.contentLength = Number(value);
    headers.push(name, value);
  }
  if (cookie !== null) headers.push('cookie', cookie);
  ex.method = method;
  ex.headers = headers;
  ex.keepAlive = true;
  ex.bodyComplete = endStream;
  // A body of unknown length goes to the backend chunked.
  ex.chunked = !endStream && ex.contentLength < 0;
  if (headers.length / 2 > maxHeadersCount) {
    ex.reject = 431;
    return;
  }
  if (method === 'CONNECT') {
    ex.reject = 405;
    return;
  }
  if (path === null || !(path.charCodeAt(0) === 0x2f || (path === '*' && method === 'OPTIONS'))) {
    ex.reject = 400;
    return;
  }
  ex.target = path;
  const named = authority ?? host;
  if (named === null || named === '' || named.includes('@')) {
    ex.reject = 400;
    return;
  }
  ex.host = normaliseHost(named);
  if (ex.host === null) {
    ex.reject = 400;
    return;
  }
  if (authority !== null && host !== null && normaliseHost(host)?.name !== ex.host.name) {
    ex.reject = 400;
    return;
  }
  // The backend gets Host from the authority, as for an absolute-form HTTP/1.1 target.
  ex.hostRaw = named;
  ex.absoluteForm = true;
}

/** The backend's response fields for an HTTP/2 client (see the module comment). */
export function h2ResponseHeaders(h: string[], status: number): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = { ':status': status };
  let connection: string[] | null = null;
  for (let i = 0; i < h.length; i += 2) {
    if (classifyHeader(h[i]!) === Header.Connection) (connection ??= []).push(h[i + 1]!);
  }
  const listed = connectionListed(connection);
  for (let i = 0; i < h.length; i += 2) {
    const name = h[i]!.toLowerCase();
    if (isHopByHop(classifyHeader(name)) || (listed !== null && listed.has(name))) continue;
    addField(out, name, h[i + 1]!);
  }
  return out;
}

/** The gateway's own header lines ("Name: value\r\n"…, as the HTTP/1.1 side writes them) as HTTP/2 fields. */
export function h2LocalHeaders(lines: string, status: number): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = { ':status': status };
  let from = 0;
  while (from < lines.length) {
    const end = lines.indexOf('\r\n', from);
    const line = lines.slice(from, end === -1 ? lines.length : end);
    from = end === -1 ? lines.length : end + 2;
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).toLowerCase();
    if (tokenEquals(name, 'connection')) continue;
    addField(out, name, line.slice(colon + 1).trim());
  }
  return out;
}

/** A repeated field (Set-Cookie, Vary, …) is sent as several fields, as the backend sent it. */
function addField(out: OutgoingHttpHeaders, name: string, value: string): void {
  const prior = out[name];
  if (prior === undefined) out[name] = value;
  else if (Array.isArray(prior)) prior.push(value);
  else out[name] = [String(prior), value];
}

/**
 * Fields a trailer section must not carry (RFC 9110 §6.5.1): framing, routing,
 * authentication, representation and hop-by-hop fields, which a backend might
 * otherwise act on after the head was checked.
 */
const NOT_IN_TRAILERS = new Set([
  'authorization', 'cache-control', 'content-encoding', 'content-range', 'content-type', 'cookie', 'expect',
  'max-forwards', 'proxy-authorization', 'range', 'set-cookie', 'www-authenticate', 'age', 'date', 'location', 'vary',
]);

/**
 * An HTTP/2 request's trailer fields ([name, value, …], names lower case) as
 * HTTP/1.1 trailer lines (`name: value\r\n` each) for the end of a chunked
 * body; fields a trailer may not carry, and any pseudo-header, are dropped.
 */
export function h2TrailerLines(raw: readonly string[]): string {
  let lines = '';
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    if (name.charCodeAt(0) === 0x3a || NOT_IN_TRAILERS.has(name) || /[\r\n\0]/.test(value)) continue;
    const kind = classifyHeader(name);
    if (kind !== Header.Other || name.startsWith('x-forwarded-')) continue; // framing, Host, Forwarded and hop-by-hop fields
    lines += `${name}: ${value}\r\n`;
  }
  return lines;
}
