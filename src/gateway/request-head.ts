/** The request head as the gateway reads it: Host, framing, target and WebSocket upgrade. */
import type { Exchange } from './exchange.js';
import { Header, classifyHeader, tokenEquals } from './headers.js';
import { normaliseHost } from './host.js';

/**
 * Reads what the gateway needs from a request's head into `ex` (Host, framing,
 * target, WebSocket upgrade); sets `ex.reject` when the request is malformed.
 * Returns true when the head carries two Host headers — a smuggling attempt,
 * which the caller reports — and false otherwise.
 */
export function readRequestHead(ex: Exchange, url: string, upgrade: boolean, maxHeadersCount: number): boolean {
  const h = ex.headers;
  if (h.length / 2 > maxHeadersCount) {
    ex.reject = 431;
    return false;
  }
  let hosts = 0;
  let upgradeTo: string | null = null;
  for (let i = 0; i < h.length; i += 2) {
    switch (classifyHeader(h[i]!)) {
      case Header.Host:
        hosts++;
        ex.hostRaw ??= h[i + 1]!;
        break;
      case Header.Connection:
        (ex.connection ??= []).push(h[i + 1]!);
        break;
      case Header.ContentLength:
        ex.contentLength = Number(h[i + 1]);
        break;
      case Header.TransferEncoding:
        ex.chunked = true;
        break;
      case Header.Upgrade:
        upgradeTo = h[i + 1]!;
        break;
    }
  }
  // Two Host headers could route differently here and at the backend.
  if (hosts > 1) {
    ex.reject = 400;
    return true;
  }
  if (ex.method === 'CONNECT') {
    ex.reject = 405;
    return false;
  }
  if (url.charCodeAt(0) === 0x2f /* / */) {
    ex.target = url;
  } else if (url === '*' && ex.method === 'OPTIONS') {
    ex.target = url;
  } else {
    // Absolute-form: its authority replaces Host (RFC 9112 §3.2.2).
    const m = /^https?:\/\/([^/?#]*)(.*)$/i.exec(url);
    if (m === null || m[1]!.includes('@') || m[1] === '') {
      ex.reject = 400;
      return false;
    }
    ex.hostRaw = m[1]!;
    ex.absoluteForm = true;
    ex.target = m[2] === '' ? '/' : m[2]!.charCodeAt(0) === 0x2f ? m[2]! : `/${m[2]!}`;
  }
  if (ex.hostRaw === null) {
    if (!ex.http10) ex.reject = 400; // HTTP/1.1 requires Host
  } else if (ex.hostRaw !== '') {
    ex.host = normaliseHost(ex.hostRaw);
    if (ex.host === null) {
      ex.reject = 400;
      return false;
    }
  }
  if (upgrade && upgradeTo !== null && ex.method === 'GET' && tokenEquals(upgradeTo.trim(), 'websocket')) {
    if (ex.contentLength > 0 || ex.chunked) {
      ex.reject = 400;
      return false;
    }
    ex.websocket = true;
    ex.closeAfter = true;
  }
  return false;
}
