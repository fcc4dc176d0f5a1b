/**
 * PROXY protocol version 2 (HAProxy's binary header, spec "proxy-protocol.txt"
 * §2.2): what a TLS passthrough backend reads first to learn the visitor's
 * address, since the TCP connection it sees comes from the gateway. The
 * encoder writes a PROXY command over TCP with the client's and the listener's
 * addresses and, when known, the SNI name as a PP2_TYPE_AUTHORITY TLV. The
 * decoder is the backend's side (tests use it; a Strata backend could too): it
 * reads every header the spec allows and refuses anything malformed.
 */
import { isIP } from 'node:net';

/** The 12 bytes every v2 header starts with. */
export const PROXY_V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const HEADER_BYTES = 16;
const VERSION_2 = 0x20;
const COMMAND_LOCAL = 0x0;
const COMMAND_PROXY = 0x1;
const AF_UNSPEC = 0x0;
const AF_INET = 0x1;
const AF_INET6 = 0x2;
const AF_UNIX = 0x3;
const STREAM = 0x1;
const DGRAM = 0x2;

/** TLV types of the spec (§2.2.7 ff.). */
export const PP2_TYPE = {
  ALPN: 0x01,
  AUTHORITY: 0x02,
  CRC32C: 0x03,
  NOOP: 0x04,
  UNIQUE_ID: 0x05,
  SSL: 0x20,
  NETNS: 0x30,
} as const;

export interface ProxyEndpoint {
  /** An IP literal, IPv4 or IPv6 (an IPv4-mapped '::ffff:1.2.3.4' is sent as IPv4 when the other end is IPv4 too). */
  address: string;
  port: number;
}

export interface ProxyHeaderInput {
  source: ProxyEndpoint;
  destination: ProxyEndpoint;
  /** The server name the client asked for (SNI), sent as PP2_TYPE_AUTHORITY. */
  authority?: string | null;
}

/**
 * A PROXY v2 header for a TCP connection from `source` to `destination`.
 * Addresses of different families are both sent as IPv6 (IPv4 mapped), as the
 * header has one family for both.
 */
export function encodeProxyV2(input: ProxyHeaderInput): Buffer {
  const source = { ...input.source, address: unmapped(input.source.address) };
  const destination = { ...input.destination, address: unmapped(input.destination.address) };
  const family = isIP(source.address) === 4 && isIP(destination.address) === 4 ? AF_INET : AF_INET6;
  const addressBytes = family === AF_INET ? 12 : 36;
  const authority = input.authority ? Buffer.from(input.authority, 'utf8') : null;
  if (authority !== null && authority.length > 0xffff) throw new RangeError('authority too long for a TLV');
  const tlvBytes = authority === null ? 0 : 3 + authority.length;
  const out = Buffer.alloc(HEADER_BYTES + addressBytes + tlvBytes);
  PROXY_V2_SIGNATURE.copy(out, 0);
  out[12] = VERSION_2 | COMMAND_PROXY;
  out[13] = (family << 4) | STREAM;
  out.writeUInt16BE(addressBytes + tlvBytes, 14);
  let p = HEADER_BYTES;
  const width = family === AF_INET ? 4 : 16;
  for (const e of [source, destination]) {
    const bytes = family === AF_INET ? ipv4Bytes(e.address) : ipv6Bytes(e.address);
    if (bytes === null) throw new RangeError(`not an IP address: ${e.address}`);
    bytes.copy(out, p);
    p += width;
  }
  for (const e of [source, destination]) {
    if (!Number.isInteger(e.port) || e.port < 0 || e.port > 65535) throw new RangeError(`not a port: ${e.port}`);
    out.writeUInt16BE(e.port, p);
    p += 2;
  }
  if (authority !== null) {
    out[p] = PP2_TYPE.AUTHORITY;
    out.writeUInt16BE(authority.length, p + 1);
    authority.copy(out, p + 3);
  }
  return out;
}

export interface ProxyTlv {
  type: number;
  value: Buffer;
}

export interface ProxyHeader {
  /** Bytes the header took; the proxied stream starts after them. */
  length: number;
  /** LOCAL: a connection the proxy made itself (health check); no addresses. */
  command: 'local' | 'proxy';
  /** 'unspec' when the proxy does not know (addresses then absent). */
  family: 'inet' | 'inet6' | 'unix' | 'unspec';
  transport: 'stream' | 'dgram' | 'unspec';
  source: ProxyEndpoint | null;
  destination: ProxyEndpoint | null;
  tlvs: ProxyTlv[];
  /** The PP2_TYPE_AUTHORITY TLV as text, when present. */
  authority: string | null;
}

export type ProxyDecodeResult =
  | { kind: 'partial' }
  | { kind: 'invalid'; reason: string }
  | { kind: 'header'; header: ProxyHeader };

const invalid = (reason: string): ProxyDecodeResult => ({ kind: 'invalid', reason });

/** Reads a v2 header at the start of `data` (everything read so far). */
export function decodeProxyV2(data: Buffer): ProxyDecodeResult {
  const sig = Math.min(data.length, PROXY_V2_SIGNATURE.length);
  if (!data.subarray(0, sig).equals(PROXY_V2_SIGNATURE.subarray(0, sig))) return invalid('no PROXY v2 signature');
  if (data.length < HEADER_BYTES) return { kind: 'partial' };
  if ((data[12]! & 0xf0) !== VERSION_2) return invalid('not version 2');
  const cmd = data[12]! & 0x0f;
  if (cmd !== COMMAND_LOCAL && cmd !== COMMAND_PROXY) return invalid('unknown command');
  const fam = data[13]! >> 4;
  const proto = data[13]! & 0x0f;
  if (fam > AF_UNIX) return invalid('unknown address family');
  if (proto > DGRAM) return invalid('unknown transport');
  const length = HEADER_BYTES + data.readUInt16BE(14);
  if (data.length < length) return { kind: 'partial' };
  const body = data.subarray(HEADER_BYTES, length);
  const addressBytes = [0, 12, 36, 216][fam]!;
  if (body.length < addressBytes) return invalid('address block shorter than its family needs');
  let source: ProxyEndpoint | null = null;
  let destination: ProxyEndpoint | null = null;
  // LOCAL ignores whatever addresses follow (§2.2); UNIX paths are not IP endpoints.
  if (cmd === COMMAND_PROXY && (fam === AF_INET || fam === AF_INET6)) {
    const width = fam === AF_INET ? 4 : 16;
    const text = fam === AF_INET ? ipv4Text : ipv6Text;
    source = { address: text(body.subarray(0, width)), port: body.readUInt16BE(2 * width) };
    destination = { address: text(body.subarray(width, 2 * width)), port: body.readUInt16BE(2 * width + 2) };
  }
  const tlvs: ProxyTlv[] = [];
  let authority: string | null = null;
  for (let p = addressBytes; p < body.length;) {
    if (p + 3 > body.length) return invalid('truncated TLV');
    const type = body[p]!;
    const len = body.readUInt16BE(p + 1);
    if (p + 3 + len > body.length) return invalid('TLV longer than the header');
    const value = body.subarray(p + 3, p + 3 + len);
    if (type === PP2_TYPE.AUTHORITY) {
      const name = value.toString('utf8');
      if (authority !== null || name.includes('\ufffd') || len === 0) return invalid('bad authority TLV');
      authority = name;
    }
    tlvs.push({ type, value });
    p += 3 + len;
  }
  return {
    kind: 'header',
    header: {
      length,
      command: cmd === COMMAND_PROXY ? 'proxy' : 'local',
      family: (['unspec', 'inet', 'inet6', 'unix'] as const)[fam]!,
      transport: (['unspec', 'stream', 'dgram'] as const)[proto]!,
      source,
      destination,
      tlvs,
      authority,
    },
  };
}

/** A dual-stack socket reports IPv4 peers as '::ffff:a.b.c.d'. */
const unmapped = (a: string): string => (a.startsWith('::ffff:') && isIP(a.slice(7)) === 4 ? a.slice(7) : a);

function ipv4Bytes(address: string): Buffer | null {
  if (isIP(address) !== 4) return null;
  return Buffer.from(address.split('.').map(Number));
}

/** 16 bytes of an IPv6 literal (an IPv4 one is mapped: ::ffff:a.b.c.d). */
function ipv6Bytes(address: string): Buffer | null {
  if (isIP(address) === 4) return ipv6Bytes(`::ffff:${address}`);
  if (isIP(address) !== 6) return null;
  let text = address.replace(/%.*$/, ''); // a zone id has no place on the wire
  const words: number[] = [];
  const tail = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (tail !== null) {
    const v4 = ipv4Bytes(tail[1]!)!;
    text = `${text.slice(0, -tail[1]!.length)}${((v4[0]! << 8) | v4[1]!).toString(16)}:${((v4[2]! << 8) | v4[3]!).toString(16)}`;
  }
  const [head, rest] = text.split('::') as [string, string | undefined];
  const parse = (s: string): number[] => (s === '' ? [] : s.split(':').map((w) => parseInt(w, 16)));
  const front = parse(head);
  const back = rest === undefined ? [] : parse(rest);
  words.push(...front, ...new Array<number>(8 - front.length - back.length).fill(0), ...back);
  const out = Buffer.alloc(16);
  words.forEach((w, i) => out.writeUInt16BE(w, 2 * i));
  return out;
}

const ipv4Text = (b: Buffer): string => `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;

/** RFC 5952 text: lower case, leading zeros dropped, the longest run of two or more zero words as '::'. */
function ipv6Text(b: Buffer): string {
  if (b.readUInt32BE(0) === 0 && b.readUInt32BE(4) === 0 && b.readUInt32BE(8) === 0xffff) return `::ffff:${ipv4Text(b.subarray(12))}`;
  const words = Array.from({ length: 8 }, (_, i) => b.readUInt16BE(2 * i));
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (ws: number[]): string => ws.map((w) => w.toString(16)).join(':');
  if (best < 0) return hex(words);
  return `${hex(words.slice(0, best))}::${hex(words.slice(best + bestLen))}`;
}
