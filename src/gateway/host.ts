/**
 * Host name normalisation: the one spelling every route lookup uses, so that
 * `Example.COM.:8080`, `example.com` and `éxample.com`'s punycode all find the
 * same site. Called once per request, so the common case (an already lower-case
 * ASCII name) takes a scan and no allocation beyond stripping the port.
 */
import { isIP } from 'node:net';
import { domainToASCII } from 'node:url';

const MAX_HOSTNAME = 253;

/** What a Host header names: a DNS name, or an IP literal (which routes to the listener's default site). */
export interface NormalisedHost {
  name: string;
  isIp: boolean;
}

const plainHostChar = new Uint8Array(128);
for (const c of 'abcdefghijklmnopqrstuvwxyz0123456789-._') plainHostChar[c.charCodeAt(0)] = 1;

/**
 * Normalises a Host header value or URL authority (latin1 string as it came off
 * the wire): lower case, port and trailing dot stripped, IDNA to punycode.
 * Returns null when it is not a valid host (the request then gets a 400).
 */
export function normaliseHost(raw: string): NormalisedHost | null {
  if (raw.length === 0) return null;
  if (raw.charCodeAt(0) === 0x5b /* [ */) return normaliseIpv6(raw);
  let end = raw.length;
  const colon = raw.lastIndexOf(':');
  if (colon !== -1) {
    if (!isPort(raw, colon + 1)) return null;
    end = colon;
  }
  if (end > 0 && raw.charCodeAt(end - 1) === 0x2e /* . */) end--;
  if (end === 0) return null;
  let plain = true;
  for (let i = 0; i < end; i++) {
    const c = raw.charCodeAt(i);
    if (c >= 128 || plainHostChar[c] !== 1) {
      plain = false;
      break;
    }
  }
  const host = end === raw.length ? raw : raw.slice(0, end);
  const name = plain ? host : toAscii(host);
  if (name === null || !validLabels(name)) return null;
  return { name, isIp: endsWithDigit(name) && isIP(name) === 4 };
}

/** Non-plain names: upper case, or UTF-8 (arriving as latin1) to punycode. */
function toAscii(host: string): string | null {
  for (let i = 0; i < host.length; i++) {
    const c = host.charCodeAt(i);
    // Controls, space and the URL delimiters are never part of a host name.
    if (c <= 0x20 || c === 0x7f || '/\\?#@%*:<>[]^|"\''.includes(host[i]!)) return null;
  }
  const unicode = Buffer.from(host, 'latin1').toString('utf8');
  if (unicode.includes('\ufffd')) return null;
  const ascii = domainToASCII(unicode);
  return ascii === '' ? null : ascii.toLowerCase();
}

function normaliseIpv6(raw: string): NormalisedHost | null {
  const close = raw.indexOf(']');
  if (close === -1) return null;
  if (close + 1 < raw.length && !(raw.charCodeAt(close + 1) === 0x3a /* : */ && isPort(raw, close + 2))) return null;
  const inner = raw.slice(1, close).toLowerCase();
  return isIP(inner) === 6 ? { name: `[${inner}]`, isIp: true } : null;
}

function isPort(s: string, from: number): boolean {
  if (from >= s.length || s.length - from > 5) return false;
  for (let i = from; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return false;
  }
  return true;
}

function validLabels(name: string): boolean {
  if (name.length > MAX_HOSTNAME) return false;
  let labelStart = 0;
  for (let i = 0; i <= name.length; i++) {
    if (i === name.length || name.charCodeAt(i) === 0x2e) {
      const len = i - labelStart;
      if (len === 0 || len > 63) return false;
      labelStart = i + 1;
    }
  }
  return true;
}

function endsWithDigit(s: string): boolean {
  const c = s.charCodeAt(s.length - 1);
  return c >= 0x30 && c <= 0x39;
}

/**
 * Normalises a configured site hostname, allowing one leading `*.` label.
 * Returns null when invalid; the configuration is then refused.
 */
export function normaliseSiteHostname(hostname: string): string | null {
  const wildcard = hostname.startsWith('*.');
  const rest = wildcard ? hostname.slice(2) : hostname;
  if (rest.includes(':') && !rest.startsWith('[')) return null;
  const host = normaliseHost(rest);
  if (host === null) return null;
  if (wildcard && host.isIp) return null;
  return wildcard ? `*.${host.name}` : host.name;
}
