/**
 * Reads the server name (SNI) from a TLS ClientHello before any TLS library
 * sees the connection, so the certificate — and with it the session ticket
 * keys and session cache — is chosen per tenant from the first byte (an
 * OpenSSL SNI callback runs after session resumption has been decided on the
 * listener's default context, which would let a session cross tenants).
 *
 * Bounded: the ClientHello may span several records but at most
 * MAX_HELLO_BYTES; anything that is not a well-formed ClientHello is refused.
 */
import { normaliseHost } from './host.js';

/** Largest ClientHello accepted (post-quantum key shares make them ~2 KiB today). */
export const MAX_HELLO_BYTES = 16 * 1024;

export type HelloResult =
  | { kind: 'partial' }
  | { kind: 'invalid' }
  /** `sni`: the normalised server name, or null when the client sent none (or an IP literal). */
  | { kind: 'hello'; sni: string | null };

const PARTIAL: HelloResult = { kind: 'partial' };
const INVALID: HelloResult = { kind: 'invalid' };

/** Parses the records at the start of `data` (everything read so far). */
export function parseClientHello(data: Buffer): HelloResult {
  // Reassemble the handshake bytes carried by the leading handshake records.
  const parts: Buffer[] = [];
  let have = 0;
  let off = 0;
  let need = -1;
  while (need < 0 || have < need) {
    if (data.length - off < 5) return data.length > MAX_HELLO_BYTES + 5 ? INVALID : PARTIAL;
    if (data[off] !== 22 || data[off + 1] !== 3) return INVALID; // not a TLS handshake record
    const len = data.readUInt16BE(off + 3);
    if (len === 0 || len > 16384) return INVALID;
    if (data.length - off - 5 < len) return off + 5 + len > MAX_HELLO_BYTES + 5 * 8 ? INVALID : PARTIAL;
    parts.push(data.subarray(off + 5, off + 5 + len));
    have += len;
    off += 5 + len;
    if (need < 0 && have >= 4) {
      const hs = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
      if (hs[0] !== 1) return INVALID; // not a ClientHello
      need = 4 + hs.readUIntBE(1, 3);
      if (need > MAX_HELLO_BYTES) return INVALID;
    }
  }
  const hello = (parts.length === 1 ? parts[0]! : Buffer.concat(parts)).subarray(4, need);
  return readHello(hello);
}

function readHello(b: Buffer): HelloResult {
  let p = 2 + 32; // legacy_version, random
  if (p + 1 > b.length) return INVALID;
  p += 1 + b[p]!; // session id
  if (p + 2 > b.length) return INVALID;
  p += 2 + b.readUInt16BE(p); // cipher suites
  if (p + 1 > b.length) return INVALID;
  p += 1 + b[p]!; // compression methods
  if (p > b.length) return INVALID;
  if (p === b.length) return { kind: 'hello', sni: null }; // no extensions at all
  if (p + 2 > b.length) return INVALID;
  const end = p + 2 + b.readUInt16BE(p);
  if (end > b.length) return INVALID;
  p += 2;
  while (p < end) {
    if (p + 4 > end) return INVALID;
    const type = b.readUInt16BE(p);
    const len = b.readUInt16BE(p + 2);
    p += 4;
    if (p + len > end) return INVALID;
    if (type === 0) return readServerName(b.subarray(p, p + len));
    p += len;
  }
  return { kind: 'hello', sni: null };
}

function readServerName(ext: Buffer): HelloResult {
  if (ext.length < 2 || ext.readUInt16BE(0) !== ext.length - 2) return INVALID;
  let p = 2;
  while (p < ext.length) {
    if (p + 3 > ext.length) return INVALID;
    const type = ext[p]!;
    const len = ext.readUInt16BE(p + 1);
    p += 3;
    if (p + len > ext.length) return INVALID;
    if (type === 0) {
      const raw = ext.toString('latin1', p, p + len);
      // A DNS name only: no port, no brackets, nothing outside printable ASCII.
      if (len === 0 || /[^a-zA-Z0-9.\-_]/.test(raw)) return INVALID;
      const host = normaliseHost(raw);
      if (host === null) return INVALID;
      return { kind: 'hello', sni: host.isIp ? null : host.name };
    }
    p += len;
  }
  return { kind: 'hello', sni: null };
}
