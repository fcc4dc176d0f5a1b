/**
 * The common backend response, read without llhttp: an HTTP/1.1 head with a
 * Content-Length, whole in one read. Parsing it here saves the five native
 * parser callbacks and the header strings llhttp would create, a fifth of a
 * proxied request's JavaScript time.
 *
 * It accepts a strict subset only — every byte checked against RFC 9112's
 * grammar, no obs-fold, no bare CR or LF, one Content-Length of digits, no
 * Transfer-Encoding, no interim or bodiless status — and says null for
 * anything else, which llhttp then parses. So it never accepts what llhttp
 * would refuse, and never frames a body differently.
 *
 * The lines to relay are copied byte for byte into the caller's output
 * buffer while they are checked: no string is made, and the relay writes
 * head and body with one Buffer write (no latin1 encoding on the way out).
 */

/** Largest head taken on this path (llhttp's default limit). */
const MAX_HEAD = 16 * 1024;

const TCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") TCHAR[c.charCodeAt(0)] = 1;
/** field-value / reason-phrase bytes: HTAB, SP, VCHAR, obs-text. */
const VCHAR = new Uint8Array(256);
VCHAR[0x09] = 1;
for (let c = 0x20; c < 0x7f; c++) VCHAR[c] = 1;
for (let c = 0x80; c < 0x100; c++) VCHAR[c] = 1;

export interface SimpleHead {
  status: number;
  /** Index of the first body byte. */
  bodyStart: number;
  contentLength: number;
  keepAlive: boolean;
  /** `out[0, relayedEnd)`: the status line and the header lines to relay (hop-by-hop ones dropped), each with its CRLF; the final CRLF is the caller's. */
  relayedEnd: number;
}

/** The one result, reused: a parse is consumed before the next one starts (the read it came from is handled synchronously). */
const RESULT: SimpleHead = { status: 0, bodyStart: 0, contentLength: 0, keepAlive: false, relayedEnd: 0 };

const CR = 0x0d;
const LF = 0x0a;

/**
 * Reads `buf[0, end)` as a simple response head, or null when llhttp must
 * parse it. The relayed lines go to `out` (at least MAX_HEAD bytes; its
 * contents are undefined after a null). The result is valid until the next call.
 */
export function parseSimpleHead(buf: Buffer, end: number, out: Buffer): SimpleHead | null {
  const limit = Math.min(end, MAX_HEAD);
  // Status line: "HTTP/1.1 NNN reason\r\n".
  if (limit < 17 || buf[0] !== 0x48 || buf[1] !== 0x54 || buf[2] !== 0x54 || buf[3] !== 0x50 || buf[4] !== 0x2f ||
    buf[5] !== 0x31 || buf[6] !== 0x2e || buf[7] !== 0x31 || buf[8] !== 0x20 || buf[12] !== 0x20) return null;
  const d0 = buf[9]! - 0x30;
  const d1 = buf[10]! - 0x30;
  const d2 = buf[11]! - 0x30;
  if (d0 < 2 || d0 > 5 || d1 < 0 || d1 > 9 || d2 < 0 || d2 > 9) return null;
  const status = d0 * 100 + d1 * 10 + d2;
  if (status === 204 || status === 304) return null;
  let i = 13;
  while (i < limit && VCHAR[buf[i]!] === 1) i++;
  if (i + 1 >= limit || buf[i] !== CR || buf[i + 1] !== LF) return null;
  i += 2;
  let o = copyBytes(buf, 0, i, out, 0);

  let contentLength = -1;
  let keepAlive = true;
  for (;;) {
    if (i + 1 >= limit) return null;
    if (buf[i] === CR) {
      if (buf[i + 1] !== LF) return null;
      break; // end of head
    }
    const nameStart = i;
    while (i < limit && TCHAR[buf[i]!] === 1) i++;
    if (i === nameStart || i >= limit || buf[i] !== 0x3a /* : */) return null;
    const nameEnd = i;
    i++;
    while (i < limit && (buf[i] === 0x20 || buf[i] === 0x09)) i++;
    const valueStart = i;
    while (i < limit && VCHAR[buf[i]!] === 1) i++;
    if (i + 1 >= limit || buf[i] !== CR || buf[i + 1] !== LF) return null;
    let valueEnd = i;
    while (valueEnd > valueStart && (buf[valueEnd - 1] === 0x20 || buf[valueEnd - 1] === 0x09)) valueEnd--;
    i += 2;
    switch (special(buf, nameStart, nameEnd)) {
      case Special.ContentLength: {
        // Digits right up to the CR (llhttp refuses some trailing whitespace here, so none is taken).
        if (contentLength !== -1 || i - 2 === valueStart || i - 2 - valueStart > 15) return null;
        let n = 0;
        for (let j = valueStart; j < i - 2; j++) {
          const c = buf[j]! - 0x30;
          if (c < 0 || c > 9) return null;
          n = n * 10 + c;
        }
        contentLength = n;
        break;
      }
      case Special.Connection: {
        const value = buf.toString('latin1', valueStart, valueEnd).toLowerCase();
        if (value === 'close') keepAlive = false;
        else if (value !== 'keep-alive') return null; // lists headers to drop: llhttp's path handles it
        continue;
      }
      case Special.TransferEncoding:
        return null;
      case Special.HopByHop:
        continue;
      case Special.None:
        break;
    }
    o = copyBytes(buf, nameStart, valueEnd, out, o);
    out[o++] = CR;
    out[o++] = LF;
  }
  if (contentLength === -1) return null;
  RESULT.status = status;
  RESULT.bodyStart = i + 2;
  RESULT.contentLength = contentLength;
  RESULT.keepAlive = keepAlive;
  RESULT.relayedEnd = o;
  return RESULT;
}

/** Copies `src[from, to)` to `dst` at `at`; returns the index after it. A loop for the short spans of a head (a native copy costs more). */
export function copyBytes(src: Uint8Array, from: number, to: number, dst: Uint8Array, at: number): number {
  if (to - from > 256) {
    dst.set(src.subarray(from, to), at);
    return at + to - from;
  }
  for (let k = from; k < to; k++) dst[at++] = src[k]!;
  return at;
}

const enum Special { None, ContentLength, Connection, TransferEncoding, HopByHop }

/** Classifies a header name in place (no string made), folding ASCII case. */
function special(buf: Buffer, start: number, end: number): Special {
  const len = end - start;
  switch (len) {
    case 14: return is(buf, start, 'content-length') ? Special.ContentLength : Special.None;
    case 10:
      if (is(buf, start, 'connection')) return Special.Connection;
      return is(buf, start, 'keep-alive') ? Special.HopByHop : Special.None;
    case 17: return is(buf, start, 'transfer-encoding') ? Special.TransferEncoding : Special.None;
    case 2: return is(buf, start, 'te') ? Special.HopByHop : Special.None;
    case 7: return is(buf, start, 'trailer') || is(buf, start, 'upgrade') ? Special.HopByHop : Special.None;
    default: return len > 6 && is(buf, start, 'proxy-') ? Special.HopByHop : Special.None;
  }
}

function is(buf: Buffer, start: number, lower: string): boolean {
  for (let k = 0; k < lower.length; k++) if ((buf[start + k]! | 0x20) !== lower.charCodeAt(k)) return false;
  return true;
}
