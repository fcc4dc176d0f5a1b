/**
 * The `strata` CLI end to end: a daemon in-process on a free loopback port, and
 * `bin/strata` run as a child process against it, as a user would. Instances run
 * on the in-memory FakeDriver (test double), so the lifecycle commands and their
 * waiting are exercised too.
 */
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { once } from 'node:events';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import pino from 'pino';
import { startDaemon, type Daemon } from '../../src/daemon.js';
import { FakeDriver } from '../support/fake-driver.js';
import { until } from '../support/until.js';
import { tempDir } from '../support/temp.js';

/** How long this file's checks wait, and how often they look. */
const WAIT = { ms: 15_000 };

const BIN = fileURLToPath(new URL('../../../bin/strata', import.meta.url));

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

describe('strata CLI against a live daemon', () => {
  let dir: string;
  let daemon: Daemon;
  let adminToken: string;
  let aliceToken: string;
  const fake = new FakeDriver({ level: 'os' });

  /** Runs bin/strata with only the environment given (no STRATA_* leaking in from the test runner). */
  const strata = (args: string[], env: Record<string, string> = {}): Promise<Run> =>
    new Promise((resolve) => {
      execFile(process.execPath, [BIN, ...args], {
        env: {
          PATH: process.env.PATH ?? '', HOME: dir, STRATA_DATA_DIR: join(dir, 'no-such-dir'),
          STRATA_URL: daemon.url, STRATA_TOKEN: adminToken, ...env,
        },
        timeout: 30_000,
      }, (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr }));
    });
  const asAlice = (args: string[]): Promise<Run> => strata(args, { STRATA_TOKEN: aliceToken });

  /** A successful run: exit 0 and nothing on stderr. */
  const ok = async (args: string[], env?: Record<string, string>): Promise<string> => {
    const r = await strata(args, env);
    assert.equal(r.code, 0, `strata ${args.join(' ')} failed: ${r.stderr}`);
    assert.equal(r.stderr, '');
    return r.stdout;
  };

  /** A failing run: the exit status, and exactly one line on stderr. */
  const fails = async (r: Promise<Run>, code: number, line: RegExp): Promise<void> => {
    const { code: got, stderr } = await r;
    assert.equal(got, code, stderr);
    assert.equal(stderr.split('\n').length, 2, `expected one line, got: ${stderr}`);
    assert.match(stderr, line);
  };

  before(async () => {
    dir = tempDir('cli');
    daemon = await startDaemon({
      dataDir: join(dir, 'data'), host: '127.0.0.1', port: 0, drivers: [fake], logger: pino({ level: 'silent' }),
      reconcileIntervalMs: 3_600_000,
    });
    adminToken = readFileSync(daemon.tokenPath, 'utf8').trim();
  });

  after(async () => {
    await daemon?.close();
  });

  it('creates, lists and shows tenants', async () => {
    const created = await ok(['tenant', 'create', 'acme', '--vcpus', '4', '--sites', '5']);
    assert.match(created, /^tenant: +acme$/m);
    assert.match(created, /^vCPUs +0 +4$/m);
    await ok(['tenant', 'create', 'beta']);
    const list = await ok(['tenant', 'list']);
    assert.match(list, /^NAME +INSTANCES +VCPUS/);
    assert.match(list, /^acme +0\/10 +0\/4 /m);
    assert.match(list, /^beta +0\/10 +0\/8 /m);
    const show = await ok(['tenant', 'show', 'acme']);
    assert.match(show, /^RESOURCE +USED +QUOTA$/m);
    assert.match(show, /^sites +0 +5$/m);
  });

  it('prints the API JSON with --json', async () => {
    const t = JSON.parse(await ok(['--json', 'tenant', 'show', 'acme'])) as { name: string; quota: { vcpus: number }; usage: { instances: number } };
    assert.equal(t.name, 'acme');
    assert.equal(t.quota.vcpus, 4);
    assert.equal(t.usage.instances, 0);
    const patched = JSON.parse(await ok(['tenant', 'quota', 'acme', '--instances', '3', '--json'])) as { quota: { instances: number; vcpus: number } };
    assert.deepEqual([patched.quota.instances, patched.quota.vcpus], [3, 4]);
  });

  it('creates a user and a token that works', async () => {
    assert.match(await ok(['user', 'create', 'alice', '--role', 'tenant-admin', '--tenant', 'acme']), /^role: +tenant-admin$/m);
    const human = await ok(['token', 'create', '--user', 'alice', '--name', 'laptop']);
    assert.match(human, /shown only this once/);
    assert.match(human, /^ {2}strata_\S+$/m);
    const created = JSON.parse(await ok(['--json', 'token', 'create', '--user', 'alice', '--expires-in-days', '7'])) as { secret: string; token: { user: string } };
    assert.equal(created.token.user, 'alice');
    aliceToken = created.secret;
    const me = await ok(['whoami'], { STRATA_TOKEN: aliceToken });
    assert.match(me, /^user: +alice$/m);
    assert.match(me, /^tenant: +acme$/m);
    assert.match(await ok(['token', 'list', '--user', 'alice']), /laptop/);
    assert.match(await ok(['user', 'list', '--tenant', 'acme']), /^alice +tenant-admin +acme/m);
  });

  it('reports bad input in one line with a non-zero exit', async () => {
    await Promise.all([
      fails(strata(['tenant', 'create', 'Bad_Name']), 1, /^strata: body\.name: .* \(STRATA_ERR_VALIDATION\)$/m),
      fails(strata(['instance', 'show', 'no-slash']), 2, /^strata: .*expected TENANT\/NAME.* \(STRATA_ERR_VALIDATION\)$/m),
      fails(strata(['tenant', 'create', 'x', '--vcpus', 'lots']), 2, /^strata: option '--vcpus <n>' argument 'lots' is invalid/),
      fails(strata(['tenant', 'quota', 'acme']), 2, /give at least one of/),
      fails(strata(['user', 'create', 'bob']), 2, /required option '--role <role>' not specified/),
      fails(strata(['tenat', 'list']), 2, /unknown command 'tenat'; did you mean tenant\?/),
      fails(strata(['site', 'add', 'acme', 'www.example.com']), 2, /exactly one of --instance/),
      fails(strata(['up', '--api-listen', 'localhost']), 2, /expected HOST:PORT/),
    ]);
  });

  it('reports a 404 and API refusals with their codes', async () => {
    await Promise.all([
      fails(strata(['tenant', 'show', 'nope']), 1, /^strata: tenant 'nope' not found \(STRATA_ERR_NOT_FOUND\)$/m),
      fails(strata(['tenant', 'show', 'beta'], { STRATA_TOKEN: aliceToken }), 1, /\(STRATA_ERR_NOT_FOUND\)$/m),
      fails(strata(['site', 'add', 'acme', 'www.example.com', '--static', 'public']), 1, /\(STRATA_ERR_REASON_REQUIRED\)$/m),
      fails(strata(['whoami'], { STRATA_TOKEN: 'strata_bogus' }), 1, /\(STRATA_ERR_UNAUTHENTICATED\)$/m),
    ]);
  });

  it('says when the daemon cannot be reached', async () => {
    const server = createServer().listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as AddressInfo;
    server.close();
    await once(server, 'close');
    const closed = `http://127.0.0.1:${port}`;
    await fails(strata(['tenant', 'list'], { STRATA_URL: closed }), 1, new RegExp(`^strata: cannot reach the Strata API at ${closed} — is 'strata up' running\\?$`, 'm'));
  });

  it('follows the event stream until interrupted', async (t) => {
    const listeners = daemon.services.events.listenerCount;
    const child = spawn(process.execPath, [BIN, '--json', 'events', '--category', 'audit'], {
      env: { PATH: process.env.PATH ?? '', HOME: dir, STRATA_URL: daemon.url, STRATA_TOKEN: adminToken },
    });
    t.after(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    const exited = once(child, 'exit');
    // the stream is open once the daemon counts a subscriber
    await until(() => daemon.services.events.listenerCount > listeners, { ...WAIT, what: 'the event stream to open' });
    await ok(['tenant', 'create', 'gamma']);
    await until(() => out.includes('\n'), { ...WAIT, what: 'an event' });
    child.kill('SIGINT');
    const [code] = await exited;
    assert.equal(code, 0);
    const event = JSON.parse(out.split('\n')[0]!) as { category: string; data: { action: string; target: string } };
    assert.deepEqual([event.category, event.data.action, event.data.target], ['audit', 'tenant.create', 'gamma']);
  });

  it('manages sites, passing --reason for a provider-admin', async () => {
    const added = await ok(['--reason', 'ticket 7', 'site', 'add', 'acme', 'WWW.Example.com', '--static', 'public']);
    assert.match(added, /^site: +www\.example\.com$/m);
    assert.match(added, /^listeners: +all$/m);
    // --listener binds to named listeners; one that does not exist is the API's 422, as one line.
    await fails(strata(['--reason', 'ticket 7', 'site', 'add', 'acme', 'ip.example.com', '--static', 'public', '--listener', 'nope']), 1, /\(STRATA_ERR_SITE_LISTENER\)$/m);
    await ok(['site', 'add', 'acme', 'old.example.com', '--redirect', 'https://www.example.com/', '--status', '301', '--reason', 'ticket 7']);
    const list = await ok(['site', 'list', 'acme', '--reason', 'ticket 7']);
    assert.match(list, /^old\.example\.com +redirect 301 https:\/\/www\.example\.com\/ /m);
    assert.match(await ok(['site', 'remove', 'acme', 'old.example.com', '--reason', 'ticket 7']), /removed site old\.example\.com/);
    const log = await ok(['audit', 'log', '--tenant', 'acme', '--limit', '1000']);
    assert.match(log, /site\.create +www\.example\.com +ok +ticket 7/);
  });

  it('drives an instance through its lifecycle, waiting on operations', async () => {
    const launched = await asAlice(['instance', 'launch', 'acme/web', '--level', 'os', '--source', 'debian', '--memory', '128', '--config', 'port=8080']);
    assert.equal(launched.code, 0, launched.stderr);
    assert.match(launched.stdout, /^launched acme\/web: running$/m);
    const shown = JSON.parse((await asAlice(['--json', 'instance', 'show', 'acme/web'])).stdout) as { limits: { memoryMiB: number }; config: object };
    assert.equal(shown.limits.memoryMiB, 128);
    assert.deepEqual(shown.config, { port: 8080 });
    assert.match((await asAlice(['instance', 'stop', 'acme/web', '--grace', '1'])).stdout, /^stopped acme\/web: stopped$/m);

    const pending = JSON.parse((await asAlice(['--json', 'instance', 'start', 'acme/web', '--no-wait'])).stdout) as { operation: { id: string } };
    const waited = JSON.parse((await asAlice(['--json', 'operation', 'show', pending.operation.id, '--wait', '10'])).stdout) as { operation: { status: string } };
    assert.equal(waited.operation.status, 'succeeded');
    assert.match((await asAlice(['instance', 'list', 'acme'])).stdout, /^web +os +running +running +1 +128 MiB/m);

    assert.match((await asAlice(['snapshot', 'create', 'acme/web', 'before'])).stdout, /created snapshot acme\/web@before/);
    assert.match((await asAlice(['snapshot', 'list', 'acme'])).stdout, /^web +before +ready /m);

    fake.failOn('stop');
    const failed = await asAlice(['instance', 'stop', 'acme/web']);
    assert.equal(failed.code, 1);
    assert.match(failed.stderr, /^strata: .*fake stop failure \(STRATA_ERR_DRIVER\)\n$/);
    assert.match((await asAlice(['operation', 'list', '--status', 'failed'])).stdout, /fake stop failure/);
  });

  it('verifies the audit log on the server and offline', async () => {
    assert.match(await ok(['audit', 'verify']), /^audit log on the server verifies: \d+ entries/);
    assert.match(await ok(['audit', 'verify', '--data-dir', join(dir, 'data')]), /^audit log in .* verifies: \d+ entries/);
    assert.match(await ok(['audit', 'proof', '2']), /^checked: entry 2 is in the tree of size \d+$/m);
    assert.match(await ok(['audit', 'consistency', '3']), /^checked: the tree of size 3 is a prefix/m);
    const out = join(dir, 'acme-audit.json');
    assert.match(await ok(['audit', 'export', '--tenant', 'acme', '--out', out, '--verify']), /^export verifies: \d+ entries/);
    assert.ok((JSON.parse(readFileSync(out, 'utf8')) as { entries: unknown[] }).entries.length > 0);
  });

  it('names the first altered entry when the log was tampered with', async () => {
    const copy = join(dir, 'tampered');
    mkdirSync(copy);
    const live = new Database(join(dir, 'data', 'strata.db'), { readonly: true });
    live.exec(`VACUUM INTO '${join(copy, 'strata.db')}'`);
    live.close();
    copyFileSync(join(dir, 'data', 'audit-key.pem'), join(copy, 'audit-key.pem'));
    const db = new Database(join(copy, 'strata.db'));
    const row = db.prepare('SELECT data FROM audit_entries WHERE seq = 2').get() as { data: Buffer };
    db.prepare('UPDATE audit_entries SET data = ? WHERE seq = 2').run(Buffer.from(row.data.toString('utf8').replace('tenant.create', 'tenant.delete')));
    db.close();
    await fails(strata(['audit', 'verify', '--data-dir', copy]), 1, /^strata: audit log in .* does not verify: first bad entry #2: .* \(STRATA_ERR_AUDIT_VERIFY_FAILED\)$/m);
  });
});

describe('strata up', () => {
  it('starts the daemon, prints its URL and token file, and stops cleanly on SIGTERM', async () => {
    const dir = tempDir('up');
    let child: ChildProcessWithoutNullStreams | undefined;
    try {
      child = spawn(process.execPath, [BIN, 'up', '--data-dir', join(dir, 'data'), '--api-listen', '127.0.0.1:0'], {
        env: { PATH: process.env.PATH ?? '', HOME: dir },
      });
      let out = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
      child.stderr.resume();
      const exited = once(child, 'exit');
      await until(() => out.split('\n').length >= 3, { ...WAIT, what: "strata up's two lines" });
      const [urlLine, tokenLine] = out.split('\n');
      const url = /(http:\/\/127\.0\.0\.1:\d+)$/.exec(urlLine!)?.[1];
      assert.ok(url, urlLine);
      assert.ok(tokenLine!.endsWith(join(dir, 'data', 'admin.token')), tokenLine);
      const token = readFileSync(join(dir, 'data', 'admin.token'), 'utf8').trim();
      const res = await fetch(`${url}/v1/whoami`, { headers: { authorization: `Bearer ${token}` } });
      assert.equal(((await res.json()) as { role: string }).role, 'provider-admin');
      child.kill('SIGTERM');
      const [code] = await exited;
      assert.equal(code, 0);
      child = undefined;
    } finally {
      if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  });
});
