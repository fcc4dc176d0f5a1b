/**
 * Header rules for a reverse proxy (RFC 9110 §7.6.1): hop-by-hop headers —
 * Connection and every header it names, Keep-Alive, TE, Trailer,
 * Transfer-Encoding, Upgrade (kept only for upgrades), Proxy-* — never cross
 * the gateway; framing is always the gateway's own (Content-Length forwarded
 * as parsed, chunked bodies re-chunked), so no framing header a client sent
 * ever reaches a backend verbatim. Names are matched case-insensitively without
 * allocating, since this runs for every header of every request.
 */

/** Header kinds the gateway acts on; everything else is `Other` and passes through. */
export const Header = {
  Other: 0,
  Host: 1,
  Connection: 2,
  KeepAlive: 3,
  TE: 4,
  Trailer: 5,
  TransferEncoding: 6,
  Upgrade: 7,
  Proxy: 8,
  ContentLength: 9,
  XForwardedFor: 10,
  XForwardedProto: 11,
  XForwardedHost: 12,
  Forwarded: 13,
} as const;
export type HeaderKind = (typeof Header)[keyof typeof Header];

/** Connection, Keep-Alive, TE, Trailer, Transfer-Encoding, Upgrade, Proxy-*: never relayed as they are. */
export function isHopByHop(kind: HeaderKind): boolean {
  return kind === Header.Connection || kind === Header.KeepAlive || kind === Header.TE || kind === Header.Trailer ||
    kind === Header.TransferEncoding || kind === Header.Upgrade || kind === Header.Proxy;
}

/** Case-insensitive equality with a lower-case token (letters, digits, '-'): `|0x20` folds only letters here. */
export function tokenEquals(name: string, lower: string): boolean {
  if (name.length !== lower.length) return false;
  for (let i = 0; i < lower.length; i++) {
    if ((name.charCodeAt(i) | 0x20) !== lower.charCodeAt(i)) return false;
  }
  return true;
}

function startsWithToken(name: string, lowerPrefix: string): boolean {
  if (name.length < lowerPrefix.length) return false;
  for (let i = 0; i < lowerPrefix.length; i++) {
    if ((name.charCodeAt(i) | 0x20) !== lowerPrefix.charCodeAt(i)) return false;
  }
  return true;
}

export function classifyHeader(name: string): HeaderKind {
  switch (name.length) {
    case 2: return tokenEquals(name, 'te') ? Header.TE : Header.Other;
    case 4: return tokenEquals(name, 'host') ? Header.Host : Header.Other;
    case 7:
      if (tokenEquals(name, 'upgrade')) return Header.Upgrade;
      if (tokenEquals(name, 'trailer')) return Header.Trailer;
      break;
    case 9: return tokenEquals(name, 'forwarded') ? Header.Forwarded : Header.Other;
    case 10:
      if (tokenEquals(name, 'connection')) return Header.Connection;
      if (tokenEquals(name, 'keep-alive')) return Header.KeepAlive;
      break;
    case 14: if (tokenEquals(name, 'content-length')) return Header.ContentLength; break;
    case 15: if (tokenEquals(name, 'x-forwarded-for')) return Header.XForwardedFor; break;
    case 16: if (tokenEquals(name, 'x-forwarded-host')) return Header.XForwardedHost; break;
    case 17:
      if (tokenEquals(name, 'transfer-encoding')) return Header.TransferEncoding;
      if (tokenEquals(name, 'x-forwarded-proto')) return Header.XForwardedProto;
      break;
  }
  return name.length > 6 && startsWithToken(name, 'proxy-') ? Header.Proxy : Header.Other;
}

/**
 * Extra header names a Connection header declares hop-by-hop (lower case),
 * beyond the ones always stripped; null for the usual `keep-alive` / `close` /
 * `upgrade`, so the common request allocates nothing.
 */
export function connectionListed(values: string[] | null): Set<string> | null {
  if (values === null) return null;
  let listed: Set<string> | null = null;
  for (const value of values) {
    if (tokenEquals(value, 'keep-alive') || tokenEquals(value, 'close')) continue;
    for (const raw of value.split(',')) {
      const token = raw.trim().toLowerCase();
      if (token === '' || token === 'close' || token === 'keep-alive' || token === 'upgrade') continue;
      (listed ??= new Set()).add(token);
    }
  }
  return listed;
}

/** RFC 7239 node: IPv6 addresses are bracketed and quoted. */
export function forwardedNode(ip: string): string {
  return ip.includes(':') ? `"[${ip}]"` : ip;
}

/** RFC 7239 quoted-string (Host values carry ':' and so are always quoted). */
export function forwardedQuoted(value: string): string {
  return value.includes('"') || value.includes('\\') ? `"${value.replace(/["\\]/g, '\\$&')}"` : `"${value}"`;
}
