/** Loopback networking for tests: a free port, and a GET through the gateway with a Host header. */
import { request } from 'node:http';
import { createServer, type AddressInfo } from 'node:net';

/** A TCP port free on `host` a moment ago (for listeners that must be configured with a fixed port). */
export const freePort = (host = '127.0.0.1'): Promise<number> => new Promise((resolve, reject) => {
  const s = createServer();
  s.once('error', reject);
  s.listen(0, host, () => {
    const { port } = s.address() as AddressInfo;
    s.close(() => resolve(port));
  });
});

export interface GatewayAnswer {
  /** 0 when there was no answer: refused, reset or timed out. */
  status: number;
  body: string;
  /** The response's headers, when asked for (`withHeaders`) and there was an answer. */
  headers?: import('node:http').IncomingHttpHeaders;
  /** Why there was no answer (the error's code, e.g. ECONNREFUSED, or its message). */
  error?: string;
}

export interface ViaGatewayOptions {
  /** Give up (status 0) after this long without an answer; default: never. */
  timeoutMs?: number;
  /** Return the response's headers too. */
  withHeaders?: boolean;
  /** The listener's address; default 127.0.0.1. */
  address?: string;
}

/**
 * GET `path` from the gateway listening on `address`:`port` with a Host header
 * (fetch cannot set Host), on a connection of its own; a refused, reset or
 * timed-out request is status 0 with `error` saying why, so callers can poll.
 */
export function viaGateway(port: number, host: string, path = '/', opts: ViaGatewayOptions = {}): Promise<GatewayAnswer> {
  return new Promise((resolve) => {
    const failed = (e: Error & { code?: string }): void => resolve({ status: 0, body: '', error: e.code ?? e.message });
    const req = request({
      host: opts.address ?? '127.0.0.1', port, path, headers: { host }, agent: false,
      ...(opts.timeoutMs ? { timeout: opts.timeoutMs } : {}),
    }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, ...(opts.withHeaders ? { headers: res.headers } : {}) }));
      res.on('error', failed);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', failed);
    req.end();
  });
}
