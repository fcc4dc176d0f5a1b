/**
 * The sending daemon's client for the receiving daemon's API during a move:
 * the target's URL and a provider-admin token of it, the caller's reason passed
 * on (it lands in the target's audit log too). Whatever the target answers
 * short of success becomes STRATA_ERR_MOVE_TARGET carrying the target's own
 * error, so the caller sees why (a wrong token, no such tenant, quota …).
 */
import { StrataError } from '../../core/errors.js';

export interface MoveTarget {
  url: string;
  token: string;
}

export async function callTarget<T>(target: MoveTarget, path: string, body: unknown, opts: { reason: string | null; timeoutMs: number }): Promise<T> {
  const url = `${target.url.replace(/\/+$/, '')}${path}`;
  let res: Response;
  try {
    res = await fetch(url, {
      method: 'POST',
      headers: { authorization: `Bearer ${target.token}`, 'content-type': 'application/json', ...(opts.reason ? { 'x-strata-reason': opts.reason } : {}) },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(opts.timeoutMs),
    });
  } catch (e) {
    throw new StrataError('STRATA_ERR_MOVE_TARGET', `the move target ${target.url} did not answer: ${(e as Error).message}`, { target: target.url }, { cause: e });
  }
  const text = await res.text();
  let parsed: unknown = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    /* not JSON: reported as text below */
  }
  if (res.ok) return parsed as T;
  const err = (parsed as { error?: { code?: string; message?: string } } | null)?.error;
  const why = err?.code ? `${err.message ?? ''} (${err.code})` : `HTTP ${res.status} ${text.slice(0, 200)}`;
  throw new StrataError('STRATA_ERR_MOVE_TARGET', `the move target ${target.url} refused: ${why}`, {
    target: target.url, status: res.status, ...(err?.code ? { targetError: { code: err.code, message: err.message ?? '' } } : {}),
  });
}
