/**
 * Syslog and file outputs: RFC 5424 messages parsed by a test receiver over
 * UDP (a datagram each) and TCP (octet-counted frames, RFC 6587), and a
 * JSON-lines file under the data dir that a path cannot leave.
 */
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { readFileSync, statSync } from 'node:fs';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import type { Alert } from '../../src/guard/actuator.js';
import { AlertDispatcher } from '../../src/guard/outputs/dispatcher.js';
import { alertFilePath } from '../../src/guard/outputs/file.js';
import { tempDir } from '../support/temp.js';
import { until } from '../support/until.js';
import { definition, sampleAlert } from './outputs-fixtures.js';

interface Parsed { pri: number; version: string; time: string; host: string; app: string; procid: string; msgid: string; sd: Record<string, string>; msg: string }

/** An RFC 5424 message with one SD element, as a receiver reads it. */
function parse5424(m: string): Parsed {
  const r = /^<(\d{1,3})>(\d) (\S+) (\S+) (\S+) (\S+) (\S+) \[strata@32473((?: [a-zA-Z]+="(?:[^"\\\]]|\\.)*")*)\] \ufeff([\s\S]*)$/.exec(m);
  assert.ok(r, `not RFC 5424: ${m.slice(0, 200)}`);
  const sd: Record<string, string> = {};
  for (const p of r[8]!.matchAll(/([a-zA-Z]+)="((?:[^"\\\]]|\\.)*)"/g)) sd[p[1]!] = p[2]!.replace(/\\(.)/g, '$1');
  return { pri: Number(r[1]), version: r[2]!, time: r[3]!, host: r[4]!, app: r[5]!, procid: r[6]!, msgid: r[7]!, sd, msg: r[9]! };
}

/** Splits a TCP stream into octet-counted frames; returns the frames and what is left over. */
function frames(buf: Buffer): { frames: string[]; rest: Buffer } {
  const out: string[] = [];
  for (;;) {
    const sp = buf.indexOf(0x20);
    if (sp < 0) break;
    const len = Number(buf.subarray(0, sp).toString());
    assert.ok(Number.isInteger(len) && len > 0, `bad frame length '${buf.subarray(0, sp).toString()}'`);
    if (buf.length < sp + 1 + len) break;
    out.push(buf.subarray(sp + 1, sp + 1 + len).toString('utf8'));
    buf = buf.subarray(sp + 1 + len);
  }
  return { frames: out, rest: buf };
}

const dispatcher = (): AlertDispatcher => new AlertDispatcher({ fileRoot: tempDir('outputs'), backoffMs: 5, maxBackoffMs: 20, allowPrivateTargets: true });

test('syslog over UDP: one RFC 5424 datagram per alert, PRI from facility and priority, SD with the ids, MSG the alert as JSON', async () => {
  const udp = createSocket('udp4');
  const got: string[] = [];
  udp.on('message', (m) => got.push(m.toString('utf8')));
  await new Promise<void>((resolve) => udp.bind(0, '127.0.0.1', resolve));
  const d = dispatcher();
  try {
    d.set([definition({ type: 'syslog', transport: 'udp', port: (udp.address() as AddressInfo).port, facility: 16 })]);
    const alert = sampleAlert({ priority: 'critical', rule: 'Quote " and ] and \\ in a rule' });
    d.deliver(alert);
    await d.idle();
    await until(() => got.length === 1, { what: 'the datagram' });
    const p = parse5424(got[0]!);
    assert.equal(p.pri, 16 * 8 + 2, 'local0.crit');
    assert.equal(p.version, '1');
    assert.equal(p.time, alert.time);
    assert.equal(p.app, 'strata');
    assert.equal(p.msgid, 'alert');
    assert.equal(p.sd.id, alert.id);
    assert.equal(p.sd.rule, alert.rule, 'SD values escaped and read back');
    assert.equal(p.sd.tenant, 'tn_a');
    assert.deepEqual(JSON.parse(p.msg), alert);
  } finally {
    await d.close();
    udp.close();
  }
});

test('syslog over TCP: octet-counted frames on one connection, each an RFC 5424 message; the text format carries the output line; a dropped connection is made again', async () => {
  const chunks: Buffer[] = [];
  const sockets: Socket[] = [];
  let connections = 0;
  const server = createServer((s) => { connections++; sockets.push(s); s.on('data', (c) => chunks.push(c)); });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const d = dispatcher();
  try {
    d.set([definition({ type: 'syslog', transport: 'tcp', port: (server.address() as AddressInfo).port, facility: 4, format: 'text' })]);
    const alerts = [sampleAlert({ priority: 'warning', output: 'first: ünïcode' }), sampleAlert({ priority: 'info', output: 'second' })];
    for (const a of alerts) d.deliver(a);
    await d.idle();
    await until(() => frames(Buffer.concat(chunks)).frames.length === 2, { what: 'two frames' });
    const { frames: got, rest } = frames(Buffer.concat(chunks));
    assert.equal(rest.length, 0);
    assert.equal(connections, 1);
    const parsed = got.map(parse5424);
    assert.deepEqual(parsed.map((p) => p.pri), [4 * 8 + 4, 4 * 8 + 6]);
    assert.deepEqual(parsed.map((p) => p.msg), ['first: ünïcode', 'second']);
    assert.deepEqual(parsed.map((p) => p.sd.id), alerts.map((a) => a.id));
    // The receiver closes its end: the next alert goes over a new connection.
    for (const s of sockets) s.destroy();
    await until(async () => {
      d.deliver(sampleAlert({ output: 'again' }));
      await d.idle();
      return frames(Buffer.concat(chunks)).frames.some((f) => parse5424(f).msg === 'again');
    }, { what: 'a frame on a new connection' });
    assert.ok(connections >= 2);
  } finally {
    await d.close();
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});

test('the JSON-lines file: one alert per line, 0600, under the data dir; a path cannot leave it', async () => {
  const root = tempDir('alerts');
  const d = new AlertDispatcher({ fileRoot: root });
  try {
    d.set([definition({ type: 'file', path: 'guard/alerts.jsonl' })]);
    const alerts = [sampleAlert(), sampleAlert({ tenantId: null, level: 'host', output: 'line\nbreak' })];
    for (const a of alerts) d.deliver(a);
    await d.idle();
    const file = join(root, 'guard/alerts.jsonl');
    const lines = readFileSync(file, 'utf8').split('\n');
    assert.equal(lines.pop(), '', 'ends with a newline');
    assert.deepEqual(lines.map((l) => JSON.parse(l) as Alert), alerts);
    assert.equal(statSync(file).mode & 0o777, 0o600);
  } finally {
    await d.close();
  }
  for (const bad of ['../x.jsonl', '/etc/passwd', 'a/../../x', '..']) assert.equal(alertFilePath(root, bad), null, bad);
  assert.equal(alertFilePath(root, 'a/b.jsonl'), join(root, 'a/b.jsonl'));
  assert.throws(() => new AlertDispatcher({ fileRoot: root }).set([definition({ type: 'file', path: 'x' }, { tenantId: 'tn_a' })]), /provider/);
});
