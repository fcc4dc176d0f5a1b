/**
 * OsDriver streams on this machine: `exec` with and without a terminal (the
 * console-socket helper), stdin reaching the process, exit codes, resize, kill,
 * the exec'd process confined as the container's own; and `logs` — history,
 * tail, and a follower that survives rotation.
 */
import assert from 'node:assert/strict';
import { readFileSync, readlinkSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ExecSession } from '../../../src/levels/driver.js';
import { rotateIfLarge } from '../../../src/levels/os/logs.js';
import { OsDriver } from '../../../src/levels/os/driver.js';
import { builtinImages, claimSlot, leftovers, nothingLeft, spec, testDriverOptions } from './helpers.js';

const options = testDriverOptions(await claimSlot());

/** Collects a stream's text; `until` resolves as soon as it contains a pattern. */
function collect(stream: Readable): { text: () => string; until: (re: RegExp, timeoutMs?: number) => Promise<string> } {
  let text = '';
  stream.on('data', (c: Buffer) => (text += c.toString('utf8')));
  return {
    text: () => text,
    until: async (re, timeoutMs = 10_000) => {
      const deadline = Date.now() + timeoutMs;
      while (!re.test(text)) {
        if (Date.now() > deadline) throw new Error(`no ${re} in ${JSON.stringify(text)}`);
        await sleep(20);
      }
      return text;
    },
  };
}

const ended = (s: Readable): Promise<void> => new Promise((resolve) => (s.readableEnded ? resolve() : s.on('end', resolve)));

/** The container's main process: prints two lines, then whatever appears in /tmp/say, on its own stdout (the captured log). */
const SAYER = 'echo hello from the container; echo oops >&2; while true; do [ -f /tmp/say ] && cat /tmp/say && rm /tmp/say; sleep 0.05; done';

describe('os.runc exec and logs', () => {
  let driver: OsDriver;
  let id: string;
  let initPid: number;

  before(async () => {
    await builtinImages();
    driver = new OsDriver(options);
    const availability = await driver.provision();
    assert.ok(availability.available, availability.reason);
    id = `exec-${process.pid}`;
    await driver.create(spec(id, 'acme', { config: { args: ['sh', '-c', SAYER] } }));
    await driver.start(id);
    initPid = (await driver.inspect(id))?.info?.pid as number;
    assert.ok(initPid > 0);
  });

  after(async () => {
    await driver.stop(id, { graceMs: 0 }).catch(() => undefined);
    await driver.delete(id).catch(() => undefined);
    await driver.cleanup();
    const left = await leftovers(options);
    assert.ok(nothingLeft(left), JSON.stringify(left));
  });

  test('without a tty: stdin reaches the process, stdout and stderr apart, the exit code comes back', async () => {
    const s: ExecSession = await driver.exec(id, ['sh', '-c', 'read line; echo "got $line"; echo to-stderr >&2; exit 7'], { tty: false });
    const out = collect(s.stdout);
    const err = collect(s.stderr!);
    s.stdin.end('typed input\n');
    assert.equal(await s.exit, 7);
    assert.equal(out.text(), 'got typed input\n');
    assert.equal(err.text(), 'to-stderr\n');
  });

  test('with a tty: the process has a terminal, sees its size and resizes, and its exit code comes back', async () => {
    const s = await driver.exec(id, ['sh'], { tty: true, cols: 100, rows: 30 });
    assert.equal(s.stderr, null);
    const out = collect(s.stdout);
    s.stdin.write('tty; stty size\n');
    await out.until(/\/dev\/pts\/\d+[\s\S]*30 100/);
    s.resize(132, 43);
    await sleep(100);
    s.stdin.write('stty size; exit 3\n');
    await out.until(/43 132/);
    assert.equal(await s.exit, 3);
  });

  test('the exec’d process is confined as the container’s own: same namespaces, cgroup, capabilities, seccomp, user', async () => {
    const probe = 'for n in pid mnt net ipc uts user cgroup; do readlink /proc/self/ns/$n; done; ' +
      'grep -E "^(CapEff|CapBnd|NoNewPrivs|Seccomp):" /proc/self/status; echo cgroup-same=$( [ "$(cat /proc/self/cgroup)" = "$(cat /proc/1/cgroup)" ] && echo yes || echo no); id -u';
    for (const tty of [false, true]) {
      const s = await driver.exec(id, ['sh', '-c', probe], { tty });
      const out = collect(s.stdout);
      s.stdin.end();
      assert.equal(await s.exit, 0);
      const lines = out.text().replace(/\r/g, '').trim().split('\n');
      const expected = ['pid', 'mnt', 'net', 'ipc', 'uts', 'user', 'cgroup'].map((n) => readlinkSync(`/proc/${initPid}/ns/${n}`));
      assert.deepEqual(lines.slice(0, 7), expected, `tty=${tty}: the container's namespaces`);
      const status = readFileSync(`/proc/${initPid}/status`, 'utf8').split('\n').filter((l) => /^(CapEff|CapBnd|NoNewPrivs|Seccomp):/.test(l)).map((l) => l.replace(/\s+/g, ' '));
      assert.deepEqual(lines.slice(7, 11).map((l) => l.replace(/\s+/g, ' ')), status, `tty=${tty}: capabilities, no_new_privs, seccomp as the init's`);
      assert.ok(status.some((l) => l === 'Seccomp: 2'), 'seccomp filter on');
      assert.equal(lines[11], 'cgroup-same=yes');
      assert.equal(lines[12], '0', 'root inside, mapped');
    }
  });

  test('kill ends a running session; an exec into a stopped instance is refused', async () => {
    const s = await driver.exec(id, ['sleep', '300'], { tty: true });
    await sleep(200);
    s.kill();
    assert.equal(await s.exit, 137);
    const other = `exec-stopped-${process.pid}`;
    await driver.create(spec(other, 'acme'));
    try {
      await assert.rejects(driver.exec(other, ['true'], { tty: false }), /stopped/);
    } finally {
      await driver.delete(other);
    }
  });

  test('a command that does not exist fails with its message and a non-zero code, with and without a tty', async () => {
    for (const tty of [false, true]) {
      const s = await driver.exec(id, ['no-such-command'], { tty });
      const out = collect(s.stdout);
      const err = s.stderr ? collect(s.stderr) : out;
      s.stdin.end();
      assert.notEqual(await s.exit, 0);
      assert.match(err.text(), /no-such-command/);
    }
  });

  test('logs: history, tail, and a follower that sees new lines across a rotation', async () => {
    const all = collect(await driver.logs(id, { follow: false }));
    await sleep(50);
    assert.match(all.text(), /hello from the container\n/);
    assert.match(all.text(), /oops\n/);
    const tail = await driver.logs(id, { follow: false, tail: 1 });
    const tailed = collect(tail);
    await ended(tail);
    assert.equal(tailed.text(), 'oops\n');

    const follower = await driver.logs(id, { follow: true, tail: 0 });
    const followed = collect(follower);
    // Has the container's main process print a line, and waits until it has.
    const write = async (text: string) => {
      const r = await driver.run(id, ['sh', '-c', `echo ${text} > /tmp/say.new && mv /tmp/say.new /tmp/say && while [ -f /tmp/say ]; do sleep 0.05; done`]);
      assert.equal(r.exitCode, 0, r.stderr);
    };
    await write('line-one');
    await followed.until(/line-one\n/);
    // Rotate (copy, truncate) as the driver does, with a line written just before.
    await write('line-two');
    assert.ok(await rotateIfLarge(driver.logPath(id), 1, 3));
    await write('line-three');
    await followed.until(/line-three\n/);
    assert.equal(followed.text(), 'line-one\nline-two\nline-three\n');
    follower.destroy();
  });
});
