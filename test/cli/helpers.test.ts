/** Unit tests of the CLI's parsing, config and formatting helpers: no daemon. */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { InvalidArgumentError } from 'commander';
import { integer, keyValue, parseListen, parseRef, parseTenantOrRef, positiveNumber } from '../../src/cli/args.js';
import { apiError } from '../../src/cli/client.js';
import { DEFAULT_URL, resolveConfig } from '../../src/cli/config.js';
import { formatEvent, sseParser } from '../../src/cli/events.js';
import { CliError, bytes, cell, formatError, keyValues, table, when } from '../../src/cli/output.js';
import { describeTarget, targetFrom } from '../../src/cli/site.js';
import { tempDir } from '../support/temp.js';

describe('cli argument parsers', () => {
  it('parses TENANT/NAME and refuses anything else', () => {
    assert.deepEqual(parseRef('acme/web'), { tenant: 'acme', name: 'web' });
    for (const bad of ['acme', 'acme/', '/web', 'a/b/c', 'a b/c', '']) {
      assert.throws(() => parseRef(bad), InvalidArgumentError, bad);
    }
    assert.deepEqual(parseTenantOrRef('acme'), { tenant: 'acme' });
    assert.deepEqual(parseTenantOrRef('acme/web'), { tenant: 'acme', name: 'web' });
  });

  it('parses integers in range and non-negative numbers', () => {
    assert.equal(integer(0)('42'), 42);
    assert.throws(() => integer(0)('4.2'), InvalidArgumentError);
    assert.throws(() => integer(0)('x'), InvalidArgumentError);
    assert.throws(() => integer(1, 10)('11'), /between 1 and 10/);
    assert.equal(positiveNumber('0.5'), 0.5);
    assert.throws(() => positiveNumber('-1'), InvalidArgumentError);
    assert.throws(() => positiveNumber(''), InvalidArgumentError);
  });

  it('collects key=value with JSON values where they parse', () => {
    let acc = keyValue('port=8080');
    acc = keyValue('debug=true', acc);
    acc = keyValue('image=debian:12', acc);
    acc = keyValue('args=["-v"]', acc);
    acc = keyValue('empty=', acc);
    assert.deepEqual(acc, { port: 8080, debug: true, image: 'debian:12', args: ['-v'], empty: '' });
    assert.throws(() => keyValue('novalue'), InvalidArgumentError);
    assert.throws(() => keyValue('=x'), InvalidArgumentError);
  });

  it('parses listen addresses, IPv6 in brackets', () => {
    assert.deepEqual(parseListen('127.0.0.1:8470'), { host: '127.0.0.1', port: 8470 });
    assert.deepEqual(parseListen('[::1]:0'), { host: '::1', port: 0 });
    assert.deepEqual(parseListen('localhost:80'), { host: 'localhost', port: 80 });
    for (const bad of ['8470', ':8470', '127.0.0.1', '127.0.0.1:99999', '::1:8470', '[::1]', 'a b:1', 'host:port']) {
      assert.throws(() => parseListen(bad), InvalidArgumentError, bad);
    }
  });

  it('builds exactly one site target from the flags', () => {
    assert.deepEqual(targetFrom({ instance: 'web', port: 8080 }), { kind: 'instance', instance: 'web', port: 8080 });
    assert.deepEqual(targetFrom({ static: 'public' }), { kind: 'static', root: 'public' });
    assert.deepEqual(targetFrom({ redirect: 'https://x.org/' }), { kind: 'redirect', to: 'https://x.org/', status: 308 });
    assert.deepEqual(targetFrom({ redirect: 'https://x.org/', status: 301 }), { kind: 'redirect', to: 'https://x.org/', status: 301 });
    assert.throws(() => targetFrom({}), /exactly one/);
    assert.throws(() => targetFrom({ static: 'a', redirect: 'http://b' }), /exactly one/);
    assert.throws(() => targetFrom({ instance: 'web' }), /needs --port/);
    assert.throws(() => targetFrom({ static: 'a', port: 1 }), /--port goes with --instance/);
    assert.throws(() => targetFrom({ static: 'a', status: 301 }), /--status goes with --redirect/);
    assert.equal(describeTarget({ kind: 'instance', instance: 'web', port: 80 }), 'instance web port 80');
  });
});

describe('cli config', () => {
  const home = tempDir('cli-home');
  const none = join(home, 'no-data-dir');

  it('defaults to the local daemon and no token', () => {
    const c = resolveConfig({}, { STRATA_DATA_DIR: none }, home);
    assert.deepEqual(c, { url: DEFAULT_URL, token: null, json: false, reason: null });
  });

  it('prefers flags, then env, then the config file, then the admin token file', () => {
    const dataDir = join(home, 'data');
    mkdirSync(dataDir);
    writeFileSync(join(dataDir, 'admin.token'), 'strata_from_file\n');
    assert.equal(resolveConfig({}, { STRATA_DATA_DIR: dataDir }, home).token, 'strata_from_file');

    mkdirSync(join(home, '.config', 'strata'), { recursive: true });
    writeFileSync(join(home, '.config', 'strata', 'config.json'), JSON.stringify({ url: 'http://cfg:1/', token: 'strata_cfg' }));
    const fromFile = resolveConfig({}, { STRATA_DATA_DIR: dataDir }, home);
    assert.deepEqual([fromFile.url, fromFile.token], ['http://cfg:1', 'strata_cfg']);

    const fromEnv = resolveConfig({}, { STRATA_URL: 'http://env:2', STRATA_TOKEN: 'strata_env' }, home);
    assert.deepEqual([fromEnv.url, fromEnv.token], ['http://env:2', 'strata_env']);

    const fromFlags = resolveConfig({ url: 'http://flag:3', token: 'strata_flag', json: true, reason: ' why ' }, { STRATA_URL: 'http://env:2' }, home);
    assert.deepEqual(fromFlags, { url: 'http://flag:3', token: 'strata_flag', json: true, reason: 'why' });
  });

  it('reads $STRATA_CONFIG and fails clearly on a bad one', () => {
    const path = join(home, 'custom.json');
    writeFileSync(path, JSON.stringify({ token: 'strata_custom' }));
    assert.equal(resolveConfig({}, { STRATA_CONFIG: path }, home).token, 'strata_custom');
    writeFileSync(path, '{not json');
    assert.throws(() => resolveConfig({}, { STRATA_CONFIG: path }, home), (e: CliError) => e.code === 'STRATA_ERR_CONFIG' && e.message.includes(path));
    writeFileSync(path, JSON.stringify({ token: 42 }));
    assert.throws(() => resolveConfig({}, { STRATA_CONFIG: path }, home), /"token" must be a string/);
    assert.throws(() => resolveConfig({}, { STRATA_CONFIG: join(home, 'missing.json') }, home), /does not exist/);
    assert.throws(() => resolveConfig({ url: 'ftp://x' }, {}, home), /must start with http/);
  });
});

describe('cli output', () => {
  it('aligns table columns and shows empty cells as -', () => {
    const out = table(['NAME', 'STATE', 'NOTE'], [['web', 'running', null], ['database', 'stopped', 'x']]);
    assert.equal(out, ['NAME      STATE    NOTE', 'web       running  -', 'database  stopped  x'].join('\n'));
    assert.equal(table(['A', 'B'], []), 'A  B');
  });

  it('aligns key/value blocks', () => {
    assert.equal(keyValues([['id', 'x'], ['tenant', null]]), 'id:     x\ntenant: -');
  });

  it('formats cells, times and sizes', () => {
    assert.equal(cell({ a: 1 }), '{"a":1}');
    assert.equal(cell(0), '0');
    assert.equal(when('2025-01-02T03:04:05.678Z'), '2025-01-02T03:04:05Z');
    assert.equal(when(null), '-');
    assert.equal(bytes(512), '512 B');
    assert.equal(bytes(1536), '1.5 KiB');
  });

  it('formats every error as one line with its code', () => {
    assert.equal(formatError(new CliError('tenant x\nnot found', 'STRATA_ERR_NOT_FOUND')), 'strata: tenant x not found (STRATA_ERR_NOT_FOUND)');
    assert.equal(formatError(new CliError('cannot reach')), 'strata: cannot reach');
    assert.equal(formatError(Object.assign(new Error('nope'), { code: 'EACCES' })), 'strata: nope (EACCES)');
    assert.equal(formatError(new Error('bug')), 'strata: bug (STRATA_ERR_INTERNAL)');
  });

  it("turns API error bodies into the API's message and code", () => {
    const e = apiError(404, JSON.stringify({ error: { code: 'STRATA_ERR_NOT_FOUND', message: "tenant 'x' not found" } }));
    assert.deepEqual([e.message, e.code], ["tenant 'x' not found", 'STRATA_ERR_NOT_FOUND']);
    const proxy = apiError(502, '<html>bad gateway</html>');
    assert.deepEqual([proxy.message, proxy.code], ['HTTP 502: <html>bad gateway</html>', 'HTTP_502']);
  });
});

describe('cli event stream', () => {
  it('splits SSE chunks into data payloads, skipping comments', () => {
    const got: string[] = [];
    const feed = sseParser((d) => got.push(d));
    feed(': strata events\n\nid: 1\nevent: a\nda');
    feed('ta: {"x":1}\n\n: ping\n\nid: 2\r\ndata: {"y":2}\r\n\r\n');
    assert.deepEqual(got, ['{"x":1}', '{"y":2}']);
  });

  it('prints one line per event', () => {
    const line = formatEvent({ seq: 1, time: '2025-01-02T03:04:05.678Z', category: 'audit', type: 'audit.appended', data: { action: 'tenant.create', actor: 'admin root' } });
    assert.equal(line, '2025-01-02T03:04:05Z  audit      audit.appended  action=tenant.create actor="admin root"');
  });
});
