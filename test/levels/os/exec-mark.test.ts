/**
 * An exec session's mark in the kernel (ExecOptions.mark), on this machine's
 * kernel: the runner reports its audit session id before anything runs in the
 * container; the process runc starts and every descendant carry that id, with
 * and without a terminal; the workload does not; a process of the container
 * that opens an audit session of its own gets another id; a mark that is
 * refused stops the session before its command ran.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import type { ExecMark, ExecSession } from '../../../src/levels/driver.js';
import { OsDriver } from '../../../src/levels/os/driver.js';
import { builtinImages, claimSlot, leftovers, nothingLeft, spec, testDriverOptions } from './helpers.js';

const options = testDriverOptions(await claimSlot());

const text = (s: Readable): Promise<string> => new Promise((resolve) => {
  let out = '';
  s.on('data', (c: Buffer) => (out += c.toString()));
  s.on('end', () => resolve(out));
});

/** Ids of the session, its child and its grandchild, as each reads its own /proc/self/sessionid. */
const LINEAGE = 'cat /proc/self/sessionid; echo; sh -c "cat /proc/self/sessionid; echo; sh -c \'cat /proc/self/sessionid\'"; echo';

describe('os exec: the session is marked in the kernel before it runs', () => {
  let driver: OsDriver;
  let id: string;
  let initPid: number;

  before(async () => {
    await builtinImages();
    driver = new OsDriver(options);
    const availability = await driver.provision();
    assert.ok(availability.available, availability.reason);
    id = `mark-${process.pid}`;
    await driver.create(spec(id, 'acme', { config: { args: ['sh', '-c', 'exec sleep 3600'] } }));
    await driver.start(id);
    initPid = (await driver.inspect(id))?.info?.pid as number;
  });

  after(async () => {
    await driver.stop(id, { graceMs: 0 }).catch(() => undefined);
    await driver.delete(id).catch(() => undefined);
    await driver.cleanup();
    const left = await leftovers(options);
    assert.ok(nothingLeft(left), JSON.stringify(left));
  });

  for (const tty of [false, true]) {
    test(`${tty ? 'with' : 'without'} a tty: the command and its descendants carry the id the runner reported; the workload does not`, async () => {
      const marks: ExecMark[] = [];
      let ranBeforeMark = false;
      const s: ExecSession = await driver.exec(id, ['sh', '-c', `${LINEAGE}; touch /tmp/ran`], {
        tty,
        mark: async (m) => {
          // Nothing of the session has run yet: the runner waits for this answer.
          ranBeforeMark = (await driver.run(id, ['sh', '-c', 'test -e /tmp/ran && echo yes || echo no'])).stdout.trim() === 'yes';
          marks.push(m);
        },
      });
      const out = text(s.stdout);
      assert.equal(await s.exit, 0);
      assert.equal(marks.length, 1);
      assert.equal(ranBeforeMark, false, 'the command ran before the mark was bound');
      const ids = (await out).split(/\s+/).filter(Boolean).map(Number);
      assert.deepEqual(ids, [marks[0]!.execId, marks[0]!.execId, marks[0]!.execId], await out);
      const workload = Number(readFileSync(`/proc/${initPid}/sessionid`, 'utf8'));
      assert.notEqual(workload, marks[0]!.execId);
      await driver.run(id, ['rm', '-f', '/tmp/ran']);
    });
  }

  test('a process in the container that opens an audit session of its own gets a fresh id, never the session’s', async () => {
    const marks: ExecMark[] = [];
    const s = await driver.exec(id, ['sleep', '30'], { tty: false, mark: (m) => { marks.push(m); } });
    try {
      // The workload's side (a runc exec the daemon did not mark): write a loginuid, then read the id the kernel gave.
      const forged = await driver.run(id, ['sh', '-c', `echo 0 > /proc/self/loginuid; cat /proc/self/sessionid`]);
      const got = Number(forged.stdout.trim());
      assert.ok(got > 0 && got !== 0xffff_ffff, `the write succeeded: ${JSON.stringify(forged)}`);
      assert.notEqual(got, marks[0]!.execId);
      // And the session's own process cannot leave it: its loginuid is set, changing it needs CAP_AUDIT_CONTROL on the host.
      const inside = await driver.exec(id, ['sh', '-c', 'echo 5 > /proc/self/loginuid 2>/dev/null; cat /proc/self/sessionid'], { tty: false, mark: (m) => { marks.push(m); } });
      const stuck = text(inside.stdout);
      await inside.exit;
      assert.equal(Number((await stuck).trim()), marks[1]!.execId);
    } finally {
      s.kill();
      await s.exit;
    }
  });

  test('a mark that is refused ends the session before its command ran', async () => {
    await assert.rejects(driver.exec(id, ['touch', '/tmp/refused'], { tty: false, mark: () => { throw new Error('already bound'); } }), /already bound/);
    const r = await driver.run(id, ['sh', '-c', 'test -e /tmp/refused && echo ran || echo not-ran']);
    assert.equal(r.stdout.trim(), 'not-ran');
  });
});
