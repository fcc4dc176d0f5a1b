/** Processes named by pid + start time: a signal never reaches a process that merely got the same pid. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { test } from 'node:test';
import { identityUnder, procStat, signalIdentity } from '../../src/core/process-identity.js';

test('a process is taken only under its ancestor, and signalled only while its start time still matches', async () => {
  // sh forks sleep (no exec: the trailing `wait` keeps sh as its parent).
  const sh = spawn('sh', ['-c', 'sleep 30 & echo $!; wait'], { stdio: ['ignore', 'pipe', 'ignore'] });
  try {
    const [chunk] = (await once(sh.stdout!, 'data')) as [Buffer];
    const sleepPid = Number(chunk.toString().trim());
    const id = identityUnder(sleepPid, sh.pid!);
    assert.ok(id, 'sleep descends from sh');
    assert.equal(id.pid, sleepPid);
    assert.equal(identityUnder(sleepPid, process.pid, 1), null, 'not a child of this process within one generation');
    assert.equal(identityUnder(process.pid, sh.pid!), null, 'an unrelated pid is not taken');

    // The same pid with another start time is what a reused pid looks like: nothing is sent.
    assert.equal(signalIdentity({ pid: sleepPid, startTime: String(Number(id.startTime) + 1) }, 'SIGKILL'), false);
    assert.ok(procStat(sleepPid), 'still running');

    assert.equal(signalIdentity(id, 'SIGKILL'), true);
    await once(sh, 'exit');
    assert.equal(signalIdentity(id, 'SIGKILL'), false, 'gone: nothing to signal');
  } finally {
    sh.kill('SIGKILL');
  }
});
