import assert from 'node:assert/strict';
import { mkdirSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { brotliDecompressSync, gunzipSync } from 'node:zlib';
import type { GatewayConfig } from '../../src/gateway/index.js';
import { rawExchange, request, withGateway } from './helpers.js';
import { tempDir } from '../support/temp.js';

let dir: string;
let root: string;
let config: GatewayConfig;
const css = `body { color: red; }\n`.repeat(200);
const big = Buffer.alloc(300_000, 'abcdefghij');

before(() => {
  dir = tempDir('static');
  root = join(dir, 'tenant-a', 'docroot');
  mkdirSync(join(root, 'sub'), { recursive: true });
  mkdirSync(join(root, '.well-known'), { recursive: true });
  mkdirSync(join(dir, 'tenant-b'), { recursive: true });
  writeFileSync(join(root, 'index.html'), '<h1>home</h1>');
  writeFileSync(join(root, 'sub', 'index.html'), '<h1>sub</h1>');
  writeFileSync(join(root, 'style.css'), css);
  writeFileSync(join(root, 'big.bin'), big);
  writeFileSync(join(root, 'digits.txt'), '0123456789');
  writeFileSync(join(root, '.env'), 'SECRET=1');
  writeFileSync(join(root, '.well-known', 'security.txt'), 'Contact: x');
  writeFileSync(join(dir, 'tenant-b', 'secret.txt'), 'tenant b secret');
  writeFileSync(join(dir, 'outside.txt'), 'outside');
  utimesSync(join(root, 'digits.txt'), new Date('2024-01-01T00:00:00Z'), new Date('2024-01-01T00:00:00Z'));
  symlinkSync(join(dir, 'tenant-b', 'secret.txt'), join(root, 'escape.txt'));
  symlinkSync(join(dir, 'tenant-b'), join(root, 'escape-dir'));
  symlinkSync(join(root, 'digits.txt'), join(root, 'inside-link.txt'));
  config = {
    listeners: [{ id: 'web', address: '127.0.0.1', port: 0, protocol: 'http' }],
    sites: [{ hostname: 'static.test', tenantId: 'tenant-a', target: { kind: 'static', root } }],
  };
});

const get = (port: number, path: string, headers: Record<string, string> = {}, method = 'GET') =>
  request(port, { host: 'static.test', path, headers, method });

test('index files, content types, directory slash redirect, 404 for what is not there', async () => {
  await withGateway(config, {}, async (_gw, port) => {
    const home = await get(port(), '/');
    assert.equal(home.status, 200);
    assert.equal(home.body, '<h1>home</h1>');
    assert.equal(home.headers['content-type'], 'text/html; charset=utf-8');
    assert.equal(home.headers['x-content-type-options'], 'nosniff');
    assert.equal((await get(port(), '/sub/')).body, '<h1>sub</h1>');
    const slash = await get(port(), '/sub?x=1');
    assert.equal(slash.status, 301);
    assert.equal(slash.headers.location, '/sub/?x=1');
    assert.equal((await get(port(), '/style.css')).headers['content-type'], 'text/css; charset=utf-8');
    assert.equal((await get(port(), '/missing.txt')).status, 404);
    assert.equal((await get(port(), '/inside-link.txt')).body, '0123456789', 'symlinks inside the docroot work');
    assert.equal((await get(port(), '/.well-known/security.txt')).body, 'Contact: x');
    assert.equal((await get(port(), '/.env')).status, 404);
    assert.equal((await get(port(), '/', {}, 'POST')).status, 405);
  });
});

test('path traversal and symlink escapes are refused', async () => {
  await withGateway(config, {}, async (_gw, port) => {
    const attempts: Array<[string, number]> = [
      ['/../outside.txt', 400],
      ['/sub/../../outside.txt', 400],
      ['/%2e%2e/outside.txt', 400],
      ['/%2E%2E%2Foutside.txt', 400],
      ['/sub/%2e%2e/%2e%2e/tenant-b/secret.txt', 400],
      ['/..%2f..%2foutside.txt', 400],
      ['/%00index.html', 400],
      ['/index.html%00.txt', 400],
      ['/..\\outside.txt', 400],
      ['/%5c..%5coutside.txt', 400],
      ['/%ZZ', 400],
      ['/escape.txt', 404],
      ['/escape-dir/secret.txt', 404],
      ['/%252e%252e/outside.txt', 404],
    ];
    for (const [path, status] of attempts) {
      const r = await rawExchange(port(), `GET ${path} HTTP/1.1\r\nHost: static.test\r\nConnection: close\r\n\r\n`);
      assert.match(r.text, new RegExp(`^HTTP/1\\.1 ${status} `), path);
      assert.doesNotMatch(r.text, /secret|outside$/, path);
    }
  });
});

test('ETag and Last-Modified: If-None-Match and If-Modified-Since answer 304', async () => {
  await withGateway(config, {}, async (_gw, port) => {
    const first = await get(port(), '/digits.txt');
    const etag = first.headers.etag!;
    assert.match(etag, /^"[0-9a-f]+-[0-9a-f]+"$/);
    assert.equal(first.headers['last-modified'], 'Mon, 01 Jan 2024 00:00:00 GMT');
    const byTag = await get(port(), '/digits.txt', { 'if-none-match': `"other", ${etag}` });
    assert.equal(byTag.status, 304);
    assert.equal(byTag.body, '');
    assert.equal(byTag.headers.etag, etag);
    assert.equal((await get(port(), '/digits.txt', { 'if-none-match': `W/${etag}` })).status, 304);
    assert.equal((await get(port(), '/digits.txt', { 'if-modified-since': 'Tue, 02 Jan 2024 00:00:00 GMT' })).status, 304);
    assert.equal((await get(port(), '/digits.txt', { 'if-modified-since': 'Sun, 31 Dec 2023 00:00:00 GMT' })).status, 200);
    assert.equal((await get(port(), '/digits.txt', { 'if-none-match': '"stale"', 'if-modified-since': 'Tue, 02 Jan 2024 00:00:00 GMT' })).status, 200, 'If-None-Match wins');
  });
});

test('Range: one range answers 206, an unsatisfiable one 416, If-Range guards it', async () => {
  await withGateway(config, {}, async (_gw, port) => {
    const part = await get(port(), '/digits.txt', { range: 'bytes=2-4' });
    assert.equal(part.status, 206);
    assert.equal(part.body, '234');
    assert.equal(part.headers['content-range'], 'bytes 2-4/10');
    assert.equal((await get(port(), '/digits.txt', { range: 'bytes=-3' })).body, '789');
    const none = await get(port(), '/digits.txt', { range: 'bytes=50-' });
    assert.equal(none.status, 416);
    assert.equal(none.headers['content-range'], 'bytes */10');
    assert.equal((await get(port(), '/digits.txt', { range: 'bytes=2-4', 'if-range': '"old"' })).status, 200);
    const bigPart = await get(port(), '/big.bin', { range: 'bytes=100000-100009' });
    assert.equal(bigPart.body, big.subarray(100000, 100010).toString('latin1'));
    const whole = await get(port(), '/big.bin');
    assert.equal(whole.body.length, big.length, 'large files stream whole');
    const head = await get(port(), '/big.bin', {}, 'HEAD');
    assert.equal(head.headers['content-length'], String(big.length));
    assert.equal(head.body, '');
  });
});

test('gzip and brotli for text types, by Accept-Encoding, with Vary', async () => {
  await withGateway(config, {}, async (_gw, port) => {
    const raw = (enc: string) => rawExchange(port(), `GET /style.css HTTP/1.1\r\nHost: static.test\r\nAccept-Encoding: ${enc}\r\nConnection: close\r\n\r\n`);
    const split = (text: string) => {
      const i = text.indexOf('\r\n\r\n');
      return { head: text.slice(0, i), body: Buffer.from(text.slice(i + 4), 'latin1') };
    };
    const br = split((await raw('gzip, br')).text);
    assert.match(br.head, /Content-Encoding: br/);
    assert.match(br.head, /Vary: Accept-Encoding/);
    assert.equal(brotliDecompressSync(br.body).toString(), css);
    const gz = split((await raw('gzip')).text);
    assert.match(gz.head, /Content-Encoding: gzip/);
    assert.equal(gunzipSync(gz.body).toString(), css);
    const again = split((await raw('gzip')).text);
    assert.ok(again.body.equals(gz.body), 'served from the compressed cache');
    const plain = split((await raw('identity')).text);
    assert.doesNotMatch(plain.head, /Content-Encoding/);
    assert.equal(plain.body.toString(), css);
    const png = await rawExchange(port(), 'GET /big.bin HTTP/1.1\r\nHost: static.test\r\nAccept-Encoding: br\r\nConnection: close\r\n\r\n');
    assert.doesNotMatch(png.text.slice(0, 500), /Content-Encoding/, 'binary types are not compressed');
  });
});
