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
/**
 * Most bytes read for one: the hello and up to 8 record headers. Bounding the
 * bytes on the wire, not only the hello, keeps the answer the same however the
 * client cuts it into records and the network into segments.
 */
const MAX_WIRE_BYTES = MAX_HELLO_BYTES + 5 * 8;

export type HelloResult =
  | { kind: 'partial' }
  | { kind: 'invalid' }
  /**
   * `sni`: the normalised server name, or null when the client sent none (or an IP literal).
   * `acmeTls`: the client offers exactly the ALPN protocol `acme-tls/1` (an ACME TLS-ALPN-01 validation, RFC 8737).
   */
  | { kind: 'hello'; sni: string | null; acmeTls?: true };

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
    if (off + 5 > MAX_WIRE_BYTES) return INVALID;
    if (data.length - off < 5) {
      // Refuse what can already be told apart from a TLS record (SSLv2, HTTP) without waiting for 5 bytes.
      if ((data.length > off && data[off] !== 22) || (data.length > off + 1 && data[off + 1] !== 3)) return INVALID;
      return PARTIAL;
    }
    if (data[off] !== 22 || data[off + 1] !== 3) return INVALID; // not a TLS handshake record
    const len = data.readUInt16BE(off + 3);
    if (len === 0 || len > 16384) return INVALID;
    if (off + 5 + len > MAX_WIRE_BYTES) return INVALID;
    const whole = data.length - off - 5 >= len;
    parts.push(data.subarray(off + 5, Math.min(data.length, off + 5 + len)));
    have += parts[parts.length - 1]!.length;
    off += 5 + len;
    if (need < 0 && have >= 4) {
      // The handshake header, as soon as it is here (even in a record not yet whole): a message that
      // is no ClientHello, or too large, is refused without waiting for the rest of it.
      const hs = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
      if (hs[0] !== 1) return INVALID; // not a ClientHello
      need = 4 + hs.readUIntBE(1, 3);
      if (need > MAX_HELLO_BYTES) return INVALID;
    }
    if (!whole) return PARTIAL;
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
  let named: HelloResult = { kind: 'hello', sni: null };
  let acmeTls = false;
  while (p < end) {
    if (p + 4 > end) return INVALID;
    const type = b.readUInt16BE(p);
    const len = b.readUInt16BE(p + 2);
    p += 4;
    if (p + len > end) return INVALID;
    if (type === 0) {
      named = readServerName(b.subarray(p, p + len));
      if (named.kind === 'invalid') return named;
    } else if (type === 16) {
      acmeTls = b.subarray(p, p + len).equals(ACME_TLS_ALPN);
    }
    p += len;
  }
  return acmeTls && named.kind === 'hello' ? { ...named, acmeTls: true } : named;
}

/** An ALPN extension body naming exactly `acme-tls/1`: list length 11, then the length-prefixed name. */
const ACME_TLS_ALPN = Buffer.from('\x00\x0b\x0aacme-tls/1', 'latin1');

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
