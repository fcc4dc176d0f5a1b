/**
 * Webhook delivery: one JSON POST per alert, signed so the receiver knows it
 * came from this Strata and was not replayed.
 *
 * Headers: `x-strata-timestamp` (Unix seconds when this attempt was signed),
 * `x-strata-signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`
 * and `x-strata-delivery` (the alert id: the same on every retry, so a receiver
 * can drop duplicates). Each attempt is signed afresh; a receiver refuses a
 * timestamp older than its tolerance (5 minutes in `verifyWebhook`), which
 * stops a captured request from being replayed later. Redirects are not
 * followed (a redirect could point a tenant's output into the host).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { VERSION } from '../../core/version.js';
import { isPrivateHost, publicLookup } from './address.js';
import type { Attempt, Sink, WebhookConfig } from './types.js';

export const SIGNATURE_HEADER = 'x-strata-signature';
export const TIMESTAMP_HEADER = 'x-strata-timestamp';
export const DELIVERY_HEADER = 'x-strata-delivery';

/** The signature header's value for a body signed at `timestamp` (Unix seconds). */
export function signWebhook(secret: string, timestamp: number, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

/**
 * What a receiver does: true when the signature matches the body and the
 * timestamp is within `toleranceSec` of `nowSec` (default 300 s).
 */
export function verifyWebhook(secret: string, headers: IncomingHttpHeaders | Record<string, string | undefined>, body: string,
  opts: { toleranceSec?: number; nowSec?: number } = {}): boolean {
  const ts = Number(headers[TIMESTAMP_HEADER]);
  const sig = headers[SIGNATURE_HEADER];
  if (!Number.isInteger(ts) || typeof sig !== 'string') return false;
  const now = opts.nowSec ?? Math.floor(Date.now() / 1000);
  if (Math.abs(now - ts) > (opts.toleranceSec ?? 300)) return false;
  const want = Buffer.from(signWebhook(secret, ts, body));
  const got = Buffer.from(sig);
  return want.length === got.length && timingSafeEqual(want, got);
}

/** Statuses worth another attempt: the receiver is down, overloaded or timed out. Other 4xx are its final word. */
const retryable = (status: number): boolean => status >= 500 || status === 408 || status === 429;

export class WebhookSink implements Sink {
  readonly #url: URL;
  /** Attempts in flight, ended at once by `close` (a hanging receiver must not hold up a shutdown). */
  readonly #inFlight = new Set<() => void>();
  constructor(readonly config: WebhookConfig, private readonly secret: string, private readonly restricted: boolean) {
    this.#url = new URL(config.url);
  }

  send(body: string, alert: { id: string }): Promise<Attempt> {
    if (this.restricted && isPrivateHost(this.#url.hostname)) {
      return Promise.resolve({ ok: false, error: `${this.#url.hostname} is a private address a tenant's output may not reach`, retry: false });
    }
    const timestamp = Math.floor(Date.now() / 1000);
    const headers = {
      ...this.config.headers,
      'content-type': 'application/json',
      'content-length': String(Buffer.byteLength(body)),
      'user-agent': `strata/${VERSION}`,
      [TIMESTAMP_HEADER]: String(timestamp),
      [SIGNATURE_HEADER]: signWebhook(this.secret, timestamp, body),
      [DELIVERY_HEADER]: alert.id,
    };
    const request = this.#url.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise<Attempt>((resolve) => {
      let settled = false;
      const finish = (a: Attempt): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.#inFlight.delete(abort);
        req.destroy();
        resolve(a);
      };
      const abort = (): void => finish({ ok: false, error: 'output closed', retry: false });
      this.#inFlight.add(abort);
      const req = request(this.#url, {
        method: 'POST', headers, agent: false,
        ...(this.restricted ? { lookup: publicLookup } : {}),
      }, (res) => {
        res.resume();
        const status = res.statusCode ?? 0;
        // The answer's status is all we need: no waiting for a body a hanging receiver never ends.
        if (status >= 200 && status < 300) finish({ ok: true });
        else finish({ ok: false, error: `HTTP ${status}`, retry: retryable(status) });
      });
      // One deadline for the whole attempt (connect, send, answer), whatever the receiver does.
      const timer = setTimeout(() => finish({ ok: false, error: `no answer within ${this.config.timeoutMs} ms`, retry: true }), this.config.timeoutMs);
      req.on('error', (e: NodeJS.ErrnoException) => finish({ ok: false, error: e.message, retry: e.code !== 'STRATA_PRIVATE_ADDRESS' }));
      req.end(body);
    });
  }

  async close(): Promise<void> {
    for (const abort of [...this.#inFlight]) abort();
  }
}
