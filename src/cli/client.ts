/**
 * The HTTP client for the Strata API: bearer auth, the `X-Strata-Reason` header,
 * an `Idempotency-Key` on creates (so a retry after a dropped connection cannot
 * create twice), API errors as `CliError(message, code)`, and waiting on
 * operations.
 */
import { randomUUID } from 'node:crypto';
import type { Command } from 'commander';
import { resolveConfig, type CliConfig, type GlobalFlags } from './config.js';
import { CliError, spinner } from './output.js';

export interface Operation {
  id: string;
  tenant: string | null;
  kind: string;
  target: string;
  status: 'pending' | 'running' | 'succeeded' | 'failed';
  progress: number | null;
  error: { code: string; message: string } | null;
  result: Record<string, unknown> | null;
  createdAt: string;
  updatedAt: string;
}

export interface RequestOptions {
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  /** Bytes sent as they are, with their media type (a tar archive), instead of a JSON `body`. */
  raw?: { type: string; data: Uint8Array };
  /** Send an Idempotency-Key, and retry once if the connection drops. */
  idempotent?: boolean;
  signal?: AbortSignal;
  headers?: Record<string, string>;
}

/** Network failures worth one retry: the request may or may not have arrived. */
const RETRYABLE = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED']);

const causeCode = (e: unknown): string | undefined => {
  const cause = (e as { cause?: { code?: string } })?.cause;
  return cause?.code;
};

export class Client {
  constructor(readonly config: CliConfig) {}

  /** The raw response for a request (used directly by the event stream). */
  async fetch(method: string, path: string, opts: RequestOptions = {}): Promise<Response> {
    if (!this.config.token) {
      throw new CliError(
        'no API token: set STRATA_TOKEN, pass --token, or put {"url", "token"} in ~/.config/strata/config.json',
        'STRATA_ERR_UNAUTHENTICATED',
      );
    }
    const url = new URL(`${this.config.url}${path}`);
    for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
    const headers: Record<string, string> = { ...opts.headers, authorization: `Bearer ${this.config.token}`, accept: 'application/json' };
    if (this.config.reason) headers['x-strata-reason'] = this.config.reason;
    if (opts.idempotent) headers['idempotency-key'] = randomUUID();
    if (opts.body !== undefined) headers['content-type'] = 'application/json';
    if (opts.raw) headers['content-type'] = opts.raw.type;
    const init: RequestInit = {
      method, headers,
      ...(opts.body !== undefined ? { body: JSON.stringify(opts.body) } : {}),
      ...(opts.raw ? { body: opts.raw.data as unknown as BodyInit } : {}),
      ...(opts.signal ? { signal: opts.signal } : {}),
    };
    const attempts = opts.idempotent || method === 'GET' ? 2 : 1;
    for (let i = 1; ; i++) {
      try {
        return await fetch(url, init);
      } catch (e) {
        if ((e as Error).name === 'AbortError') throw e;
        const code = causeCode(e);
        if (i < attempts && code && RETRYABLE.has(code)) continue;
        if (code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'EHOSTUNREACH' || code === 'ECONNRESET') {
          throw new CliError(`cannot reach the Strata API at ${this.config.url} — is 'strata up' running?`);
        }
        const cause = (e as { cause?: Error }).cause;
        throw new CliError(`request to ${this.config.url} failed: ${cause?.message ?? (e as Error).message}`, code);
      }
    }
  }

  /** A JSON request; an error answer becomes a CliError with the API's message and code. */
  async request<T = any>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
    return Client.#json<T>(await this.fetch(method, path, opts));
  }

  /** A PATCH, sent with If-Match when `ifMatch` is given (a 412 if the object changed since); the answer and the object's new ETag. */
  async patch<T = any>(path: string, body: unknown, ifMatch?: string): Promise<{ body: T; etag: string | null }> {
    const res = await this.fetch('PATCH', path, { body, ...(ifMatch !== undefined ? { headers: { 'if-match': ifMatch } } : {}) });
    return { body: await Client.#json<T>(res), etag: res.headers.get('etag') };
  }

  static async #json<T>(res: Response): Promise<T> {
    const text = await res.text();
    if (!res.ok) throw apiError(res.status, text);
    try {
      return (text ? JSON.parse(text) : null) as T;
    } catch {
      throw new CliError(`the API answered ${res.status} with a body that is not JSON`, 'STRATA_ERR_BAD_JSON');
    }
  }

  get = <T = any>(path: string, query?: RequestOptions['query']): Promise<T> => this.request<T>('GET', path, query ? { query } : {});

  /**
   * Polls `GET /v1/operations/:id?wait=…` until the operation has succeeded or
   * failed, with a spinner on a terminal. Throws the operation's own error if it failed.
   */
  async waitFor(op: Operation, label = `${op.kind} ${op.target}`): Promise<Operation> {
    const spin = spinner(label);
    try {
      while (op.status !== 'succeeded' && op.status !== 'failed') {
        spin.update(`${label}: ${op.status}${op.progress !== null ? ` ${Math.round(op.progress * 100)}%` : ''}`);
        ({ operation: op } = await this.get<{ operation: Operation }>(`/v1/operations/${encodeURIComponent(op.id)}`, { wait: 2 }));
      }
    } finally {
      spin.stop();
    }
    if (op.status === 'failed') {
      throw new CliError(`${op.kind} ${op.target} failed: ${op.error?.message ?? 'no reason given'}`, op.error?.code ?? 'STRATA_ERR_DRIVER');
    }
    return op;
  }

  /** For an answer carrying an operation: waits for it unless `wait` is false, and returns the answer with the final operation. */
  async settle<T extends { operation: Operation }>(res: T, wait: boolean): Promise<T> {
    return wait ? { ...res, operation: await this.waitFor(res.operation) } : res;
  }
}

/** The CliError for an error answer: the API's own message and code when the body is `{"error": …}`. */
export function apiError(status: number, text: string): CliError {
  let err: { code?: unknown; message?: unknown } | undefined;
  try {
    err = (JSON.parse(text) as { error?: typeof err }).error;
  } catch {
    /* not JSON: a proxy in between, or not Strata at all */
  }
  const message = typeof err?.message === 'string' ? err.message : `HTTP ${status}${text ? `: ${text.slice(0, 200)}` : ''}`;
  return new CliError(message, typeof err?.code === 'string' ? err.code : `HTTP_${status}`);
}

/** The `--if-match` option of the commands that change an object. */
export const withIfMatch = (cmd: Command): Command =>
  cmd.option('--if-match <etag>', 'change it only if it still has this ETag (from a previous change); otherwise nothing changes');

/** Path segment escaping for names taken from the command line. */
export const seg = (s: string): string => encodeURIComponent(s);

/** The client for a command, from its global flags (`--url`, `--token`, `--json`, `--reason`) and the environment. */
export function clientFor(cmd: Command): Client {
  return new Client(resolveConfig(cmd.optsWithGlobals<GlobalFlags>()));
}
