/**
 * The core's cgroup files on fake hierarchies (plain directories): what a
 * group's limits write on v1 and on v2, the controllers v2 turns on top down,
 * what the counters read back, and removal. The real hierarchies are exercised
 * by the levels' tests (os containers, VMs, isolate hosts).
 */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { Cgroup, cgroupMode, limitingCgroupMode, unifiedHierarchy } from '../../src/core/cgroups.js';
import { tempDir } from '../support/temp.js';

const read = (path: string): string => readFileSync(path, 'utf8');

function fakeV1(): string {
  const root = tempDir('cgroups-v1');
  for (const c of ['cpu', 'memory', 'pids', 'unified']) {
    mkdirSync(join(root, c));
    writeFileSync(join(root, c, 'cgroup.procs'), '');
  }
  return root;
}

function fakeV2(controllers = 'cpuset cpu io memory pids'): string {
  const root = tempDir('cgroups-v2');
  writeFileSync(join(root, 'cgroup.controllers'), controllers);
  writeFileSync(join(root, 'cgroup.procs'), '');
  return root;
}

test('modes: hybrid counts as v1 with its unified hierarchy beside the controllers; v2 needs cpu, memory and pids to limit', () => {
  const v1 = fakeV1();
  assert.equal(cgroupMode(v1), 'v1');
  assert.equal(limitingCgroupMode(v1), 'v1');
  assert.equal(unifiedHierarchy('v1', v1), join(v1, 'unified'));
  const v2 = fakeV2();
  assert.equal(cgroupMode(v2), 'v2');
  assert.equal(limitingCgroupMode(v2), 'v2');
  assert.equal(unifiedHierarchy('v2', v2), v2);
  assert.equal(limitingCgroupMode(fakeV2('cpu io')), null);
});

test('v1: one directory per controller, limits in its files, null as unlimited', () => {
  const root = fakeV1();
  const g = new Cgroup('/strata-x/a', 'v1', root).create({ cpus: 1.5, memoryBytes: 64 << 20, pids: 32 });
  assert.deepEqual(g.dirs, ['cpu', 'memory', 'pids'].map((c) => join(root, c, 'strata-x/a')));
  assert.deepEqual(g.procsFiles, g.dirs.map((d) => join(d, 'cgroup.procs')));
  assert.equal(read(join(root, 'cpu/strata-x/a/cpu.cfs_period_us')), '100000');
  assert.equal(read(join(root, 'cpu/strata-x/a/cpu.cfs_quota_us')), '150000');
  assert.equal(read(join(root, 'memory/strata-x/a/memory.limit_in_bytes')), String(64 << 20));
  assert.equal(read(join(root, 'pids/strata-x/a/pids.max')), '32');
  const open = new Cgroup('strata-x/b', 'v1', root).create({ cpus: null, memoryBytes: null, pids: null });
  assert.equal(read(join(open.dir('cpu'), 'cpu.cfs_quota_us')), '-1');
  assert.equal(read(join(open.dir('memory'), 'memory.limit_in_bytes')), '-1');
  assert.equal(read(join(open.dir('pids'), 'pids.max')), 'max');
});

test('v2: controllers turned on in every ancestor (and the group itself when delegated), limits in one directory', () => {
  const root = fakeV2();
  mkdirSync(join(root, 'p'));
  writeFileSync(join(root, 'p/cgroup.controllers'), 'cpu io memory pids');
  writeFileSync(join(root, 'p/cgroup.subtree_control'), 'cpu memory');
  const g = new Cgroup('p/t', 'v2', root);
  mkdirSync(g.dir('cpu'));
  writeFileSync(join(g.dir('cpu'), 'cgroup.controllers'), 'cpu io memory pids');
  writeFileSync(join(g.dir('cpu'), 'memory.swap.max'), 'max');
  g.create({ cpus: 0.001, memoryBytes: 1 << 20, pids: null, noSwap: true }, { delegate: true, extraControllers: ['io'] });
  assert.equal(read(join(root, 'cgroup.subtree_control')), '+cpu +memory +pids +io');
  assert.equal(read(join(root, 'p/cgroup.subtree_control')), '+pids +io', 'only what is not on yet');
  assert.equal(read(join(root, 'p/t/cgroup.subtree_control')), '+cpu +memory +pids +io');
  assert.equal(read(join(root, 'p/t/cpu.max')), '1000 100000', 'at least the kernel minimum quota');
  assert.equal(read(join(root, 'p/t/memory.max')), String(1 << 20));
  assert.equal(read(join(root, 'p/t/memory.swap.max')), '0');
  assert.equal(read(join(root, 'p/t/pids.max')), 'max');
  assert.deepEqual(g.procsFiles, [join(root, 'p/t/cgroup.procs')]);
});

test('CPU quota set and read back on v1 and v2', async () => {
  for (const [mode, root] of [['v1', fakeV1()], ['v2', fakeV2()]] as const) {
    const g = new Cgroup('q', mode, root).create({ cpus: null, memoryBytes: null, pids: null });
    assert.equal(await g.cpuLimit(), null, mode);
    await g.setCpu(0.25);
    assert.equal(await g.cpuLimit(), 0.25, mode);
  }
});

test('memory limit set and read back: v1 keeps memsw equal (raise and cut), unlimited reads as null', async () => {
  const v1 = fakeV1();
  const a = new Cgroup('l', 'v1', v1).create({ cpus: null, memoryBytes: 64 << 20, pids: null });
  writeFileSync(join(a.dir('memory'), 'memory.memsw.limit_in_bytes'), String(64 << 20));
  await a.setMemory(96 << 20);
  assert.equal(read(join(a.dir('memory'), 'memory.memsw.limit_in_bytes')), String(96 << 20));
  assert.equal(await a.memoryLimit(), 96 << 20);
  await a.setMemory(32 << 20);
  assert.equal(read(join(a.dir('memory'), 'memory.memsw.limit_in_bytes')), String(32 << 20));
  assert.equal(await a.memoryLimit(), 32 << 20);
  writeFileSync(join(a.dir('memory'), 'memory.limit_in_bytes'), '9223372036854771712');
  assert.equal(await a.memoryLimit(), null);
  const b = new Cgroup('l', 'v2', fakeV2()).create({ cpus: null, memoryBytes: null, pids: null });
  assert.equal(await b.memoryLimit(), null);
  await b.setMemory(1 << 20);
  assert.equal(await b.memoryLimit(), 1 << 20);
});

test('memory counters, throttling and stats read the mode\'s own files; a missing group reads as null', async () => {
  const v1 = fakeV1();
  const a = new Cgroup('m', 'v1', v1).create({ cpus: 1, memoryBytes: 100, pids: 8 });
  writeFileSync(join(a.dir('memory'), 'memory.usage_in_bytes'), '90\n');
  writeFileSync(join(a.dir('memory'), 'memory.failcnt'), '3\n');
  writeFileSync(join(a.dir('memory'), 'memory.oom_control'), 'oom_kill_disable 0\nunder_oom 0\noom_kill 2\n');
  writeFileSync(join(a.dir('cpu'), 'cpu.stat'), 'nr_periods 5\nnr_throttled 1\nthrottled_time 777\n');
  assert.deepEqual(await a.memory(), { usageBytes: 90, limitBytes: 100, limitHits: 3, oomKills: 2 });
  assert.equal(a.memoryUsage(), 90);
  assert.equal(await a.throttledNs(), 777);
  assert.deepEqual(await a.stats(), { cpuUsageNs: null, memoryBytes: 90, pids: null, oomKills: 2 });
  assert.equal(await new Cgroup('gone', 'v1', v1).memory(), null);
  assert.equal(await new Cgroup('gone', 'v1', v1).throttledNs(), null);

  const v2 = fakeV2();
  const b = new Cgroup('m', 'v2', v2).create({ cpus: 1, memoryBytes: null, pids: 8 });
  writeFileSync(join(b.dir('memory'), 'memory.current'), '50\n');
  writeFileSync(join(b.dir('memory'), 'memory.events'), 'low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n');
  writeFileSync(join(b.dir('cpu'), 'cpu.stat'), 'usage_usec 12\nthrottled_usec 5\n');
  writeFileSync(join(b.dir('pids'), 'pids.current'), '3\n');
  assert.deepEqual(await b.memory(), { usageBytes: 50, limitBytes: Number.MAX_SAFE_INTEGER, limitHits: 4, oomKills: 1 });
  assert.equal(await b.throttledNs(), 5000);
  assert.deepEqual(await b.stats(), { cpuUsageNs: 12_000, memoryBytes: 50, pids: 3, oomKills: 1 });
});

test('remove: every limited hierarchy, missing is fine, a refusal other than EBUSY is thrown at once', async () => {
  const root = fakeV1();
  const g = new Cgroup('r', 'v1', root);
  for (const d of g.dirs) mkdirSync(d);
  await g.remove();
  assert.ok(g.dirs.every((d) => !existsSync(d)));
  await g.remove();
  for (const d of g.dirs) mkdirSync(d);
  writeFileSync(join(g.dir('memory'), 'left'), '');
  await assert.rejects(g.remove(), { code: 'ENOTEMPTY' });
});

test('removeEverywhere: the group in every mounted hierarchy, empty children first', async () => {
  const root = fakeV1();
  mkdirSync(join(root, 'unified/s/t/leftover'), { recursive: true });
  mkdirSync(join(root, 'cpu/s/t'), { recursive: true });
  assert.equal(await new Cgroup('s/t', 'v1', root).removeEverywhere(), true);
  assert.ok(!existsSync(join(root, 'unified/s/t')) && !existsSync(join(root, 'cpu/s/t')));
  mkdirSync(join(root, 'pids/s/t'), { recursive: true });
  writeFileSync(join(root, 'pids/s/t/busy'), '');
  assert.equal(await new Cgroup('s/t', 'v1', root).removeEverywhere(), false);
});
