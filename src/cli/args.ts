/**
 * Argument parsers shared by the command groups. Each throws commander's
 * InvalidArgumentError, so a bad argument is a one-line usage error (exit 2)
 * before any request is made.
 */
import { InvalidArgumentError } from 'commander';

export interface Ref {
  tenant: string;
  name: string;
}

/** `TENANT/NAME`, e.g. `acme/web`. */
export function parseRef(value: string): Ref {
  const m = /^([^/\s]+)\/([^/\s]+)$/.exec(value);
  if (!m) throw new InvalidArgumentError(`expected TENANT/NAME, e.g. acme/web`);
  return { tenant: m[1]!, name: m[2]! };
}

/** `TENANT` or `TENANT/NAME`. */
export function parseTenantOrRef(value: string): { tenant: string; name?: string } {
  return value.includes('/') ? parseRef(value) : { tenant: value };
}

/** An integer in [min, max]. */
export const integer = (min = 0, max = Number.MAX_SAFE_INTEGER) => (value: string): number => {
  const n = Number(value);
  if (!/^-?\d+$/.test(value.trim()) || !Number.isSafeInteger(n)) throw new InvalidArgumentError('not an integer');
  if (n < min || n > max) throw new InvalidArgumentError(`must be between ${min} and ${max}`);
  return n;
};

/** A non-negative number (vCPUs may be fractional). */
export function positiveNumber(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0) throw new InvalidArgumentError('not a non-negative number');
  return n;
}

/**
 * `key=value`, collected into one object over repeated flags. The value is JSON
 * when it parses as JSON (`port=8080` is a number, `debug=true` a boolean), a
 * string otherwise (`image=debian`).
 */
export function keyValue(value: string, previous: Record<string, unknown> = {}): Record<string, unknown> {
  const eq = value.indexOf('=');
  if (eq <= 0) throw new InvalidArgumentError('expected key=value');
  const key = value.slice(0, eq);
  const raw = value.slice(eq + 1);
  let parsed: unknown = raw;
  try {
    parsed = JSON.parse(raw);
  } catch {
    /* a plain string */
  }
  return { ...previous, [key]: parsed };
}

/** `HOST:PORT` or `[IPV6]:PORT`; all interfaces is spelled out, `0.0.0.0:PORT`. */
export function parseListen(value: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]\s]+)):(\d{1,5})$/.exec(value);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new InvalidArgumentError(`expected HOST:PORT or [IPV6]:PORT, e.g. 127.0.0.1:8470`);
  return { host: (m[1] ?? m[2])!, port };
}

/** `http://127.0.0.1:8080`, `https://[::1]:8443`, `tls-passthrough://0.0.0.0:443`: one gateway listener. */
export type GatewayProtocol = 'http' | 'https' | 'tls-passthrough';
export function parseGatewayListen(value: string, previous: Array<{ protocol: GatewayProtocol; host: string; port: number }> = []) {
  const m = /^(http|https|tls-passthrough):\/\/(.+)$/.exec(value);
  if (!m) throw new InvalidArgumentError('expected PROTOCOL://HOST:PORT with PROTOCOL http, https or tls-passthrough, e.g. http://127.0.0.1:8080');
  return [...previous, { protocol: m[1] as GatewayProtocol, ...parseListen(m[2]!) }];
}
