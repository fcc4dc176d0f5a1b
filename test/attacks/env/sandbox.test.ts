/**
 * The second wall: an isolate host process, seen from outside, runs as an
 * unprivileged uid with no capabilities, no_new_privs and a seccomp filter, in
 * its own network namespace (nothing but a downed loopback) and pid namespace,
 * inside a cgroup with a memory limit. Skipped where the daemon is not root.
 */
import assert from 'node:assert/strict';
import { readFileSync, readlinkSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { HELLO, http, launch, startEnv, type TestEnv } from '../../levels/env/helpers.js';

const status = (pid: number): Record<string, string> =>
  Object.fromEntries(readFileSync(`/proc/${pid}/status`, 'utf8').trim().split('\n').map((l) => l.split(':\t') as [string, string]));

/** The node process at the end of the sandbox chain started as `pid`. */
function nodeOf(pid: number): number {
  let current = pid;
  for (let depth = 0; depth < 5; depth++) {
    if (readFileSync(`/proc/${current}/comm`, 'utf8').trim() === 'node') return current;
    const children = readFileSync(`/proc/${current}/task/${current}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
    if (children.length === 0) break;
    current = Number(children[0]);
  }
  throw new Error(`no node process under ${pid}`);
}

describe('env isolate host sandbox', { skip: process.getuid?.() !== 0 ? 'needs root' : false }, () => {
  let env: TestEnv;
  before(async () => { env = await startEnv({ hosts: 1 }); });
  after(async () => { await env.close(); });

  test('the host runs unprivileged, filtered and namespaced, inside a memory-limited cgroup', async () => {
    const { id, url } = await launch(env, 'probe', HELLO);
    assert.equal((await http(url)).status, 200);
    const pid = nodeOf((await env.driver.inspect(id))!.info!.pid as number);
    const s = status(pid);
    assert.notEqual(s.Uid!.split('\t')[0], '0', 'not root');
    assert.equal(s.CapEff, '0000000000000000');
    assert.equal(s.CapBnd, '0000000000000000');
    assert.equal(s.NoNewPrivs, '1');
    assert.equal(s.Seccomp, '2', 'seccomp filter mode');
    for (const ns of ['net', 'pid', 'mnt', 'ipc', 'uts']) {
      assert.notEqual(readlinkSync(`/proc/${pid}/ns/${ns}`), readlinkSync(`/proc/self/ns/${ns}`), `own ${ns} namespace`);
    }
    const cgroups = readFileSync(`/proc/${pid}/cgroup`, 'utf8');
    assert.match(cgroups, /strata-env\//);
    const memoryLine = cgroups.split('\n').find((l) => /:memory:/.test(l) || l.startsWith('0::'))!;
    const path = memoryLine.split(':')[2]!;
    const limitFile = /:memory:/.test(memoryLine) ? `/sys/fs/cgroup/memory${path}/memory.limit_in_bytes` : `/sys/fs/cgroup${path}/memory.max`;
    assert.equal(Number(readFileSync(limitFile, 'utf8')), 2048 * 1024 * 1024);
  });
});
