/**
 * Instance streams through the API, on a real os instance (runc): logs (history,
 * tail, follow, the end of a follower when the instance is deleted), exec over
 * WebSocket (a terminal, stdin, exit codes, confinement, the audit entry),
 * tenant segregation on the upgrade, and `strata logs` from the CLI.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { readlinkSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { WebSocket } from 'ws';
import { OsDriver } from '../../src/levels/os/driver.js';
import { TestDaemon } from '../support/harness.js';
import { builtinImages, claimSlot, leftovers, nothingLeft, sweep, testDriverOptions } from '../levels/os/helpers.js';

const options = testDriverOptions(await claimSlot());
const run = promisify(execFile);

/** The container's main process: two lines, then whatever appears in /tmp/say, on its own stdout. */
const SAYER = 'echo hello from acme; echo warn-line >&2; while true; do [ -f /tmp/say ] && cat /tmp/say && rm /tmp/say; sleep 0.05; done';

interface Frames {
  stdout: string;
  stderr: string;
  exit: number | null;
  closed: Promise<number>;
  until(re: RegExp, timeoutMs?: number): Promise<string>;
  send(text: string): void;
  control(m: object): void;
}

/** Connects to an exec/console route; resolves with the socket's frames, or rejects with the HTTP status it was refused with. */
function connect(d: TestDaemon, path: string, token: string): Promise<Frames> {
  const ws = new WebSocket(`${d.url.replace(/^http/, 'ws')}${path}`, { headers: { authorization: `Bearer ${token}` } });
  return new Promise((resolve, reject) => {
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => reject(Object.assign(new Error(`refused ${res.statusCode}`), { status: res.statusCode, body: JSON.parse(body || 'null') })));
    });
    ws.once('error', reject);
    ws.once('open', () => {
      const f: Frames = {
        stdout: '', stderr: '', exit: null,
        closed: new Promise((r) => ws.on('close', (code) => r(code))),
        until: async (re, timeoutMs = 10_000) => {
          const deadline = Date.now() + timeoutMs;
          while (!re.test(f.stdout)) {
            if (Date.now() > deadline) throw new Error(`no ${re} in ${JSON.stringify(f.stdout)}`);
            await sleep(20);
          }
          return f.stdout;
        },
        send: (text) => ws.send(Buffer.concat([Buffer.of(0), Buffer.from(text)])),
        control: (m) => ws.send(JSON.stringify(m)),
      };
      ws.on('message', (data: Buffer, binary) => {
        if (!binary) {
          const m = JSON.parse(data.toString()) as { type: string; code: number };
          if (m.type === 'exit') f.exit = m.code;
          return;
        }
        if (data[0] === 1) f.stdout += data.subarray(1).toString();
        if (data[0] === 2) f.stderr += data.subarray(1).toString();
      });
      resolve(f);
    });
  });
}

const execPath = (tenant: string, name: string, argv: string[], extra = ''): string =>
  `/v1/tenants/${tenant}/instances/${name}/exec?${argv.map((a) => `cmd=${encodeURIComponent(a)}`).join('&')}${extra}`;

/** Runs the CLI with `input` on its stdin (asynchronously: the daemon under test lives in this process). */
function cli(args: string[], env: NodeJS.ProcessEnv, input = ''): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['bin/strata', ...args], { env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(input);
  });
}

describe('instance streams over the API (os level)', { timeout: 300_000 }, () => {
  let d: TestDaemon;
  let acme: string;
  let globex: string;
  let member: string;
  let closed = false;

  const launch = async (tenant: string, name: string, args: string[]): Promise<void> => {
    const r = await d.request('POST', `/v1/tenants/${tenant}/instances?wait=60`, { token: acme, body: { name, level: 'os', source: 'busybox', config: { args } } });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.instance.state, 'running', JSON.stringify(r.body));
  };

  before(async () => {
    await builtinImages();
    d = await TestDaemon.start({ drivers: [new OsDriver(options)] });
    acme = await d.tenantWithUser('acme');
    member = await d.userToken('acme-member', 'tenant-member', 'acme');
    globex = await d.tenantWithUser('globex');
    await launch('acme', 'web', ['sh', '-c', SAYER]);
  });

  after(async () => {
    if (!closed) await d.close();
    // The daemon is gone (the last test closes it): remove its containers as the reconciler would remove orphans.
    await sweep(options);
    const left = await leftovers(options);
    assert.ok(nothingLeft(left), JSON.stringify(left));
  });

  /** Has the container's main process print `text` on its stdout, and waits until it has. */
  const say = async (name: string, text: string): Promise<void> => {
    const f = await connect(d, execPath('acme', name, ['sh', '-c', `echo ${text} > /tmp/say.new && mv /tmp/say.new /tmp/say && while [ -f /tmp/say ]; do sleep 0.05; done`]), acme);
    assert.equal(await f.closed, 1000);
    assert.equal(f.exit, 0, f.stderr);
  };

  test("a container's output is in its logs; tail gives the last lines; a member may read them", async () => {
    const all = await d.request('GET', '/v1/tenants/acme/instances/web/logs', { token: member });
    assert.equal(all.status, 200);
    assert.match(all.headers.get('content-type') ?? '', /^text\/plain/);
    assert.match(all.body, /hello from acme\n/);
    assert.match(all.body, /warn-line\n/);
    const tail = await d.request('GET', '/v1/tenants/acme/instances/web/logs?tail=1', { token: acme });
    assert.equal(tail.body, 'warn-line\n');
    // The provider reads them only with a reason, which lands in the tenant's audit log.
    assert.equal((await d.request('GET', '/v1/tenants/acme/instances/web/logs')).status, 403);
    const support = await d.request('GET', '/v1/tenants/acme/instances/web/logs?tail=1', { headers: { 'x-strata-reason': 'ticket 99: app crashes' } });
    assert.equal(support.status, 200);
    const audited = (await d.request('GET', '/v1/audit/entries?limit=10000', { token: member })).body.items.map((x: any) => x.entry)
      .find((e: any) => e.action === 'instance.logs' && e.target === 'acme/web');
    assert.equal(audited?.reason, 'ticket 99: app crashes');
    const bad = await d.request('GET', '/v1/tenants/acme/instances/web/logs?tail=-1', { token: acme });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error.code, 'STRATA_ERR_VALIDATION');
  });

  test('a follower sees new lines as they are written, and closes cleanly when the client goes away', async () => {
    const abort = new AbortController();
    const res = await fetch(`${d.url}/v1/tenants/acme/instances/web/logs?follow=true&tail=0`, { headers: { authorization: `Bearer ${acme}` }, signal: abort.signal });
    assert.equal(res.status, 200);
    const reader = res.body!.getReader();
    let text = '';
    const readUntil = async (re: RegExp): Promise<void> => {
      while (!re.test(text)) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`ended before ${re}: ${text}`);
        text += Buffer.from(value).toString();
      }
    };
    await say('web', 'followed-one');
    await readUntil(/followed-one\n/);
    await say('web', 'followed-two');
    await readUntil(/followed-two\n/);
    assert.equal(text, 'followed-one\nfollowed-two\n');
    abort.abort();
    await reader.read().catch(() => undefined);
    // The daemon keeps serving after the client vanished.
    assert.equal((await d.request('GET', '/v1/tenants/acme/instances/web/logs?tail=1', { token: acme })).body, 'followed-two\n');
  });

  test('exec -t: the command has a terminal, reads what is typed, and its exit code comes back', async () => {
    const f = await connect(d, execPath('acme', 'web', ['sh'], '&tty=true&cols=90&rows=20'), acme);
    f.send('tty; stty size\n');
    await f.until(/\/dev\/pts\/\d+\r?\n20 90/);
    f.control({ type: 'resize', cols: 120, rows: 40 });
    f.send('read -r word; echo "typed:$word"\n');
    f.send('hello-stdin\n');
    await f.until(/typed:hello-stdin/);
    f.send('stty size; exit 42\n');
    await f.until(/40 120/);
    assert.equal(await f.closed, 1000);
    assert.equal(f.exit, 42);
  });

  test('exec without a terminal: stdin to EOF reaches the process; stdout and stderr arrive apart', async () => {
    const f = await connect(d, execPath('acme', 'web', ['sh', '-c', 'cat; echo err-text >&2; exit 5']), acme);
    f.send('piped line 1\n');
    f.send('piped line 2\n');
    f.control({ type: 'eof' });
    assert.equal(await f.closed, 1000);
    assert.equal(f.stdout, 'piped line 1\npiped line 2\n');
    assert.equal(f.stderr, 'err-text\n');
    assert.equal(f.exit, 5);
  });

  test("the exec'd process is inside the container: its namespaces and cgroup are the container's", async () => {
    const info = (await d.request('GET', '/v1/tenants/acme/instances/web', { token: acme })).body.info;
    const pid = Number(info.pid);
    assert.ok(pid > 0, JSON.stringify(info));
    const f = await connect(d, execPath('acme', 'web', ['sh', '-c', 'for n in pid mnt net user cgroup; do readlink /proc/self/ns/$n; done; [ "$(cat /proc/self/cgroup)" = "$(cat /proc/1/cgroup)" ] && echo same-cgroup']), acme);
    assert.equal(await f.closed, 1000);
    const expected = ['pid', 'mnt', 'net', 'user', 'cgroup'].map((n) => readlinkSync(`/proc/${pid}/ns/${n}`));
    assert.deepEqual(f.stdout.trim().split('\n'), [...expected, 'same-cgroup']);
  });

  test("exec ?user=: another user inside the tenant's ids; one outside them is a 400 before any upgrade", async () => {
    const f = await connect(d, execPath('acme', 'web', ['sh', '-c', 'id -u; id -g'], '&user=1234:4321'), acme);
    assert.equal(await f.closed, 1000);
    assert.equal(f.stdout, '1234\n4321\n');
    const refused = await connect(d, execPath('acme', 'web', ['id'], '&user=70000'), acme).then(() => null, (e: { status: number; body: any }) => e);
    assert.equal(refused?.status, 400);
    assert.equal(refused?.body.error.code, 'STRATA_ERR_VALIDATION');
    assert.match(refused?.body.error.message, /outside the ids/);
  });

  test('exec is audited with who and the argv, and the entry is announced on the event stream', { timeout: 30_000 }, async () => {
    const events = await fetch(`${d.url}/v1/events?category=audit`, { headers: { authorization: `Bearer ${acme}` } });
    const reader = events.body!.getReader();
    await connect(d, execPath('acme', 'web', ['echo', 'audited-argv']), acme).then((f) => f.closed);
    let stream = '';
    while (!/"action":"instance\.exec"/.test(stream)) {
      const { value, done } = await reader.read();
      assert.ok(!done, `the event stream ended: ${stream}`);
      stream += Buffer.from(value).toString();
    }
    assert.match(stream, /"target":"acme\/web","actor":"tenant-admin-acme-\w+","result":"ok"/);
    await reader.cancel();
    const entries = (await d.request('GET', '/v1/audit/entries?limit=10000', { token: acme })).body.items.map((x: any) => x.entry);
    const entry = entries.find((e: any) => e.action === 'instance.exec' && e.details?.argv?.[1] === 'audited-argv');
    assert.ok(entry, 'the exec is in the tenant\'s audit log');
    assert.equal(entry.target, 'acme/web');
    assert.match(entry.actor.name, /^tenant-admin-acme-/);
    const { session, ...details } = entry.details;
    assert.deepEqual(details, { argv: ['echo', 'audited-argv'], tty: false });
    // The entry names the session the guard registered before it ran, with its mark in the kernel.
    const registered = d.daemon.services.guard.sessions.list({ ended: true }).find((r) => r.id === session);
    assert.ok(registered, `session ${session} is registered with the guard`);
    assert.equal(registered.user, entry.actor.name);
    assert.ok(registered.execId !== null && registered.execId > 0 && registered.runnerPid !== null, JSON.stringify(registered));
  });

  test("a tenant cannot exec into, or read the logs of, another tenant's instance: 404 as for no instance", async () => {
    const refused = await connect(d, execPath('acme', 'web', ['id']), globex).then(() => null, (e: { status: number; body: any }) => e);
    assert.equal(refused?.status, 404);
    assert.equal(refused?.body.error.code, 'STRATA_ERR_NOT_FOUND');
    const ghost = await connect(d, execPath('no-such-tenant', 'web', ['id']), globex).then(() => null, (e: { status: number; body: any }) => e);
    assert.equal(ghost?.status, 404);
    assert.equal(refused?.body.error.message.replace('acme', 'no-such-tenant'), ghost?.body.error.message, 'indistinguishable from a tenant that does not exist');
    assert.equal((await d.request('GET', '/v1/tenants/acme/instances/web/logs', { token: globex })).status, 404);
    // A member reads logs but may not exec (that is running code, an admin's right).
    const forbidden = await connect(d, execPath('acme', 'web', ['id']), member).then(() => null, (e: { status: number }) => e);
    assert.equal(forbidden?.status, 403);
  });

  test('a plain GET on exec is 426; a stopped instance refuses exec with 409', async () => {
    const plain = await d.request('GET', `${execPath('acme', 'web', ['id'])}`, { token: acme });
    assert.equal(plain.status, 426);
    assert.equal(plain.body.error.code, 'STRATA_ERR_UPGRADE_REQUIRED');
    const stopped = await d.request('POST', '/v1/tenants/acme/instances?wait=60', { token: acme, body: { name: 'doomed', level: 'os', source: 'busybox', start: false } });
    assert.equal(stopped.status, 200);
    const refused = await connect(d, execPath('acme', 'doomed', ['id']), acme).then(() => null, (e: { status: number; body: any }) => e);
    assert.equal(refused?.status, 409, JSON.stringify(refused?.body));
  });

  test('a refused handshake (a malformed key) leaves no process behind', async () => {
    const answer = await new Promise<string>((resolve, reject) => {
      const { port } = new URL(d.url);
      const socket = tcpConnect(Number(port), '127.0.0.1', () => {
        socket.write(`GET ${execPath('acme', 'web', ['sleep', '4242'])} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${acme}\r\n`
          + 'Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: not-a-key\r\n\r\n');
      });
      let text = '';
      socket.on('data', (c: Buffer) => (text += c.toString()));
      socket.on('close', () => resolve(text));
      socket.on('error', reject);
    });
    assert.match(answer, /^HTTP\/1\.1 400 /);
    await sleep(500);
    const ps = await execOutput(execPath('acme', 'web', ['ps']));
    assert.doesNotMatch(ps, /sleep 4242/);
  });

  test('other upgrade requests (h2c, as curl --http2 sends) are answered over HTTP/1.1: routed without a body, refused with one', async () => {
    const raw = (request: string): Promise<string> => new Promise((resolve, reject) => {
      const socket = tcpConnect(Number(new URL(d.url).port), '127.0.0.1', () => socket.write(request));
      let text = '';
      socket.on('data', (c: Buffer) => (text += c.toString()));
      socket.on('close', () => resolve(text));
      socket.on('error', reject);
    });
    const h2c = 'Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n';
    const get = await raw(`GET /v1/tenants/acme/instances/web/logs?tail=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${acme}\r\n${h2c}\r\n`);
    assert.match(get, /^HTTP\/1\.1 200 /);
    assert.match(get, /warn-line|followed/);
    const body = '{"name":"x"}';
    const post = await raw(`POST /v1/tenants HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${acme}\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n${h2c}\r\n${body}`);
    assert.match(post, /^HTTP\/1\.1 400 [\s\S]*STRATA_ERR_VALIDATION/);
  });

  /** The stdout of an exec that has finished. */
  const execOutput = async (path: string): Promise<string> => {
    const f = await connect(d, path, acme);
    await f.closed;
    return f.stdout;
  };

  test('deleting the instance ends a follower and an exec session', async () => {
    await launch('acme', 'doomed2', ['sh', '-c', 'echo up; exec sleep 600']);
    const res = await fetch(`${d.url}/v1/tenants/acme/instances/doomed2/logs?follow=1`, { headers: { authorization: `Bearer ${acme}` } });
    const body = res.text();
    const f = await connect(d, execPath('acme', 'doomed2', ['sleep', '600']), acme);
    await sleep(200);
    const del = await d.request('DELETE', '/v1/tenants/acme/instances/doomed2?wait=60', { token: acme });
    assert.equal(del.status, 200);
    assert.equal(await body, 'up\n');
    await f.closed;
    assert.notEqual(f.exit, 0);
  });

  test('strata logs prints the logs; --tail limits them; another tenant gets the one-line 404', async () => {
    const env = { ...process.env, STRATA_URL: d.url, STRATA_TOKEN: acme };
    const all = await run(process.execPath, ['bin/strata', 'logs', 'acme/web'], { env });
    assert.match(all.stdout, /^hello from acme\n/);
    const tail = await run(process.execPath, ['bin/strata', 'logs', '--tail', '1', 'acme/web'], { env });
    assert.equal(tail.stdout, 'followed-two\n');
    const other = await run(process.execPath, ['bin/strata', 'logs', 'acme/web'], { env: { ...env, STRATA_TOKEN: globex } }).then(() => null, (e: { code: number; stderr: string }) => e);
    assert.equal(other?.code, 1);
    assert.match(other?.stderr ?? '', /^strata: tenant 'acme' not found \(STRATA_ERR_NOT_FOUND\)\n$/);
  });

  test('strata logs -f follows new output until interrupted', async () => {
    const env = { ...process.env, STRATA_URL: d.url, STRATA_TOKEN: acme };
    const child = spawn(process.execPath, ['bin/strata', 'logs', '-f', '--tail', '0', 'acme/web'], { env });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    // Lines until one shows (the CLI may still be starting: with tail 0 it prints only what comes after it connected).
    const deadline = Date.now() + 20_000;
    for (let n = 1; !out.includes('cli-followed-'); n++) {
      assert.ok(Date.now() < deadline, `strata logs -f printed ${JSON.stringify(out)}`);
      await say('web', `cli-followed-${n}`);
      await sleep(300);
    }
    child.kill('SIGINT');
    assert.equal(await new Promise((r) => child.on('close', r)), 0);
    assert.match(out, /^(cli-followed-\d+\n)+$/);
  });

  test('strata exec: -i pipes stdin, stdout and stderr stay apart, the exit code is strata\'s', async () => {
    const env = { ...process.env, STRATA_URL: d.url, STRATA_TOKEN: acme };
    const r = await cli(['exec', '-i', 'acme/web', '--', 'sh', '-c', 'tr a-z A-Z; echo err >&2; exit 9'], env, 'shout this\n');
    assert.equal(r.stdout, 'SHOUT THIS\n');
    assert.equal(r.stderr, 'err\n');
    assert.equal(r.code, 9);
    const t = await cli(['exec', '-t', 'acme/web', '--', 'tty'], env);
    assert.match(t.stdout, /^\/dev\/pts\/\d+\r?\n$/);
    assert.equal(t.code, 0);
    const refused = await cli(['exec', 'acme/web', '--', 'id'], { ...env, STRATA_TOKEN: member });
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /^strata: role tenant-member may not instance\.exec \(STRATA_ERR_FORBIDDEN\)\n$/);
  });

  test('closing the daemon ends open exec sessions and kills their processes', async () => {
    const f = await connect(d, execPath('acme', 'web', ['sleep', '4343']), acme);
    await sleep(300);
    const running = await run('pgrep', ['-f', 'sleep 4343']).then((r) => r.stdout.trim(), () => '');
    assert.notEqual(running, '', 'the exec\'d process runs');
    closed = true;
    await d.close();
    await f.closed;
    const deadline = Date.now() + 5_000;
    while (await run('pgrep', ['-f', 'sleep 4343']).then(() => true, () => false)) {
      assert.ok(Date.now() < deadline, 'the exec\'d process outlived the daemon');
      await sleep(50);
    }
  });
});
