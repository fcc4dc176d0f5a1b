/**
 * Test doubles for TLS passthrough: certificates from the openssl CLI, TLS
 * echo backends that present their own certificate (and read a PROXY v2
 * header first when asked), a ClientHello builder, and a relay that cuts a
 * client's first flight into tiny TCP segments and TLS records.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { decodeProxyV2, type ProxyHeader } from '../../src/gateway/proxy-protocol.js';

export interface Pem {
  certPem: string;
  keyPem: string;
}

/** Self-signed ECDSA P-256 certificates, CN = first name; the directory is removed by `cleanup`. */
export class CertFactory {
  private readonly dir = mkdtempSync(join(tmpdir(), 'strata-passthrough-'));
  private n = 0;

  make(names: string[]): Pem {
    const base = join(this.dir, String(this.n++));
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', `${base}.key`, '-out', `${base}.crt`, '-days', '2', '-subj', `/CN=${names[0]}`,
      '-addext', `subjectAltName=${names.map((x) => `DNS:${x}`).join(',')}`], { stdio: 'ignore' });
    return { certPem: readFileSync(`${base}.crt`, 'utf8'), keyPem: readFileSync(`${base}.key`, 'utf8') };
  }

  cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface TlsBackend {
  name: string;
  port: number;
  /** PROXY headers read, one per connection, when started with `proxyProtocol`. */
  proxyHeaders: ProxyHeader[];
  /** TCP connections accepted. */
  accepted: number;
  close(): Promise<void>;
}

/**
 * A TLS server that echoes every byte back and answers a half-close with its
 * own. With `proxyProtocol` it reads a PROXY v2 header before the TLS bytes
 * (and refuses a connection without one).
 */
export async function startTlsBackend(name: string, pem: Pem, opts: { proxyProtocol?: boolean; host?: string } = {}): Promise<TlsBackend> {
  const context = tls.createSecureContext({ cert: pem.certPem, key: pem.keyPem });
  const sockets = new Set<net.Socket>();
  const backend: TlsBackend = { name, port: 0, proxyHeaders: [], accepted: 0, close: async () => {} };
  const serveTls = (raw: net.Socket): void => {
    const t = new tls.TLSSocket(raw, { isServer: true, secureContext: context });
    t.on('data', (d: Buffer) => t.write(d));
    t.on('end', () => t.end());
    t.on('error', () => raw.destroy());
  };
  const server = net.createServer({ allowHalfOpen: true }, (raw) => {
    backend.accepted++;
    sockets.add(raw);
    raw.on('close', () => sockets.delete(raw));
    raw.on('error', () => {});
    if (!opts.proxyProtocol) return serveTls(raw);
    let data = Buffer.alloc(0);
    const onData = (d: Buffer): void => {
      data = Buffer.concat([data, d]);
      const r = decodeProxyV2(data);
      if (r.kind === 'partial') return;
      raw.removeListener('data', onData);
      raw.pause();
      if (r.kind === 'invalid') return void raw.destroy();
      backend.proxyHeaders.push(r.header);
      if (data.length > r.header.length) raw.unshift(data.subarray(r.header.length));
      serveTls(raw);
    };
    raw.on('data', onData);
  });
  await new Promise<void>((resolve) => server.listen(0, opts.host ?? '127.0.0.1', resolve));
  backend.port = (server.address() as net.AddressInfo).port;
  backend.close = () => new Promise<void>((resolve) => {
    for (const s of sockets) s.destroy();
    server.close(() => resolve());
  });
  return backend;
}

/** A TLS connection that has finished its handshake; rejects if the gateway closes it first. */
export function tlsConnect(port: number, servername: string | undefined, opts: { host?: string; localAddress?: string } = {}): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: opts.host ?? '127.0.0.1', port, servername, localAddress: opts.localAddress, rejectUnauthorized: false, allowHalfOpen: true } as tls.ConnectionOptions);
    socket.once('secureConnect', () => resolve(socket));
    socket.once('error', reject);
    socket.once('close', () => reject(new Error('closed before the handshake')));
  });
}

/** The CN of the certificate the peer presented. */
export const peerName = (s: tls.TLSSocket): string => String(s.getPeerCertificate().subject.CN);

/** Writes `data` and resolves with as many bytes as came back. */
export function echo(socket: net.Socket, data: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let got = 0;
    const onData = (d: Buffer): void => {
      parts.push(d);
      got += d.length;
      if (got >= data.length) {
        socket.removeListener('data', onData);
        resolve(Buffer.concat(parts));
      }
    };
    socket.on('data', onData);
    socket.once('error', reject);
    socket.once('close', () => reject(new Error(`closed after ${got} of ${data.length} bytes`)));
    socket.write(data);
  });
}

/**
 * Connects with raw TCP, writes `parts` one after the other, and resolves with
 * everything received once the other side closes (or `idleMs` passes quietly).
 */
export function rawSession(port: number, parts: Buffer[], opts: { idleMs?: number; gapMs?: number; host?: string } = {}): Promise<{ received: Buffer; closed: boolean }> {
  return new Promise((resolve) => {
    const socket = net.connect(port, opts.host ?? '127.0.0.1');
    const got: Buffer[] = [];
    let timer: NodeJS.Timeout | undefined;
    let done = false;
    const finish = (closed: boolean): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ received: Buffer.concat(got), closed });
    };
    const arm = (): void => {
      clearTimeout(timer);
      timer = setTimeout(() => finish(false), opts.idleMs ?? 3_000);
    };
    socket.on('data', (d: Buffer) => { got.push(d); arm(); });
    socket.on('end', () => finish(true));
    socket.on('close', () => finish(true));
    socket.on('error', () => finish(true));
    socket.on('connect', async () => {
      for (const p of parts) {
        if (socket.destroyed) return;
        socket.write(p);
        if (opts.gapMs) await new Promise((r) => setTimeout(r, opts.gapMs));
      }
      arm();
    });
  });
}

/** A ClientHello handshake message (no record header) naming `sni`, with `padding` bytes of padding extension. */
export function buildHello(o: { sni?: string | Buffer; padding?: number } = {}): Buffer {
  const exts: Buffer[] = [];
  if (o.sni !== undefined) {
    const name = Buffer.isBuffer(o.sni) ? o.sni : Buffer.from(o.sni, 'latin1');
    const entry = Buffer.concat([Buffer.from([0]), u16(name.length), name]);
    const list = Buffer.concat([u16(entry.length), entry]);
    exts.push(Buffer.concat([u16(0), u16(list.length), list]));
  }
  if (o.padding !== undefined) exts.push(Buffer.concat([u16(21), u16(o.padding), Buffer.alloc(o.padding)]));
  const extensions = Buffer.concat(exts);
  const body = Buffer.concat([
    Buffer.from([3, 3]), Buffer.alloc(32, 7), Buffer.from([0]), u16(2), Buffer.from([0x13, 0x01]), Buffer.from([1, 0]),
    u16(extensions.length), extensions,
  ]);
  return Buffer.concat([Buffer.from([1, body.length >> 16, (body.length >> 8) & 0xff, body.length & 0xff]), body]);
}

const u16 = (n: number): Buffer => Buffer.from([n >> 8, n & 0xff]);

/** A handshake message cut into TLS records of the given sizes (the last size repeats). */
export function inRecords(handshake: Buffer, sizes: number[] = [handshake.length]): Buffer {
  const out: Buffer[] = [];
  let p = 0;
  for (let i = 0; p < handshake.length; i++) {
    const n = Math.min(sizes[Math.min(i, sizes.length - 1)]!, handshake.length - p);
    out.push(Buffer.from([22, 3, 1, n >> 8, n & 0xff]), handshake.subarray(p, p + n));
    p += n;
  }
  return Buffer.concat(out);
}

/** The handshake bytes carried by a run of TLS records. */
export function handshakeOf(records: Buffer): Buffer {
  const parts: Buffer[] = [];
  for (let p = 0; p + 5 <= records.length;) {
    const len = records.readUInt16BE(p + 3);
    parts.push(records.subarray(p + 5, p + 5 + len));
    p += 5 + len;
  }
  return Buffer.concat(parts);
}

/**
 * A loopback relay in front of `target`: the client's first TLS record (its
 * ClientHello) is re-framed into records of `recordSize` bytes and sent in
 * writes of `segment` bytes, `gapMs` apart (TCP_NODELAY: separate segments);
 * everything after flows through untouched. A handshake through it still
 * succeeds, as TLS allows a handshake message to span records.
 */
export async function startSlicer(target: number, o: { recordSize: number; segment: number; gapMs: number }): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const up = net.connect({ port: target, host: '127.0.0.1', noDelay: true });
    for (const s of [client, up]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => { client.destroy(); up.destroy(); });
    }
    let first = Buffer.alloc(0);
    const listener = (d: Buffer): void => void onFirst(d);
    const onFirst = async (d: Buffer): Promise<void> => {
      first = Buffer.concat([first, d]);
      if (first.length < 5 || first.length < 5 + first.readUInt16BE(3)) return;
      client.removeListener('data', listener);
      client.pause();
      const end = 5 + first.readUInt16BE(3);
      const reframed = Buffer.concat([inRecords(first.subarray(5, end), [o.recordSize]), first.subarray(end)]);
      for (let p = 0; p < reframed.length; p += o.segment) {
        up.write(reframed.subarray(p, p + o.segment));
        await new Promise((r) => setTimeout(r, o.gapMs));
      }
      client.pipe(up);
    };
    client.on('data', listener);
    up.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    }),
  };
}
