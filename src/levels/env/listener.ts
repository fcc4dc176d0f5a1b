/**
 * The loopback HTTP/1.1 endpoint of one env instance — what the gateway proxies
 * to (`info.address`, `info.port`). It is bound from create to delete, so the
 * address stays the same across stop, start and redeploy; while the instance
 * does not serve, it answers 503.
 *
 * It turns an HTTP request into an `EnvRequest`, asks `serve`, and writes the
 * `EnvResponse` back with hop-by-hop headers dropped and a content-length set.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { HeaderList } from './protocol.js';

export interface EnvRequest {
  method: string;
  /** Absolute URL as the handler sees it. */
  url: string;
  headers: HeaderList;
  body: Buffer;
}

export interface EnvResponse {
  status: number;
  headers: HeaderList;
  body: Buffer;
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer', 'content-length']);
export const LOOPBACK = '127.0.0.1';

export class InstanceListener {
  #server: Server | null = null;
  port = 0;

  constructor(
    private readonly serve: (req: EnvRequest) => Promise<EnvResponse>,
    private readonly maxBodyBytes: () => number,
  ) {}

  /** Binds `port` (0: any free one); if a remembered port is taken now, takes a free one. */
  async listen(port: number): Promise<number> {
    const server = createServer({ keepAliveTimeout: 5_000, requestTimeout: 60_000 }, (req, res) => this.#onRequest(req, res));
    try {
      await bind(server, port);
    } catch (e) {
      if (port === 0 || (e as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw e;
      await bind(server, 0);
    }
    this.#server = server;
    this.port = (server.address() as AddressInfo).port;
    return this.port;
  }

  async close(): Promise<void> {
    const server = this.#server;
    this.#server = null;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  #onRequest(req: IncomingMessage, res: ServerResponse): void {
    const limit = this.maxBodyBytes();
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > limit) { answer(res, { status: 413, headers: [], body: Buffer.from('Payload Too Large\n') }, true); return; }
    const chunks: Buffer[] = [];
    let size = 0;
    let refused = false;
    req.on('data', (chunk: Buffer) => {
      if (refused) return;
      size += chunk.length;
      if (size > limit) { refused = true; answer(res, { status: 413, headers: [], body: Buffer.from('Payload Too Large\n') }, true); return; }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (refused) return;
      const proto = req.headers['x-forwarded-proto'] === 'https' ? 'https' : 'http';
      const host = req.headers.host ?? `${LOOPBACK}:${this.port}`;
      const headers: HeaderList = [];
      for (let i = 0; i < req.rawHeaders.length; i += 2) headers.push([req.rawHeaders[i]!.toLowerCase(), req.rawHeaders[i + 1]!]);
      this.serve({ method: req.method ?? 'GET', url: `${proto}://${host}${req.url ?? '/'}`, headers, body: Buffer.concat(chunks, size) })
        .then((r) => answer(res, r, false), () => answer(res, { status: 500, headers: [], body: Buffer.from('Internal Server Error\n') }, false));
    });
    req.on('error', () => res.destroy());
  }
}

function answer(res: ServerResponse, r: EnvResponse, close: boolean): void {
  if (res.headersSent || res.destroyed) return;
  const headers: Record<string, string | string[]> = {};
  for (const [name, value] of r.headers) {
    const k = name.toLowerCase();
    if (HOP_BY_HOP.has(k)) continue;
    const prev = headers[k];
    headers[k] = prev === undefined ? value : Array.isArray(prev) ? [...prev, value] : [prev, value];
  }
  headers['content-length'] = String(r.body.length);
  if (close) headers.connection = 'close';
  res.writeHead(r.status, headers);
  res.end(res.req.method === 'HEAD' ? undefined : r.body);
}

function bind(server: Server, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (e: Error): void => reject(e);
    server.once('error', onError);
    server.listen(port, LOOPBACK, () => { server.off('error', onError); resolve(); });
  });
}
