/**
 * RawTcp, the backend side of a passthrough stream on Node's TCP handle:
 * connect failures, bytes both ways, half-close in both orders, and
 * backpressure (write says false while the kernel holds bytes back, onDrain
 * once they are out). All against loopback servers made here.
 */
import assert from 'node:assert/strict';
import net, { type AddressInfo } from 'node:net';
import test from 'node:test';
import { RawTcp, assertRawTcpShape, type RawTcpEvents } from '../../src/gateway/raw-tcp.js';

interface Seen {
  connected: boolean;
  data: Buffer[];
  ended: boolean;
  drains: number;
  error: boolean | null;
  closed: Promise<void>;
}

function open(port: number, overrides: Partial<RawTcpEvents> = {}): { conn: RawTcp; seen: Seen; connected: Promise<void> } {
  let onClosed!: () => void;
  let onConnected!: () => void;
  const seen: Seen = { connected: false, data: [], ended: false, drains: 0, error: null, closed: new Promise((r) => { onClosed = r; }) };
  const connected = new Promise<void>((r) => { onConnected = r; });
  const conn = new RawTcp('127.0.0.1', port, Buffer.alloc(1024), {
    onConnect: () => { seen.connected = true; onConnected(); },
    onData: (n, buf) => { seen.data.push(Buffer.from(buf.subarray(0, n))); return true; },
    onEnd: () => { seen.ended = true; },
    onDrain: () => { seen.drains++; },
    onError: (connecting) => { seen.error = connecting; },
    onClose: () => onClosed(),
    ...overrides,
  });
  return { conn, seen, connected };
}

async function server(onSocket: (s: net.Socket) => void): Promise<{ port: number; close: () => Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const srv = net.createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    onSocket(s);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return {
    port: (srv.address() as AddressInfo).port,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => srv.close(r));
    },
  };
}

test('the bindings it needs are there', () => {
  assertRawTcpShape();
});

test('a refused connect reports an error while connecting, then closes', async () => {
  const { port, close } = await server(() => {});
  await close(); // nothing listens on the port any more
  const { seen } = open(port);
  await seen.closed;
  assert.equal(seen.error, true);
  assert.equal(seen.connected, false);
});

test('bytes both ways; the visitor-side end reaches the server, and the server end closes the connection', async () => {
  let serverGot = '';
  let serverEnded!: () => void;
  const ended = new Promise<void>((r) => { serverEnded = r; });
  const srv = await server((s) => {
    s.on('data', (d: Buffer) => {
      serverGot += d.toString();
      s.write(d.toString().toUpperCase());
    });
    s.on('end', () => {
      serverEnded();
      s.end('bye'); // written after our FIN: half-close keeps this direction open
    });
  });
  try {
    const { conn, seen, connected } = open(srv.port);
    await connected;
    assert.equal(conn.write(Buffer.from('hello')), true);
    while (Buffer.concat(seen.data).toString() !== 'HELLO') await new Promise((r) => setTimeout(r, 5));
    conn.end();
    await ended;
    await seen.closed;
    assert.equal(serverGot, 'hello');
    assert.equal(Buffer.concat(seen.data).toString(), 'HELLObye');
    assert.equal(seen.ended, true);
    assert.equal(seen.error, null);
  } finally {
    await srv.close();
  }
});

test('the server ending first is reported; the connection closes once our end follows', async () => {
  const srv = await server((s) => s.end('done'));
  try {
    const { conn, seen } = open(srv.port);
    while (!seen.ended) await new Promise((r) => setTimeout(r, 5));
    assert.equal(Buffer.concat(seen.data).toString(), 'done');
    conn.end();
    await seen.closed;
    assert.equal(seen.error, null);
  } finally {
    await srv.close();
  }
});

test('backpressure: write says false while the server does not read, and onDrain comes once it does', async () => {
  let serverSocket!: net.Socket;
  let received = 0;
  const srv = await server((s) => {
    serverSocket = s;
    s.pause();
    s.on('data', (d: Buffer) => { received += d.length; });
  });
  try {
    const { conn, seen, connected } = open(srv.port);
    await connected;
    const chunk = Buffer.alloc(1024 * 1024, 0x61);
    let sent = 0;
    let accepted = true;
    for (let i = 0; i < 64 && accepted; i++) {
      accepted = conn.write(chunk);
      sent += chunk.length;
    }
    assert.equal(accepted, false, 'a server that does not read makes writes pend');
    assert.equal(seen.drains, 0);
    serverSocket.resume();
    while (seen.drains === 0) await new Promise((r) => setTimeout(r, 5));
    while (received < sent) await new Promise((r) => setTimeout(r, 5));
    assert.equal(received, sent, 'every byte arrived');
    conn.destroy();
    await seen.closed;
  } finally {
    await srv.close();
  }
});

test('stopping and resuming reads: nothing is lost, and destroy closes at once', async () => {
  const srv = await server((s) => { s.write('a'.repeat(5000)); });
  try {
    let stop = true;
    const { conn, seen } = open(srv.port, {
      onData: (n, buf) => {
        seen.data.push(Buffer.from(buf.subarray(0, n)));
        const go = !stop;
        stop = false;
        return go;
      },
    });
    while (seen.data.length === 0) await new Promise((r) => setTimeout(r, 5));
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(seen.data.length, 1, 'reading stopped after the first read');
    conn.resumeReading();
    while (Buffer.concat(seen.data).length < 5000) await new Promise((r) => setTimeout(r, 5));
    assert.equal(Buffer.concat(seen.data).toString(), 'a'.repeat(5000));
    conn.destroy();
    await seen.closed;
  } finally {
    await srv.close();
  }
});
