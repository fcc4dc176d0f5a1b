/**
 * A VM's console through the API: a command typed on the guest's serial port (a
 * WebSocket to `…/console`) is answered there; the serial log (`…/logs`) keeps
 * it; one client at a time; `strata console` attaches a terminal and Ctrl-]
 * leaves; a stopped VM has no console; the console session is registered with the
 * guard and recorded as an operator session, nothing acted on. The guest runs a shell
 * on its serial line as its service (the default image has none there).
 * Skipped (with the reason) where the x86_64 guest image is not built.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmod } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { WebSocket } from 'ws';
import type { Duplex, Readable } from 'node:stream';
import { stat } from 'node:fs/promises';
import { VmDriver } from '../../../src/levels/vm/index.js';
import { BATCH_BYTES } from '../../../src/levels/vm/console-log.js';
import { TestDaemon } from '../../support/harness.js';
import { imageMissing, testNetwork, vmSpec } from './support.js';
import { tempDir } from '../../support/temp.js';

const BOOT_MS = 90_000;
const missing = imageMissing('x86_64');

let root: string;
let d: TestDaemon;
let token: string;

before(async () => {
  if (missing) return;
  root = tempDir('vm-console');
  await chmod(root, 0o711); // QEMU runs as the VM user and must traverse to its run directory
  d = await TestDaemon.start({ drivers: [new VmDriver({ stateDir: join(root, 'vm'), network: testNetwork(9) })] });
  token = await d.tenantWithUser('acme');
});

after(async () => {
  if (missing) return;
  await d.request('DELETE', '/v1/tenants/acme/instances/serial?wait=60', { token });
  await d.close();
});

/** Attaches to the console; `seen` accumulates what the guest prints. */
function attach(path: string): Promise<{ ws: WebSocket; seen: () => string; type: (s: string) => void }> {
  const ws = new WebSocket(`${d.url.replace(/^http/, 'ws')}${path}`, { headers: { authorization: `Bearer ${token}` } });
  let seen = '';
  ws.on('message', (data: Buffer, binary) => {
    if (binary && data[0] === 1) seen += data.subarray(1).toString('utf8');
  });
  return new Promise((resolve, reject) => {
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => reject(Object.assign(new Error(`refused ${res.statusCode}: ${body}`), { status: res.statusCode, body: JSON.parse(body) })));
    });
    ws.once('error', reject);
    ws.once('open', () => resolve({ ws, seen: () => seen, type: (s) => ws.send(Buffer.concat([Buffer.of(0), Buffer.from(s)])) }));
  });
}

/** The serial log as text (`?tail=N` for its end). */
const logs = async (query = ''): Promise<string> =>
  (await fetch(`${d.url}/v1/tenants/acme/instances/serial/logs${query}`, { headers: { authorization: `Bearer ${token}` } })).text();

test('a command typed on the serial console of a VM is answered there, and the serial log keeps both', { timeout: 240_000 }, async (t) => {
  if (missing) return t.skip(missing);
  // The guest's service: a shell reading commands from its serial line (ttyS0) and answering on it.
  const launched = await d.request('POST', '/v1/tenants/acme/instances?wait=120', {
    token, body: { name: 'serial', level: 'vm', limits: { memoryMiB: 128 }, config: { command: 'exec sh </dev/ttyS0 >/dev/ttyS0 2>&1' } },
  });
  assert.equal(launched.status, 200, JSON.stringify(launched.body));
  assert.equal(launched.body.instance.state, 'running', JSON.stringify(launched.body));
  const deadline = Date.now() + BOOT_MS;
  while (!(await logs()).includes('STRATA-USERSPACE-READY')) {
    assert.ok(Date.now() < deadline, `the guest did not reach user space: ${(await logs()).slice(-500)}`);
    await sleep(250);
  }

  const console = await attach('/v1/tenants/acme/instances/serial/console');
  // One client at a time: a second attachment is refused while the first holds the port.
  const second = await attach('/v1/tenants/acme/instances/serial/console').then(() => null, (e: { status: number }) => e);
  assert.equal(second?.status, 409);

  const until = Date.now() + 60_000;
  // The shell may still be starting: type until it answers (TCG is slow on a loaded host).
  while (!/answer-42/.test(console.seen())) {
    assert.ok(Date.now() < until, `no answer on the console: ${JSON.stringify(console.seen())}`);
    console.type('echo answer-$((6*7)) $(hostname)\n');
    await sleep(1_000);
  }
  assert.match(console.seen(), /answer-42 serial/, 'the answer comes from inside the guest (its hostname)');
  // An operator session: registered with the guard before it attached (the refused second one is not open), recorded, and
  // nothing done to the VM. The guest is another kernel: its processes never reach the guard, so nothing more is attributed.
  const open = d.daemon.services.guard.sessions.list().filter((s) => s.kind === 'console');
  assert.equal(open.length, 1, JSON.stringify(open));
  assert.equal(open[0]!.level, 'vm');
  assert.match(open[0]!.user, /^tenant-admin-acme-/);
  const alerts = (await d.request('GET', '/v1/alerts', { token })).body.items as { rule: string; action: string; fields: Record<string, unknown> }[];
  const recorded = alerts.find((a) => a.rule === 'Operator session' && a.fields['session.id'] === open[0]!.id);
  assert.ok(recorded, JSON.stringify(alerts));
  assert.equal(recorded.fields['session.kind'], 'console');
  assert.equal(recorded.fields['proc.origin'], 'api');
  assert.deepEqual(alerts.filter((a) => a.action !== 'notify'), [], 'nothing acted on');
  assert.equal((await d.request('GET', '/v1/tenants/acme/instances/serial', { token })).body.state, 'running');
  console.ws.close();
  await new Promise((r) => console.ws.once('close', r));

  assert.match(await logs(), /answer-42 serial/, 'the serial log has what the console showed');
  const tail = await logs('?tail=1');
  assert.equal(tail.replace(/\n$/, '').split('\n').length, 1, `one line: ${JSON.stringify(tail)}`);

  // The port is free again once the first client has gone.
  await sleep(200);
  const again = await attach('/v1/tenants/acme/instances/serial/console');
  again.ws.close();
  await new Promise((r) => again.ws.once('close', r));

  // `strata console` on a terminal (script(1) gives it one): raw keys go through, Ctrl-] leaves with exit 0.
  await sleep(200);
  const cli = spawn('script', ['-qec', 'node bin/strata console acme/serial', '/dev/null'], { env: { ...process.env, STRATA_URL: d.url, STRATA_TOKEN: token } });
  let screen = '';
  cli.stdout.on('data', (c: Buffer) => (screen += c.toString()));
  const cliDeadline = Date.now() + 60_000;
  while (!/Ctrl-\] leaves/.test(screen)) {
    assert.ok(Date.now() < cliDeadline, `strata console did not attach: ${JSON.stringify(screen)}`);
    await sleep(100);
  }
  while (!/from-cli-2/.test(screen)) {
    assert.ok(Date.now() < cliDeadline, `no answer through strata console: ${JSON.stringify(screen)}`);
    cli.stdin.write('echo from-cli-$((1+1))\r');
    await sleep(1_000);
  }
  cli.stdin.write('\x1d');
  assert.equal(await new Promise((r) => cli.on('close', r)), 0);
  assert.match(screen, /Detached\./);

  const stop = await d.request('POST', '/v1/tenants/acme/instances/serial/stop?wait=60', { token, body: { force: true } });
  assert.equal(stop.status, 200, JSON.stringify(stop.body));
  const stopped = await attach('/v1/tenants/acme/instances/serial/console').then(() => null, (e: { status: number }) => e);
  assert.equal(stopped?.status, 409, 'a stopped VM has no console');
});

/** Everything a (non-following) log stream holds, as text. */
async function readAll(stream: Readable): Promise<string> {
  let text = '';
  for await (const chunk of stream) text += (chunk as Buffer).toString('utf8');
  return text;
}

/** Types `line` on `serial` until `expect` shows up in what it printed (the shell may still be starting). */
async function typeUntil(serial: Duplex, seen: () => string, line: string, expect: RegExp, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  serial.write(line);
  for (let waited = 0; !expect.test(seen()); waited += 250) {
    assert.ok(Date.now() < deadline, `no ${expect} on the console: ${JSON.stringify(seen().slice(-300))}`);
    if (waited > 0 && waited % 10_000 === 0) serial.write(line);
    await sleep(250);
  }
}

test('a guest flooding its serial console (1.5 MB) leaves a log within the cap, newest lines kept; console and log survive a daemon restart', { timeout: 300_000 }, async (t) => {
  if (missing) return t.skip(missing);
  const MAX = 64 * 1024;
  const KEEP = 1;
  const stateDir = join(root, 'flood');
  const make = (): VmDriver => new VmDriver({ stateDir, network: testNetwork(14), consoleLog: { maxBytes: MAX, keep: KEEP } });
  let driver = make();
  assert.ok((await driver.provision()).available);
  const id = 'flood';
  try {
    await driver.create(vmSpec(id, 'vm', { command: 'exec sh </dev/ttyS0 >/dev/ttyS0 2>&1' }));
    await driver.start(id);
    const serial = await driver.console(id);
    let seen = '';
    serial.on('data', (c: Buffer) => (seen += c.toString('utf8')));
    await assert.rejects(driver.console(id), (e: { code?: string }) => e.code === 'STRATA_ERR_CONFLICT', 'one client at a time');

    // Once the shell answers: 1.5 MB of output (the serial line is slow under TCG), then numbered lines and a marker computed in the guest.
    await typeUntil(serial, () => seen, 'echo shell-$((2+3))\n', /shell-5/, 90_000);
    serial.write('yes 0123456789abcdefghijklmnopqrstuvwxyz-flood | head -c 1500000; seq 1 300 | sed s/^/newest-/; echo FLOOD-$((40+2))\n');
    const flooded = Date.now() + 240_000;
    while (!/FLOOD-42/.test(seen.slice(-200))) {
      assert.ok(Date.now() < flooded, `the flood did not end: ${seen.length} bytes seen`);
      await sleep(250);
    }
    serial.destroy();
    assert.ok(seen.length > 1_500_000, `the console showed the whole flood (${seen.length} bytes)`);

    const files = [join(stateDir, 'instances', id, 'console.log'), ...Array.from({ length: KEEP }, (_, i) => join(stateDir, 'instances', id, `console.log.${i + 1}`))];
    const sizes = await Promise.all(files.map(async (f) => (await stat(f).catch(() => null))?.size ?? 0));
    const total = sizes.reduce((a, b) => a + b, 0);
    assert.ok(sizes[0]! <= MAX + BATCH_BYTES, `the current file stays near its cap: ${sizes.join(' + ')}`);
    assert.ok(total <= (KEEP + 1) * (MAX + BATCH_BYTES), `the log holds ${total} bytes of a 1.5 MB flood, cap ${(KEEP + 1) * (MAX + BATCH_BYTES)}`);
    assert.ok(total >= MAX, 'and it is not empty');
    assert.ok(!(await stat(`${files[0]}.${KEEP + 1}`).catch(() => null)), 'no generation beyond keep');
    const log = await readAll(await driver.logs(id, { follow: false }));
    assert.match(log, /newest-300\r?\n/);
    assert.match(log, /FLOOD-42/);
    assert.doesNotMatch(log, /STRATA-USERSPACE-READY/, 'the oldest output was rotated away');
    const tail = await readAll(await driver.logs(id, { follow: false, tail: 3 }));
    assert.match(tail, /newest-300/, 'the tail is the newest output');

    // The daemon goes away (the VM runs on) and a new one adopts it: the console and its log work again.
    await driver.cleanup();
    driver = make();
    assert.ok((await driver.provision()).available);
    assert.equal((await driver.inspect(id))?.state, 'running');
    const again = await driver.console(id);
    let seenAgain = '';
    again.on('data', (c: Buffer) => (seenAgain += c.toString('utf8')));
    await typeUntil(again, () => seenAgain, 'echo after-restart-$((1+1))\n', /after-restart-2/, 60_000);
    again.destroy();
    const deadline = Date.now() + 10_000;
    while (!/after-restart-2/.test(await readAll(await driver.logs(id, { follow: false, tail: 5 })))) {
      assert.ok(Date.now() < deadline, 'the adopted VM\'s console is logged');
      await sleep(100);
    }
    await driver.stop(id, { graceMs: 0 });
  } finally {
    await driver.delete(id).catch(() => undefined);
    await driver.cleanup();
  }
});
