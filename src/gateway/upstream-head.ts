/**
 * The request head the gateway sends a backend, for HTTP/1.1 and HTTP/2
 * clients alike: request line in origin-form, the client's end-to-end
 * headers, Host (the authority when the request carried one: absolute-form
 * or `:authority`), the gateway's own framing, and X-Forwarded-For / -Proto /
 * -Host and Forwarded — kept and appended to only when the client is a
 * trusted proxy, otherwise replaced.
 */
import type { Exchange } from './exchange.js';
import { Header, classifyHeader, connectionListed, forwardedNode, forwardedQuoted } from './headers.js';

export function upstreamHead(ex: Exchange, ip: string, trusted: boolean, proto: 'http' | 'https'): string {
  const listed = connectionListed(ex.connection);
  const h = ex.headers;
  let head = `${ex.method} ${ex.target} HTTP/1.1\r\n`;
  let xff: string | null = null;
  let xfProto: string | null = null;
  let xfHost: string | null = null;
  let forwarded: string | null = null;
  for (let i = 0; i < h.length; i += 2) {
    const name = h[i]!;
    const value = h[i + 1]!;
    switch (classifyHeader(name)) {
      case Header.Other:
        if (listed === null || !listed.has(name.toLowerCase())) head += `${name}: ${value}\r\n`;
        break;
      case Header.Host:
        if (!ex.absoluteForm) head += `${name}: ${value}\r\n`;
        break;
      case Header.ContentLength:
        head += `Content-Length: ${value}\r\n`;
        break;
      case Header.XForwardedFor:
        if (trusted) xff = xff === null ? value : `${xff}, ${value}`;
        break;
      case Header.XForwardedProto:
        if (trusted) xfProto ??= value;
        break;
      case Header.XForwardedHost:
        if (trusted) xfHost ??= value;
        break;
      case Header.Forwarded:
        if (trusted) forwarded = forwarded === null ? value : `${forwarded}, ${value}`;
        break;
      // Hop-by-hop: Connection, Keep-Alive, TE, Trailer, Transfer-Encoding, Upgrade, Proxy-*.
    }
  }
  if (ex.absoluteForm) head += `Host: ${ex.hostRaw!}\r\n`;
  head += `X-Forwarded-For: ${xff === null ? ip : `${xff}, ${ip}`}\r\nX-Forwarded-Proto: ${xfProto ?? proto}\r\n`;
  const host = xfHost ?? ex.hostRaw;
  if (host !== null && host !== '') head += `X-Forwarded-Host: ${host}\r\n`;
  let node = `for=${forwardedNode(ip)}`;
  if (ex.hostRaw !== null && ex.hostRaw !== '') node += `;host=${forwardedQuoted(ex.hostRaw)}`;
  head += `Forwarded: ${forwarded === null ? '' : `${forwarded}, `}${node};proto=${proto}\r\n`;
  if (ex.chunked) head += 'Transfer-Encoding: chunked\r\n';
  if (ex.websocket) head += 'Connection: upgrade\r\nUpgrade: websocket\r\n';
  return `${head}\r\n`;
}
