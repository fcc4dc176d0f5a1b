/**
 * A VM's console through the API: a command typed on the guest's serial port (a
 * WebSocket to `…/console`) is answered there; the serial log (`…/logs`) keeps
 * it; one client at a time; `strata console` attaches a terminal and Ctrl-]
 * leaves; a stopped VM has no console. The guest runs a shell
 * on its serial line as its service (the default image has none there).
 * Skipped (with the reason) where the x86_64 guest image is not built.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { WebSocket } from 'ws';
import { VmDriver } from '../../../src/levels/vm/index.js';
import { TestDaemon } from '../../support/harness.js';
import { imageMissing, testNetwork } from './support.js';

const BOOT_MS = 90_000;
const missing = imageMissing('x86_64');

let root: string;
let d: TestDaemon;
let token: string;

before(async () => {
  if (missing) return;
  root = await mkdtemp(join(tmpdir(), 'strata-vm-console-'));
  await chmod(root, 0o711); // QEMU runs as the VM user and must traverse to its run directory
  d = await TestDaemon.start({ drivers: [new VmDriver({ stateDir: join(root, 'vm'), network: testNetwork(9) })] });
  token = await d.tenantWithUser('acme');
});

after(async () => {
  if (missing) return;
  await d.request('DELETE', '/v1/tenants/acme/instances/serial?wait=60', { token });
  await d.close();
  await rm(root, { recursive: true, force: true });
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
