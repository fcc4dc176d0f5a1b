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
  if (xff === null && xfProto === null && xfHost === null && forwarded === null) head += forwardingLines(ip, ex.hostRaw, proto);
  else head += forwardingLinesAppended(ip, ex.hostRaw, proto, xff, xfProto, xfHost, forwarded);
  if (ex.chunked) head += 'Transfer-Encoding: chunked\r\n';
  if (ex.websocket) head += 'Connection: upgrade\r\nUpgrade: websocket\r\n';
  return `${head}\r\n`;
}

/**
 * The gateway's own forwarding lines, when the request brought none to keep:
 * they depend on the client address, Host and scheme only, which repeat
 * request after request, so the last ones made are reused.
 */
let lastIp = '';
let lastHost: string | null = null;
let lastProto = '';
let lastLines = '';
function forwardingLines(ip: string, hostRaw: string | null, proto: 'http' | 'https'): string {
  if (ip !== lastIp || hostRaw !== lastHost || proto !== lastProto || lastLines === '') {
    lastLines = forwardingLinesAppended(ip, hostRaw, proto, null, null, null, null);
    lastIp = ip;
    lastHost = hostRaw;
    lastProto = proto;
  }
  return lastLines;
}

/** X-Forwarded-For / -Proto / -Host and Forwarded, appended to a trusted proxy's values where there are some. */
function forwardingLinesAppended(
  ip: string, hostRaw: string | null, proto: 'http' | 'https',
  xff: string | null, xfProto: string | null, xfHost: string | null, forwarded: string | null,
): string {
  let head = `X-Forwarded-For: ${xff === null ? ip : `${xff}, ${ip}`}\r\nX-Forwarded-Proto: ${xfProto ?? proto}\r\n`;
  const host = xfHost ?? hostRaw;
  if (host !== null && host !== '') head += `X-Forwarded-Host: ${host}\r\n`;
  let node = `for=${forwardedNode(ip)}`;
  if (hostRaw !== null && hostRaw !== '') node += `;host=${forwardedQuoted(hostRaw)}`;
  return `${head}Forwarded: ${forwarded === null ? '' : `${forwarded}, `}${node};proto=${proto}\r\n`;
}
