/**
 * The os interceptor against a live container: bpftrace really attached, real
 * syscalls made inside a runc container, each turned into the typed event with
 * the instance it came from; nothing from the host; supervision restarts a
 * killed bpftrace and reports the death.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { GuardEvent } from '../../../../src/core/guard-event.js';
import { BpfInterceptor, bpfAvailable, osLabels } from '../../../../src/levels/os/guard/interceptor.js';
import { osProgram } from '../../../../src/levels/os/guard/program.js';
import { assemblePath } from '../../../../src/levels/os/guard/resolution.js';
import type { Store } from '../../../../src/store/store.js';
import { OsDriver } from '../../../../src/levels/os/driver.js';
import { builtinImages, claimSlot, leftovers, nothingLeft, spec, testDriverOptions } from '../helpers.js';

const availability = bpfAvailable();
const slot = await claimSlot();
const options = testDriverOptions(slot);
const driver = new OsDriver(options);
const ID = `bpf-${slot}-${process.pid}`;
const events: GuardEvent[] = [];
const interceptor = new BpfInterceptor({
  identities: driver.identities,
  labels: () => ({ 'instance.role': 'web' }),
  restartMs: { initial: 200, max: 1000 },
});

/** Waits until an event matching `pred` arrived (the pipeline is asynchronous), or fails naming what did. */
async function seen(pred: (e: GuardEvent) => boolean, what: string, timeoutMs = 10_000): Promise<GuardEvent> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const hit = events.find(pred);
    if (hit) return hit;
    if (Date.now() > deadline) assert.fail(`no ${what} among ${events.length} events: ${JSON.stringify(events.slice(-5))}`);
    await sleep(50);
  }
}
const sh = (script: string) => driver.run(ID, ['sh', '-c', script], { timeoutMs: 20_000 });

describe('os interceptor (bpftrace)', { skip: availability.available ? false : availability.reason }, () => {
  before(async () => {
    await builtinImages();
    assert.ok((await driver.provision()).available);
    await driver.create(spec(ID, 'tbpf'));
    await driver.start(ID);
    await interceptor.start((e) => { events.push(e); });
  }, { timeout: 120_000 });

  after(async () => {
    await interceptor.stop();
    await driver.stop(ID, { graceMs: 100 }).catch(() => undefined);
    await driver.delete(ID).catch(() => undefined);
    await driver.cleanup();
    const found = await leftovers(options);
    assert.ok(nothingLeft(found), JSON.stringify(found));
  }, { timeout: 60_000 });

  test('exec: path, argv and parent, attributed to the instance', async () => {
    await sh('/bin/ls / guard-probe-arg > /dev/null 2>&1; true');
    const e = await seen((x) => x.kind === 'process.exec' && x.fields['proc.name'] === 'ls' && String(x.fields['proc.cmdline']).includes('guard-probe-arg'), 'exec of ls');
    assert.equal(e.instanceId, ID);
    assert.equal(e.tenantId, 'tbpf');
    assert.equal(e.level, 'os');
    assert.equal(e.fields['proc.exe'], '/bin/ls');
    assert.equal(e.fields['proc.pname'], 'sh');
    assert.equal(e.fields['proc.cmdline'], '/bin/ls / guard-probe-arg');
    assert.equal(e.fields['user.uid'], 0, 'uid as the container sees it');
    assert.equal(e.fields['instance.role'], 'web', 'labels are added');
    assert.equal(e.fields['instance.generation'], driver.identities.current(ID)?.generation, 'the start it came from');
    assert.equal(e.fields['proc.entrypoint'], false);
  });

  test('writes under watched paths (absolute, relative, renamed) and none elsewhere', async () => {
    await sh('echo x > /tmp/guard-abs; cd /tmp && { echo y > guard-rel; sleep 0.5; } && mv /tmp/guard-rel /tmp/guard-moved; mkdir -p /data2; echo z > /root/unwatched 2>/dev/null; true');
    await seen((x) => x.kind === 'file.write' && x.fields['file.path'] === '/tmp/guard-abs' && x.fields['file.op'] === 'create', 'write of /tmp/guard-abs');
    await seen((x) => x.kind === 'file.write' && x.fields['file.path'] === '/tmp/guard-rel', 'relative write resolved against the cwd');
    await seen((x) => x.kind === 'file.write' && x.fields['file.path'] === '/tmp/guard-moved' && x.fields['file.op'] === 'rename', 'rename target');
    assert.ok(!events.some((x) => x.kind === 'file.write' && String(x.fields['file.path']).startsWith('/root/')), 'unwatched paths are not reported');
  });

  test('connect: address and port', async () => {
    await sh('nc -w 1 127.0.0.1 9 </dev/null 2>/dev/null; true');
    const e = await seen((x) => x.kind === 'net.connect' && x.fields['net.dport'] === 9, 'connect to port 9');
    assert.equal(e.fields['net.dip'], '127.0.0.1');
    assert.equal(e.fields['net.family'], 'inet');
  });

  test('a syscall the seccomp profile refuses is a denial, named', async () => {
    await sh('chroot /tmp /bin/true 2>/dev/null; unshare -U true 2>/dev/null; true');
    const e = await seen((x) => x.kind === 'syscall.denied' && x.fields['syscall.name'] === 'chroot', 'chroot denial');
    assert.equal(e.fields['syscall.seccomp'], true);
    assert.equal(e.fields['syscall.class'], 'mount');
    await seen((x) => x.kind === 'syscall.denied' && x.fields['syscall.name'] === 'unshare', 'unshare denial');
  });

  test('forks and CPU are counted in the kernel and reported per second', async () => {
    const from = events.length;
    await sh('for i in $(seq 30); do sh -c :; done; timeout 3 sh -c "while :; do :; done"; true');
    const cpu = await seen((x) => x.kind === 'resource.cpu' && x.fields['cpu.sleeps'] === 0, 'CPU report of a loop that never sleeps');
    assert.ok(Number(cpu.fields['cpu.cores']) > 0, JSON.stringify(cpu.fields));
    assert.equal(cpu.fields['proc.name'], 'sh');
    await sleep(1100);
    const forks = events.slice(from).filter((x) => x.kind === 'process.spawn').reduce((n, x) => n + Number(x.fields['proc.forks']), 0);
    assert.ok(forks >= 30, `${forks} forks counted`);
  });

  test('a flood past the budget: every write is an event or counted in a guard.flood report', async () => {
    const from = events.length;
    const overBefore = interceptor.stats().overBudget;
    // 3000 opens for writing from one shell (redirections of a builtin: no fork), past the 500 a second sent.
    await sh('i=0; while [ $i -lt 3000 ]; do echo x > /tmp/guard-flood; i=$((i+1)); done');
    await seen((x) => x.kind === 'guard.flood', 'flood report');
    await sleep(2200); // the seconds the flood spanned are all reported
    const mine = events.slice(from);
    const sent = mine.filter((x) => x.kind === 'file.write' && x.fields['file.path'] === '/tmp/guard-flood').length;
    const suppressed = mine.filter((x) => x.kind === 'guard.flood').reduce((n, x) => n + Number(x.fields['guard.suppressed']), 0);
    assert.ok(sent >= 500 && sent <= 500 * 4, `${sent} sent: the budget, for each second the flood spanned`);
    assert.equal(interceptor.stats().overBudget - overBefore, suppressed, 'stats count what the reports say');
    // The count of a second is read and then reset: a write in between may go uncounted, no more than a few.
    assert.ok(sent + suppressed >= 3000 - 30 && sent + suppressed <= 3000 + 10, `${sent} sent + ${suppressed} counted of 3000`);
  });

  test('relative paths are resolved from the kernel at event time, even for a task gone at once, across mounts', async () => {
    // Each shell exits right after its write: nothing is left to read from /proc when the record arrives.
    await sh('cd /etc && echo x > guard-gone 2>/dev/null; true');
    await seen((x) => x.kind === 'file.write' && x.fields['file.path'] === '/etc/guard-gone', 'relative write in /etc, resolved');
    // /dev/shm is a mount of its own: the walk crosses from its root to its mountpoint.
    await sh('cd /dev/shm && mkdir -p a/b && cd a/b && echo x > guard-deep; true');
    await seen((x) => x.kind === 'file.write' && x.fields['file.path'] === '/dev/shm/a/b/guard-deep', 'relative write below a mount');
  });

  test('the host is not watched: its execs and writes emit nothing', async () => {
    const before = interceptor.stats().records;
    spawnSync('sh', ['-c', 'for i in 1 2 3; do /bin/true; done; echo x > /tmp/guard-host-write; rm -f /tmp/guard-host-write']);
    await sleep(1500);
    assert.ok(!events.some((x) => x.instanceId !== ID && x.level === 'os'), 'only the instance emits os events');
    assert.ok(!events.some((x) => x.fields['file.path'] === '/tmp/guard-host-write'));
    assert.ok(interceptor.stats().records >= before);
  });

  test('bpftrace killed: the death is an event, and it comes back and sees again', { timeout: 120_000 }, async () => {
    const pid = interceptor.pid!;
    process.kill(pid, 'SIGKILL');
    const died = await seen((x) => x.kind === 'guard.interceptor' && x.fields['guard.state'] === 'died', 'death event');
    assert.equal(died.priority, 'critical');
    await seen((x) => x.kind === 'guard.interceptor' && x.fields['guard.state'] === 'restarted', 'restart', 90_000);
    assert.notEqual(interceptor.pid, pid);
    assert.equal(interceptor.stats().starts, 2);
    await sh('/bin/ls after-restart >/dev/null 2>&1; true');
    await seen((x) => x.kind === 'process.exec' && String(x.fields['proc.cmdline']).includes('after-restart'), 'exec after restart');
  });

  test('stopping reports the second under way: a flood just before stop() is still counted', { timeout: 60_000 }, async () => {
    await sleep(1100); // a fresh second
    const from = events.length;
    await sh('i=0; while [ $i -lt 2000 ]; do echo x > /tmp/guard-flood-stop; i=$((i+1)); done');
    await interceptor.stop(); // the last test: after() finds it stopped
    const mine = events.slice(from);
    const sent = mine.filter((x) => x.kind === 'file.write' && x.fields['file.path'] === '/tmp/guard-flood-stop').length;
    const suppressed = mine.filter((x) => x.kind === 'guard.flood').reduce((n, x) => n + Number(x.fields['guard.suppressed']), 0);
    assert.ok(sent + suppressed >= 2000 - 20 && sent + suppressed <= 2000 + 10, `${sent} sent + ${suppressed} counted of 2000`);
  });
});

test('budgets: file writes and connections each have their own, so flooding either cannot silence an exec or a mount', () => {
  const program = osProgram();
  const blockOf = (tracepoint: string): string => {
    const start = program.indexOf(`tracepoint:syscalls:${tracepoint}`);
    assert.ok(start >= 0, `${tracepoint} is probed`);
    return program.slice(start, program.indexOf('\n}', start));
  };
  const budgetOf = (tracepoint: string): string => /(@[a-z]*budget)\[/.exec(blockOf(tracepoint))?.[1] ?? 'none';
  const exec = budgetOf('sys_enter_execve');
  assert.equal(budgetOf('sys_enter_mount'), exec);
  assert.notEqual(budgetOf('sys_enter_openat'), exec);
  assert.notEqual(budgetOf('sys_enter_connect'), exec);
  assert.notEqual(budgetOf('sys_enter_connect'), budgetOf('sys_enter_openat'));
  assert.equal(budgetOf('sys_enter_socket'), budgetOf('sys_enter_connect'));
  for (const map of [exec, budgetOf('sys_enter_openat'), budgetOf('sys_enter_connect')]) assert.match(program, new RegExp(`print\\(${map}\\); clear\\(${map}\\)`), `${map} is reported each second`);
});

test('paths: absolute ones normalised; relative ones joined to the directory the kernel walked, or marked', () => {
  assert.equal(assemblePath('/tmp/../usr/bin/x', null, 0), '/usr/bin/x');
  assert.equal(assemblePath('//etc///passwd', null, 0), '/etc/passwd');
  assert.equal(assemblePath('x', ['b', 'a'], 1), '/a/b/x', 'components come deepest first');
  assert.equal(assemblePath('../x', ['etc'], 1), '/x');
  assert.equal(assemblePath('x', ['b', 'a'], 0), '?/a/b/x', 'a walk cut short says so');
});

test('osLabels: web when a site routes to the instance (by its id, never a reused name); the sites read at most once a second', () => {
  let reads = 0;
  const store = {
    listSites: () => {
      reads++;
      return [
        { tenantId: 't1', instanceId: 'i1', target: { kind: 'instance', instance: 'shop', port: 8080 } },
        // A site of a deleted instance named like i2: i2 is not its instance.
        { tenantId: 't1', instanceId: 'i0', target: { kind: 'instance', instance: 'batch', port: 8080 } },
        { tenantId: 't1', instanceId: null, target: { kind: 'static', root: '/x' } },
      ];
    },
  } as unknown as Store;
  const labels = osLabels(store);
  const identity = (instanceId: string) => ({ cgroupId: '1', tenantId: 't1', instanceId, generation: '1', initPid: 1, uidBase: null, vcpus: 1, since: 0n });
  assert.deepEqual(labels(identity('i1')), { 'instance.role': 'web' });
  assert.deepEqual(labels(identity('i2')), { 'instance.role': 'worker' });
  assert.equal(reads, 1);
});
