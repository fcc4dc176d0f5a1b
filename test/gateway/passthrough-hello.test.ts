/**
 * The ClientHello parser as TLS passthrough uses it: on real hellos (Node's
 * and the openssl CLI's) and on built ones, cut anywhere, fragmented over
 * several TLS records, oversized, garbage, SSLv2-style, without SNI, and a
 * seeded mutation fuzz. It must never throw, never wait for more than
 * MAX_HELLO_BYTES, and only ever return a normalised DNS name or null.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { test } from 'node:test';
import tls from 'node:tls';
import { MAX_HELLO_BYTES, parseClientHello } from '../../src/gateway/client-hello.js';
import { buildHello, handshakeOf, inRecords } from './passthrough-fixtures.js';

/** The first bytes a client sends, captured by a plain TCP server until the hello is whole (or 2 s pass). */
async function capture(connect: (port: number) => () => void): Promise<Buffer> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  try {
    return await new Promise<Buffer>((resolve, reject) => {
      let stop: () => void = () => {};
      const timer = setTimeout(() => reject(new Error('no ClientHello')), 5_000);
      server.once('connection', (socket) => {
        let data = Buffer.alloc(0);
        socket.on('data', (d: Buffer) => {
          data = Buffer.concat([data, d]);
          if (parseClientHello(data).kind !== 'partial') {
            clearTimeout(timer);
            socket.destroy();
            stop();
            resolve(data);
          }
        });
        socket.on('error', () => {});
      });
      stop = connect(port);
    });
  } finally {
    server.close();
  }
}

const nodeHello = (servername?: string): Promise<Buffer> => capture((port) => {
  const s = tls.connect({ host: '127.0.0.1', port, servername, rejectUnauthorized: false });
  s.on('error', () => {});
  return () => s.destroy();
});

const opensslHello = (args: string[]): Promise<Buffer> => capture((port) => {
  const child = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, ...args], { stdio: ['pipe', 'ignore', 'ignore'] });
  return () => child.kill();
});

test('real ClientHellos: Node (TLS 1.3) and openssl s_client (TLS 1.2, no SNI)', async () => {
  const withSni = await nodeHello('Shop.Example.com');
  assert.deepEqual(parseClientHello(withSni), { kind: 'hello', sni: 'shop.example.com' });
  assert.deepEqual(parseClientHello(await nodeHello()), { kind: 'hello', sni: null }, 'no SNI towards an IP');
  const tls12 = await opensslHello(['-servername', 'b.test', '-tls1_2']);
  assert.deepEqual(parseClientHello(tls12), { kind: 'hello', sni: 'b.test' });
  const noSni = await opensslHello(['-noservername']);
  assert.deepEqual(parseClientHello(noSni), { kind: 'hello', sni: null });

  for (const hello of [withSni, tls12]) {
    for (let cut = 0; cut < hello.length; cut++) assert.equal(parseClientHello(hello.subarray(0, cut)).kind, 'partial', `cut at ${cut}`);
    const hs = handshakeOf(hello);
    // The same hello over several records, tiny ones included, and cut anywhere in them.
    for (const sizes of [[1], [3, 500], [17], [100, 1, 1000], [hs.length - 1]]) {
      const split = inRecords(hs, sizes);
      assert.deepEqual(parseClientHello(split), parseClientHello(hello), `records of ${sizes.join(',')}`);
      for (let cut = 0; cut < split.length; cut += 7) assert.equal(parseClientHello(split.subarray(0, cut)).kind, 'partial');
    }
  }
});

test('built hellos: names are normalised; IP literals count as no SNI; bad names are refused', () => {
  const sni = (name: string | Buffer): unknown => {
    const r = parseClientHello(inRecords(buildHello({ sni: name })));
    return r.kind === 'hello' ? r.sni : r.kind;
  };
  assert.equal(sni('A.Test.'), 'a.test');
  assert.equal(sni('xn--bcher-kva.example'), 'xn--bcher-kva.example');
  assert.equal(sni('127.0.0.1'), null);
  for (const bad of ['', 'a b.test', 'a.test:443', '[::1]', 'a\0.test', 'ä.test', 'a..test']) assert.equal(sni(bad), 'invalid', JSON.stringify(bad));
  assert.deepEqual(parseClientHello(inRecords(buildHello())), { kind: 'hello', sni: null }, 'no extensions at all');
  assert.deepEqual(parseClientHello(inRecords(buildHello({ padding: 10 }))), { kind: 'hello', sni: null }, 'extensions, none SNI');
});

test('oversized hellos are refused as soon as their size is known, never waited for', () => {
  const big = inRecords(buildHello({ sni: 'a.test', padding: MAX_HELLO_BYTES }), [16_000]);
  assert.equal(parseClientHello(big.subarray(0, 9)).kind, 'invalid', 'the handshake header declares too much');
  // Just below the bound is fine, over several records.
  const fits = inRecords(buildHello({ sni: 'a.test', padding: MAX_HELLO_BYTES - 200 }), [4_000]);
  assert.deepEqual(parseClientHello(fits), { kind: 'hello', sni: 'a.test' });
  // Endless tiny records never become a hello: refused once past the byte bound.
  const drip = inRecords(buildHello({ sni: 'a.test', padding: MAX_HELLO_BYTES - 200 }), [1]);
  assert.equal(parseClientHello(drip).kind, 'invalid');
  let sawPartial = 0;
  for (let n = 0; n <= drip.length; n += 997) {
    const r = parseClientHello(drip.subarray(0, n));
    if (r.kind === 'partial') sawPartial = n;
  }
  assert.ok(sawPartial <= MAX_HELLO_BYTES + 64, `waited for ${sawPartial} bytes`);
  assert.equal(parseClientHello(Buffer.from([22, 3, 1, 0x40, 0x01])).kind, 'invalid', 'a record over 16 KiB');
  assert.equal(parseClientHello(Buffer.from([22, 3, 1, 0, 0])).kind, 'invalid', 'an empty record');
});

test('garbage, SSLv2-style hellos, other record types and plain HTTP are refused', () => {
  const sslv2 = Buffer.from([0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10]);
  assert.equal(parseClientHello(sslv2).kind, 'invalid');
  assert.equal(parseClientHello(Buffer.from('GET / HTTP/1.1\r\nHost: a.test\r\n\r\n')).kind, 'invalid');
  assert.equal(parseClientHello(Buffer.from('PRI * HTTP/2.0\r\n')).kind, 'invalid');
  assert.equal(parseClientHello(Buffer.from([21, 3, 3, 0, 2, 2, 40])).kind, 'invalid', 'an alert record');
  const notHello = inRecords(Buffer.concat([Buffer.from([2]), buildHello({ sni: 'a.test' }).subarray(1)]));
  assert.equal(parseClientHello(notHello).kind, 'invalid', 'a ServerHello');
  let s = 4242;
  const rnd = (n: number): number => {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    return s % n;
  };
  for (let i = 0; i < 5_000; i++) {
    const junk = Buffer.from(Array.from({ length: 3 + rnd(300) }, () => rnd(256)));
    if (i % 2 === 0) junk.set([22, 3, 1]); // past the first check, into the length fields
    assert.doesNotThrow(() => parseClientHello(junk));
  }
});

test('fuzz: mutated real hellos never throw and yield only a normalised name or null', async () => {
  const seeds = [await nodeHello('a.example.com'), inRecords(handshakeOf(await nodeHello('b.test')), [50, 300])];
  let s = 777;
  const rnd = (n: number): number => {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    return s % n;
  };
  const kinds = { hello: 0, invalid: 0, partial: 0 };
  for (let i = 0; i < 20_000; i++) {
    let b = Buffer.from(seeds[rnd(seeds.length)]!);
    for (let m = 1 + rnd(4); m > 0; m--) {
      const at = rnd(b.length);
      switch (rnd(4)) {
        case 0: b[at] = rnd(256); break;
        case 1: b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + rnd(8))]); break;
        case 2: b = Buffer.concat([b.subarray(0, at), Buffer.from([rnd(256), rnd(256)]), b.subarray(at)]); break;
        default: b = b.subarray(0, at);
      }
    }
    const r = parseClientHello(b);
    kinds[r.kind]++;
    if (r.kind === 'hello' && r.sni !== null) assert.match(r.sni, /^[a-z0-9_-]+(\.[a-z0-9_-]+)*$/, `mutation ${i}`);
  }
  assert.ok(kinds.hello > 0 && kinds.invalid > 0 && kinds.partial > 0, JSON.stringify(kinds));
});
