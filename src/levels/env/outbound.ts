/**
 * `fetch` from tenant code, performed by the supervisor on the tenant's behalf.
 *
 * Off by default: a request leaves only when its host (and port) is in the
 * instance's `outbound` list *and* the provider's policy allows it (default:
 * loopback addresses only, as the machine's rules require). Redirects are not
 * followed (a redirect could leave the allowlist): the handler sees the 3xx.
 * Bodies both ways and the time taken are bounded.
 */
import { isIP } from 'node:net';

export const MAX_OUTBOUND_BODY_BYTES = 8 * 1024 * 1024;
const TIMEOUT_MS = 30_000;

/** A refusal or failure tenant code sees as the rejection of its fetch. */
export class OutboundError extends Error {}
/** A fetch the allowlist or the provider's policy refused (not one that failed on the way): the guard hears of it. */
export class OutboundRefused extends OutboundError {}

export type OutboundPolicy = (host: string, port: number) => boolean;

/** Default policy: literal loopback addresses and `localhost`. */
export const loopbackOnly: OutboundPolicy = (host) => {
  const h = host.replace(/^\[|\]$/g, '');
  if (h === 'localhost' || h === '::1') return true;
  return isIP(h) === 4 && h.startsWith('127.');
};

export interface OutboundRequest {
  method: string;
  url: string;
  headers: Array<[string, string]>;
  body: Uint8Array | null;
}

export interface OutboundResponse {
  status: number;
  headers: Array<[string, string]>;
  body: Uint8Array;
}

/** Does `allow` ("host" = any port, "host:port") name this URL's host and port? */
export function allowedBy(allow: readonly string[], host: string, port: number): boolean {
  return allow.some((entry) => {
    const m = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(entry);
    if (!m) return false;
    return m[1]!.toLowerCase() === host.toLowerCase() && (m[2] === undefined || Number(m[2]) === port);
  });
}

export async function outboundFetch(allow: readonly string[], policy: OutboundPolicy, req: OutboundRequest): Promise<OutboundResponse> {
  let url: URL;
  try { url = new URL(req.url); } catch { throw new OutboundError(`fetch: invalid URL ${req.url}`); }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new OutboundRefused(`fetch: only http and https, not ${url.protocol}`);
  const port = url.port ? Number(url.port) : url.protocol === 'https:' ? 443 : 80;
  if (!allowedBy(allow, url.hostname, port) || !policy(url.hostname, port)) {
    throw new OutboundRefused(`fetch: ${url.host} is not in this instance's outbound allowlist`);
  }
  if (req.body && req.body.length > MAX_OUTBOUND_BODY_BYTES) throw new OutboundError('fetch: request body too large');
  let res: Response;
  try {
    res = await fetch(url, {
      method: req.method,
      headers: req.headers,
      body: req.body && req.method !== 'GET' && req.method !== 'HEAD' ? Buffer.from(req.body) : undefined,
      redirect: 'manual',
      signal: AbortSignal.timeout(TIMEOUT_MS),
    });
  } catch (e) {
    throw new OutboundError(`fetch: ${(e as Error).message}`);
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  if (res.body) {
    for await (const chunk of res.body) {
      size += chunk.length;
      if (size > MAX_OUTBOUND_BODY_BYTES) throw new OutboundError('fetch: response body too large');
      chunks.push(chunk);
    }
  }
  return { status: res.status, headers: [...res.headers.entries()], body: Buffer.concat(chunks) };
}
