/**
 * `strata up` as a process: SIGHUP reloads the gateway's listeners and
 * certificates and logs what it serves, and the daemon keeps serving (SIGHUP's
 * default action would end it); `--log-level` sets the least severe line
 * written to stderr, and an unknown level is a usage error.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { freePort } from '../support/net.js';
import { tempDir } from '../support/temp.js';
import { until } from '../support/until.js';

const BIN = fileURLToPath(new URL('../../../bin/strata', import.meta.url));

interface Up {
  child: ChildProcessWithoutNullStreams;
  url: string;
  token: string;
  /** Every JSON log line on stderr so far. */
  logs(): Array<{ level: number; msg: string; [k: string]: unknown }>;
}

/** Runs `fn` against a `strata up` with `args`, then stops it with SIGTERM (exit 0 expected). */
async function withUp(args: string[], fn: (up: Up) => Promise<void>): Promise<void> {
  const dir = tempDir('up-signals');
  const child = spawn(process.execPath, [BIN, 'up', '--data-dir', join(dir, 'data'), '--api-listen', '127.0.0.1:0', '--listen', `http://127.0.0.1:${await freePort()}`, ...args], {
    env: { PATH: process.env.PATH ?? '', HOME: dir },
  });
  try {
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (err += s));
    await until(() => /Gateway \S+ on /.test(out) || child.exitCode !== null, { ms: 120_000, what: () => `strata up: ${out} ${err.slice(-2000)}` });
    assert.equal(child.exitCode, null, err.slice(-2000));
    const logs = () => err.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as ReturnType<Up['logs']>[number]);
    const url = /listening on (http:\/\/\S+)/.exec(out)![1]!;
    await fn({ child, url, token: readFileSync(join(dir, 'data', 'admin.token'), 'utf8').trim(), logs });
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    assert.deepEqual((await exited).slice(0, 1), [0]);
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

const whoami = async (up: Up): Promise<number> => (await fetch(`${up.url}/v1/whoami`, { headers: { authorization: `Bearer ${up.token}` } })).status;

test('SIGHUP reloads listeners and certificates, logs what the gateway serves, and the daemon goes on', async () => {
  await withUp([], async (up) => {
    up.child.kill('SIGHUP');
    const line = await until(() => up.logs().find((l) => l.signal === 'SIGHUP' && /^reloaded/.test(l.msg)), { ms: 30_000, what: 'the reload log line' });
    assert.equal(line.level, 30);
    assert.deepEqual(line.serves, { listeners: 1, sites: 0, certificates: 1 });
    assert.equal(up.child.exitCode, null, 'still running');
    assert.equal(await whoami(up), 200);
    await until(() => up.logs().some((l) => l.level === 30 && l.msg === 'request completed'), { what: 'info lines for requests at the default level' });
  });
});

test('--log-level warn keeps info lines off stderr; an unknown level is refused before anything starts', async () => {
  await withUp(['--log-level', 'warn'], async (up) => {
    assert.equal(await whoami(up), 200);
    up.child.kill('SIGHUP');
    await new Promise((r) => setTimeout(r, 1_000));
    assert.equal(up.child.exitCode, null);
    const chatty = up.logs().filter((l) => l.level < 40);
    assert.deepEqual(chatty.map((l) => l.msg), [], 'no line below warn (requests and the reload log at info)');
  });
  const bad = spawnSync(process.execPath, [BIN, 'up', '--log-level', 'loud'], { encoding: 'utf8' });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--log-level.*loud.*trace, debug, info, warn, error, fatal, silent/);
});
