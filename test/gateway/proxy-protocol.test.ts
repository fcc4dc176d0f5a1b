/**
 * The PROXY protocol v2 encoder and decoder: byte-exact against the spec's
 * layout, round trips for IPv4 and IPv6, every malformed shape refused, a
 * seeded mutation fuzz that must never throw, and the encoder checked by an
 * independent reader (nginx's `listen … proxy_protocol`).
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { PP2_TYPE, PROXY_V2_SIGNATURE, decodeProxyV2, encodeProxyV2, type ProxyHeader } from '../../src/gateway/proxy-protocol.js';
import { tempDir } from '../support/temp.js';

const header = (data: Buffer): ProxyHeader => {
  const r = decodeProxyV2(data);
  assert.equal(r.kind, 'header', JSON.stringify(r));
  return (r as { header: ProxyHeader }).header;
};

test('an IPv4 header is laid out as the spec says', () => {
  const b = encodeProxyV2({ source: { address: '192.0.2.1', port: 56324 }, destination: { address: '198.51.100.2', port: 443 }, authority: 'a.test' });
  const expected = Buffer.concat([
    PROXY_V2_SIGNATURE,
    Buffer.from([0x21, 0x11, 0x00, 12 + 3 + 6]), // v2 PROXY, TCP over IPv4, length
    Buffer.from([192, 0, 2, 1, 198, 51, 100, 2, 0xdc, 0x04, 0x01, 0xbb]),
    Buffer.from([0x02, 0x00, 0x06]), Buffer.from('a.test'),
  ]);
  assert.deepEqual(b, expected);
  const h = header(Buffer.concat([b, Buffer.from('\x16\x03\x01')]));
  assert.equal(h.length, b.length, 'the stream after the header is not part of it');
  assert.deepEqual({ c: h.command, f: h.family, t: h.transport, s: h.source, d: h.destination, a: h.authority }, {
    c: 'proxy', f: 'inet', t: 'stream', s: { address: '192.0.2.1', port: 56324 }, d: { address: '198.51.100.2', port: 443 }, a: 'a.test',
  });
  assert.deepEqual(h.tlvs.map((t) => t.type), [PP2_TYPE.AUTHORITY]);
});

test('IPv6 addresses round-trip in RFC 5952 form; mixed families go as IPv6, mapped ones as IPv4', () => {
  const cases: Array<[string, string]> = [
    ['::1', '::1'], ['::', '::'], ['2001:db8::1', '2001:0DB8:0:0:0:0:0:1'], ['fe80::1:0:0:1', 'fe80:0:0:0:1:0:0:1'],
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], ['1:0:0:2::3', '1:0:0:2:0:0:0:3'], ['::ffff:10.1.2.3', '::ffff:a01:203'],
    ['64:ff9b::c000:221', '64:ff9b::192.0.2.33'],
  ];
  for (const [canonical, written] of cases) {
    const b = encodeProxyV2({ source: { address: written, port: 1 }, destination: { address: '::1', port: 2 } });
    assert.equal(b[13], 0x21, `${written}: TCP over IPv6`);
    assert.equal(b.length, 16 + 36);
    assert.equal(header(b).source!.address, canonical, written);
  }
  const mixed = header(encodeProxyV2({ source: { address: '10.0.0.1', port: 5 }, destination: { address: '2001:db8::2', port: 6 } }));
  assert.deepEqual([mixed.family, mixed.source, mixed.destination], ['inet6', { address: '::ffff:10.0.0.1', port: 5 }, { address: '2001:db8::2', port: 6 }]);
  const mapped = header(encodeProxyV2({ source: { address: '::ffff:127.0.0.1', port: 5 }, destination: { address: '127.0.0.2', port: 6 } }));
  assert.deepEqual([mapped.family, mapped.source!.address], ['inet', '127.0.0.1']);
  assert.throws(() => encodeProxyV2({ source: { address: 'a.test', port: 1 }, destination: { address: '::1', port: 2 } }), RangeError);
  assert.throws(() => encodeProxyV2({ source: { address: '::1', port: 70000 }, destination: { address: '::1', port: 2 } }), RangeError);
});

test('every prefix of a header is partial; a non-PROXY start is refused at once', () => {
  const b = encodeProxyV2({ source: { address: '2001:db8::7', port: 9 }, destination: { address: '::1', port: 443 }, authority: 'x.example' });
  for (let cut = 0; cut < b.length; cut++) assert.equal(decodeProxyV2(b.subarray(0, cut)).kind, 'partial', `cut at ${cut}`);
  assert.equal(decodeProxyV2(Buffer.from('\x16\x03\x01\x02\x00')).kind, 'invalid');
  assert.equal(decodeProxyV2(Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n')).kind, 'invalid', 'v1 is not v2');
});

test('malformed headers are refused with a reason', () => {
  const good = encodeProxyV2({ source: { address: '1.2.3.4', port: 1 }, destination: { address: '5.6.7.8', port: 2 }, authority: 'a.test' });
  const patch = (at: number, value: number): Buffer => {
    const b = Buffer.from(good);
    b[at] = value;
    return b;
  };
  const withLength = (len: number, extra: Buffer = Buffer.alloc(0)): Buffer => {
    const b = Buffer.concat([good.subarray(0, 16), extra.length > 0 ? extra : good.subarray(16, 16 + len)]);
    b.writeUInt16BE(len, 14);
    return b;
  };
  const bad: Array<[string, Buffer]> = [
    ['version 1 in the v2 layout', patch(12, 0x11)],
    ['unknown command', patch(12, 0x22)],
    ['unknown family', patch(13, 0x41)],
    ['unknown transport', patch(13, 0x13)],
    ['address block too short', withLength(8)],
    ['TLV cut in its header', withLength(12 + 2)],
    ['TLV longer than the header', withLength(12 + 3 + 5)],
    ['empty authority', withLength(15, Buffer.concat([good.subarray(16, 28), Buffer.from([2, 0, 0])]))],
    ['two authorities', withLength(12 + 2 * 9, Buffer.concat([good.subarray(16), good.subarray(28)]))],
    ['authority not UTF-8', withLength(16, Buffer.concat([good.subarray(16, 28), Buffer.from([2, 0, 1, 0xff])]))],
  ];
  for (const [name, b] of bad) assert.equal(decodeProxyV2(b).kind, 'invalid', name);
});

test('LOCAL, UNSPEC and unknown TLVs are read as the spec allows', () => {
  const local = Buffer.concat([PROXY_V2_SIGNATURE, Buffer.from([0x20, 0x00, 0x00, 0x00])]);
  const h = header(local);
  assert.deepEqual([h.command, h.family, h.source, h.length], ['local', 'unspec', null, 16]);
  const good = encodeProxyV2({ source: { address: '1.2.3.4', port: 1 }, destination: { address: '5.6.7.8', port: 2 } });
  const tlvs = Buffer.from([PP2_TYPE.NOOP, 0, 2, 0, 0, 0xe0, 0, 1, 7]);
  const withTlvs = Buffer.concat([good, tlvs]);
  withTlvs.writeUInt16BE(12 + tlvs.length, 14);
  assert.deepEqual(header(withTlvs).tlvs.map((t) => [t.type, [...t.value]]), [[PP2_TYPE.NOOP, [0, 0]], [0xe0, [7]]]);
});

test('fuzz: mutated and random headers never throw, and a decoded header always fits the input', () => {
  let s = 20260;
  const rnd = (n: number): number => {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    return s % n;
  };
  const seeds = [
    encodeProxyV2({ source: { address: '1.2.3.4', port: 1 }, destination: { address: '5.6.7.8', port: 2 }, authority: 'a.test' }),
    encodeProxyV2({ source: { address: '2001:db8::1', port: 1 }, destination: { address: '::1', port: 2 }, authority: 'b.example' }),
  ];
  for (let i = 0; i < 20_000; i++) {
    let b = Buffer.from(seeds[rnd(seeds.length)]!);
    for (let m = 1 + rnd(3); m > 0; m--) {
      const at = rnd(b.length);
      if (rnd(3) === 0) b = b.subarray(0, at);
      else b[at] = rnd(256);
    }
    if (i % 10 === 0) b = Buffer.concat([PROXY_V2_SIGNATURE, Buffer.from(Array.from({ length: rnd(80) }, () => rnd(256)))]);
    const r = decodeProxyV2(b);
    if (r.kind === 'header') assert.ok(r.header.length <= b.length && r.header.length >= 16);
  }
});

const hasNginx = spawnSync('nginx', ['-v']).error === undefined;

test('nginx reads the addresses our encoder writes', { skip: !hasNginx && 'nginx is not installed' }, async () => {
  const prefix = tempDir('pp2-nginx');
  const port = await new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
  writeFileSync(join(prefix, 'nginx.conf'), `worker_processes 1; pid ${prefix}/nginx.pid; error_log ${prefix}/error.log warn;
events {}
http { access_log off; client_body_temp_path ${prefix}/b; proxy_temp_path ${prefix}/p; fastcgi_temp_path ${prefix}/f; uwsgi_temp_path ${prefix}/u; scgi_temp_path ${prefix}/s;
  server { listen 127.0.0.1:${port} proxy_protocol;
    location / { return 200 "$proxy_protocol_addr $proxy_protocol_port $proxy_protocol_server_addr $proxy_protocol_server_port"; } } }
`);
  const nginx = spawn('nginx', ['-p', prefix, '-c', join(prefix, 'nginx.conf'), '-g', 'daemon off;'], { stdio: 'ignore' });
  try {
    const ask = (source: string, destination: string): Promise<string> => new Promise((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1', () => {
        socket.write(Buffer.concat([
          encodeProxyV2({ source: { address: source, port: 40001 }, destination: { address: destination, port: 443 }, authority: 'a.test' }),
          Buffer.from('GET / HTTP/1.0\r\n\r\n'),
        ]));
      });
      let text = '';
      socket.on('data', (d) => { text += d.toString(); });
      socket.on('end', () => resolve(text.split('\r\n\r\n')[1] ?? ''));
      socket.on('error', reject);
    });
    let answer = '';
    for (let i = 0; i < 100 && answer === ''; i++) {
      answer = await ask('203.0.113.9', '198.51.100.1').catch(() => '');
      if (answer === '') await sleep(50);
    }
    assert.equal(answer, '203.0.113.9 40001 198.51.100.1 443');
    assert.equal(await ask('2001:db8::42', '2001:db8::1'), '2001:db8::42 40001 2001:db8::1 443');
  } finally {
    const exited = new Promise((resolve) => nginx.once('exit', resolve));
    nginx.kill('SIGTERM');
    await exited;
  }
});
