/** The spawn helper: commands run from it behave as run from the daemon, and a dead helper is replaced. */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { CommandError, run, runLogged, runQuietly } from '../../../src/levels/os/exec.js';
import { spawner } from '../../../src/levels/os/spawner.js';
import { tempDir } from '../../support/temp.js';

test('output, input, exit codes and stderr come back as from a direct spawn', async () => {
  assert.ok(spawner, 'the helper script is built');
  assert.deepEqual(await run('sh', ['-c', 'echo out; echo err >&2']), { stdout: 'out\n', stderr: 'err\n' });
  assert.equal((await run('cat', [], { input: 'through stdin\n' })).stdout, 'through stdin\n');
  await assert.rejects(run('sh', ['-c', 'echo broken >&2; exit 3']), (e: unknown) => e instanceof CommandError && e.exitCode === 3 && /broken/.test(e.message));
  await assert.rejects(run('/no/such/tool', []), (e: unknown) => e instanceof CommandError && e.exitCode === null);
  assert.equal(await runQuietly('false', []), false);
  assert.notEqual(spawner.pid, process.pid);
  assert.ok(spawner.pid);
});

test('runLogged appends stdout and stderr to the file and returns the exit code', async () => {
  const dir = tempDir('spawner');
  const log = join(dir, 'console.log');
  assert.equal(await runLogged('sh', ['-c', 'echo one; echo two >&2'], log), 0);
  assert.equal(await runLogged('sh', ['-c', 'echo three; exit 4'], log), 4);
  assert.equal(await readFile(log, 'utf8'), 'one\ntwo\nthree\n');
});

test('a helper that dies fails the calls in flight; the next call gets a new helper', async () => {
  assert.ok(spawner);
  await run('true', []);
  const first = spawner.pid!;
  const inFlight = run('sleep', ['2']); // outlives its helper by under 2 s, then ends on its own
  await sleep(100);
  process.kill(first, 'SIGKILL');
  await assert.rejects(inFlight, (e: unknown) => e instanceof CommandError && /spawn helper exited/.test(e.message));
  assert.equal((await run('echo', ['again'])).stdout, 'again\n');
  assert.notEqual(spawner.pid, first);
});
