/**
 * Test doubles for the gateway: tiny backends that say who they are, a plain
 * HTTP client that can set any Host, and a raw-bytes client for malformed
 * requests.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import http from 'node:http';
import net from 'node:net';
import pino from 'pino';
import type { AddressInfo } from 'node:net';
import { startGateway, type Gateway, type GatewayConfig, type GatewayOptions } from '../../src/gateway/index.js';

export interface Backend {
  name: string;
  port: number;
  /** Requests this backend has seen, in order. */
  seen: Array<{ method: string; url: string; headers: http.IncomingHttpHeaders; rawHeaders: string[]; body: string }>;
  close(): Promise<void>;
}

/**
 * An HTTP/1.1 backend that answers JSON naming itself and echoing the request.
 * `/slow?ms=N` waits before answering; `/chunked` answers without a length;
 * `/hop` answers with hop-by-hop headers the gateway must drop. WebSocket
 * handshakes get a 101 and then every byte is echoed back prefixed with the
 * backend's name.
 */
export async function startBackend(name: string, host = '127.0.0.1'): Promise<Backend> {
  const seen: Backend['seen'] = [];
  const sockets = new Set<net.Socket>();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('latin1');
      seen.push({ method: req.method!, url: req.url!, headers: req.headers, rawHeaders: req.rawHeaders, body });
      const url = new URL(req.url!, 'http://x');
      const answer = (): void => {
        const payload = JSON.stringify({ backend: name, method: req.method, url: req.url, headers: req.headers, body });
        if (url.pathname === '/chunked') {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.write(payload.slice(0, 10));
          res.end(payload.slice(10));
        } else if (url.pathname === '/hop') {
          res.writeHead(200, {
            'content-type': 'application/json', 'content-length': Buffer.byteLength(payload),
            connection: 'keep-alive, X-Secret-Hop', 'x-secret-hop': 'leak', 'keep-alive': 'timeout=5',
            'proxy-authenticate': 'Basic', upgrade: 'h2c', 'x-end-to-end': 'kept',
          });
          res.end(payload);
        } else if (url.pathname === '/status') {
          res.writeHead(Number(url.searchParams.get('code') ?? 200), { 'content-type': 'text/plain' });
          res.end(name);
        } else {
          res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload), 'x-backend': name });
          res.end(payload);
        }
      };
      const ms = Number(url.searchParams.get('ms') ?? 0);
      if (url.pathname === '/slow' && ms > 0) setTimeout(answer, ms);
      else answer();
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('upgrade', (req, socket: net.Socket, head) => {
    seen.push({ method: req.method!, url: req.url!, headers: req.headers, rawHeaders: req.rawHeaders, body: '' });
    const key = String(req.headers['sec-websocket-key'] ?? '');
    const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
    const echo = (d: Buffer): void => { socket.write(`${name}:${d.toString('latin1')}`); };
    if (head.length > 0) echo(head);
    socket.on('data', echo);
    socket.on('error', () => {});
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    name, port, seen,
    close: () => new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    }),
  };
}

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  body: string;
  json<T = any>(): T;
}

/** One request on a fresh connection; `host` sets the Host header as given. */
export function request(
  port: number,
  opts: { host?: string; path?: string; method?: string; headers?: Record<string, string>; body?: string | Buffer; address?: string; localAddress?: string } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: opts.address ?? '127.0.0.1', port, path: opts.path ?? '/', method: opts.method ?? 'GET', agent: false,
      localAddress: opts.localAddress, setHost: opts.host === undefined,
      headers: { ...(opts.host === undefined ? {} : { host: opts.host }), ...opts.headers },
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString('latin1');
        resolve({ status: res.statusCode!, headers: res.headers, rawHeaders: res.rawHeaders, body, json: () => JSON.parse(body) });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

/**
 * Sends raw bytes and collects everything the gateway sends back until it
 * closes the connection or `idleMs` pass without a byte.
 */
export function rawExchange(port: number, bytes: string | Buffer | Array<string | Buffer>, opts: { idleMs?: number; address?: string } = {}): Promise<{ text: string; closed: boolean }> {
  return new Promise((resolve) => {
    const socket = net.connect(port, opts.address ?? '127.0.0.1');
    const chunks: Buffer[] = [];
    let timer: NodeJS.Timeout;
    let closed = false;
    const done = (): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ text: Buffer.concat(chunks).toString('latin1'), closed });
    };
    const arm = (): void => {
      clearTimeout(timer);
      timer = setTimeout(done, opts.idleMs ?? 400);
    };
    socket.on('data', (d) => {
      chunks.push(d);
      arm();
    });
    socket.on('end', () => { closed = true; done(); });
    socket.on('close', () => { closed = true; done(); });
    socket.on('error', () => { closed = true; done(); });
    socket.on('connect', () => {
      for (const part of Array.isArray(bytes) ? bytes : [bytes]) socket.write(part);
      arm();
    });
  });
}

/** Status codes of every response in a raw byte stream, in order. */
export function statuses(text: string): number[] {
  return [...text.matchAll(/HTTP\/1\.[01] (\d{3})/g)].map((m) => Number(m[1]));
}

/**
 * Starts a gateway (one worker unless told), runs `fn`, and always closes the
 * gateway. A worker that dies during the test fails it (a crash would
 * otherwise hide behind the automatic restart) unless `restarts` allows it.
 */
export async function withGateway<T>(
  config: GatewayConfig, opts: GatewayOptions & { restarts?: boolean },
  fn: (gw: Gateway, port: (id?: string) => number) => Promise<T>,
): Promise<T> {
  const { restarts, ...gatewayOpts } = opts;
  const errors: string[] = [];
  const logger = pino({ level: 'warn' }, { write: (line: string) => { errors.push(line); } });
  const gw = await startGateway(config, { workers: 1, logger, ...gatewayOpts });
  const port = (id?: string): number => {
    const a = gw.addresses().find((x) => id === undefined || x.id === id);
    if (a === undefined) throw new Error(`no listener ${id}`);
    return a.port;
  };
  try {
    const result = await fn(gw, port);
    if (!restarts) assert.deepEqual(errors, [], 'the gateway logged warnings or errors');
    return result;
  } finally {
    await gw.close();
  }
}

export const upstream = (b: Backend) => ({ kind: 'upstream' as const, host: '127.0.0.1', port: b.port });

/** A self-signed ECDSA P-256 certificate for `names` (the first one the CN), made by the openssl CLI in `dir`. */
export function makeEcCert(dir: string, label: string, names: string[]): { certPem: string; keyPem: string } {
  const key = join(dir, `${label}.key`);
  const crt = join(dir, `${label}.crt`);
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', key, '-out', crt, '-days', '2', '-subj', `/CN=${names[0]}`,
    '-addext', `subjectAltName=${names.map((n) => `DNS:${n}`).join(',')}`], { stdio: 'ignore' });
  return { certPem: readFileSync(crt, 'utf8'), keyPem: readFileSync(key, 'utf8') };
}
