/**
 * The driver conformance suite: every level driver must pass it, so the control
 * plane can treat all levels alike (as Hono's routers share `common.case.test.ts`).
 *
 *   driverConformance('os.runc', async () => new RuncDriver(...), { spec: (id) => ({ ... }) });
 *
 * Optional operations are checked where the driver lists them in `supports`:
 * pause/resume, snapshot/restore, clone, move (between two instances of the one
 * driver), logs and exec (an exec-capable level's spec must have `echo`).
 * Listed or not, the driver must say so truthfully: the optional methods exist
 * exactly for the operations it lists, and an operation it does not list but
 * must implement (pause, resume, snapshot, restore) is refused with
 * STRATA_ERR_UNSUPPORTED.
 *
 * One driver serves the whole suite: it is provisioned once (and the suite skipped
 * when provision says the level is unavailable here), each test works on its own
 * instance ids, and the suite deletes every instance it made and cleans the
 * driver up at the end, even after a failure.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { Readable } from 'node:stream';
import type { DriverAvailability, DriverOperation, InstanceSpec, LevelDriver } from '../../src/levels/driver.js';
import { isStrataError } from '../../src/core/errors.js';
import { isLevel } from '../../src/levels/ids.js';

export interface ConformanceOptions {
  /** A spec the driver can really create (image, kernel …); default: no source, small limits, no config. */
  spec?: (id: string, level: LevelDriver['level']) => InstanceSpec;
  /** Per-test timeout; VMs under TCG need seconds. Default 30 s. */
  timeoutMs?: number;
  /** Grace passed to stop(). Default 2 s. */
  graceMs?: number;
  /**
   * Resolves once a started instance is ready to be cloned or moved (a VM's
   * guest has booted and serves: its identity is only changed by the booted
   * guest). Default: at once.
   */
  ready?: (driver: LevelDriver, id: string) => Promise<void>;
}

const OPTIONAL_OPERATIONS: readonly DriverOperation[] = ['pause', 'resume', 'snapshot', 'restore', 'clone', 'move', 'logs', 'exec', 'console'];

/** The optional methods each operation stands for: a driver has them exactly when it lists the operation. */
const OPTIONAL_METHODS: Partial<Record<DriverOperation, ReadonlyArray<keyof LevelDriver>>> = {
  clone: ['clone'], move: ['moveIn', 'moveOut'], logs: ['logs'], exec: ['exec'], console: ['console'],
};

/** All a stream gives until it ends. */
const textOf = async (stream: Readable): Promise<string> => {
  let text = '';
  for await (const chunk of stream) text += String(chunk);
  return text;
};

const defaultSpec = (id: string, level: LevelDriver['level']): InstanceSpec => ({
  id, tenantId: 'conformance', name: id, level, source: null, limits: { vcpus: 1, memoryMiB: 128, diskMiB: 256 }, config: {},
});

const rejectsWithCode = (promise: Promise<unknown>, code: string): Promise<void> =>
  assert.rejects(promise, (e: unknown) => {
    assert.ok(isStrataError(e), `expected a StrataError ${code}, got ${String(e)}`);
    assert.equal(e.code, code);
    return true;
  });

export function driverConformance(name: string, makeDriver: () => Promise<LevelDriver>, opts: ConformanceOptions = {}): void {
  const makeSpec = opts.spec ?? defaultSpec;
  const graceMs = opts.graceMs ?? 2_000;
  const timeout = opts.timeoutMs ?? 30_000;
  const ready = opts.ready ?? (async () => undefined);

  describe(`${name}: driver conformance`, () => {
    let driver: LevelDriver;
    let availability: DriverAvailability;
    let unavailable: string | false = false;
    const made = new Set<string>();

    /** A fresh instance id for one test, deleted at the end of the suite whatever happens. */
    const newId = (): string => {
      const id = `conf-${randomUUID().slice(0, 8)}`;
      made.add(id);
      return id;
    };
    const create = async (): Promise<string> => {
      const id = newId();
      await driver.create(makeSpec(id, driver.level));
      return id;
    };
    const stateOf = async (id: string): Promise<string | null> => (await driver.inspect(id))?.state ?? null;
    /** Registers a test that is skipped when the driver is unavailable here, or when `needs` is not supported. */
    const check = (title: string, fn: () => Promise<void>, needs: DriverOperation[] = []): void => {
      test(title, { timeout }, async (t) => {
        if (unavailable !== false) return t.skip(`unavailable: ${unavailable}`);
        const missing = needs.filter((op) => !driver.supports.has(op));
        if (missing.length > 0) return t.skip(`driver does not support ${missing.join(', ')}`);
        await fn();
      });
    };

    before(async () => {
      driver = await makeDriver();
      availability = await driver.provision();
      if (!availability.available) unavailable = availability.reason;
    });

    after(async () => {
      if (!driver) return;
      for (const id of made) {
        const seen = await driver.inspect(id).catch(() => null);
        if (seen && (seen.state === 'running' || seen.state === 'paused')) await driver.stop(id, { graceMs }).catch(() => undefined);
        await driver.delete(id).catch(() => undefined);
      }
      await driver.cleanup();
    });

    test('provision reports availability with a reason; id and level are well-formed', { timeout }, () => {
      assert.equal(typeof availability.available, 'boolean');
      assert.ok(typeof availability.reason === 'string' && availability.reason.length > 0, 'a reason, also when available');
      assert.match(driver.id, /^[a-z]+\.[a-z0-9-]+$/);
      assert.ok(isLevel(driver.level), `unknown level ${driver.level}`);
      for (const op of driver.supports) assert.ok(OPTIONAL_OPERATIONS.includes(op), `unknown operation ${op}`);
    });

    check('inspect of an unknown id is null', async () => {
      assert.equal(await driver.inspect(`conf-unknown-${randomUUID().slice(0, 8)}`), null);
    });

    check('create leaves the instance stopped', async () => {
      const id = await create();
      assert.equal(await stateOf(id), 'stopped');
    });

    check('start makes it running; stop makes it stopped; it starts again', async () => {
      const id = await create();
      await driver.start(id);
      assert.equal(await stateOf(id), 'running');
      await driver.stop(id, { graceMs });
      assert.equal(await stateOf(id), 'stopped');
      await driver.start(id);
      assert.equal(await stateOf(id), 'running');
      await driver.stop(id, { graceMs });
    });

    check('pause makes a running instance paused; resume makes it running', async () => {
      const id = await create();
      await driver.start(id);
      await driver.pause(id);
      assert.equal(await stateOf(id), 'paused');
      await driver.resume(id);
      assert.equal(await stateOf(id), 'running');
      await driver.stop(id, { graceMs });
    }, ['pause', 'resume']);

    check('stop from paused makes it stopped', async () => {
      const id = await create();
      await driver.start(id);
      await driver.pause(id);
      await driver.stop(id, { graceMs });
      assert.equal(await stateOf(id), 'stopped');
    }, ['pause']);

    check('snapshot reports size and digest; restore leaves the instance stopped', async () => {
      const id = await create();
      await driver.start(id);
      const snapshotId = `snap-${randomUUID().slice(0, 8)}`;
      const result = await driver.snapshot(id, snapshotId);
      assert.ok(Number.isInteger(result.sizeBytes) && result.sizeBytes >= 0, `sizeBytes ${result.sizeBytes}`);
      assert.ok(typeof result.digest === 'string' && result.digest.length > 0, 'digest');
      await driver.stop(id, { graceMs });
      await driver.restore(id, snapshotId);
      assert.equal(await stateOf(id), 'stopped');
      await driver.start(id);
      assert.equal(await stateOf(id), 'running');
      await driver.stop(id, { graceMs });
    }, ['snapshot', 'restore']);

    check('reconfigure, where the driver has it: each changed field answered; a stopped instance takes it at its next start and runs', async () => {
      if (!driver.reconfigure) return;
      const id = await create();
      const base = makeSpec(id, driver.level);
      const more = { ...base, limits: { ...base.limits, memoryMiB: base.limits.memoryMiB + 64 } };
      assert.deepEqual(await driver.reconfigure(more, ['limits.memoryMiB']), { 'limits.memoryMiB': 'next-restart' });
      await driver.start(id);
      assert.equal(await stateOf(id), 'running');
      const answer = await driver.reconfigure(base, ['limits.memoryMiB']);
      assert.deepEqual(Object.keys(answer), ['limits.memoryMiB']);
      assert.ok(answer['limits.memoryMiB'] === 'live' || answer['limits.memoryMiB'] === 'next-restart', JSON.stringify(answer));
      assert.equal(await stateOf(id), 'running', 'a change never stops the instance');
      await driver.stop(id, { graceMs });
      await driver.start(id);
      assert.equal(await stateOf(id), 'running');
      await driver.stop(id, { graceMs });
    });

    check('delete removes the instance: inspect is null, list no longer shows it', async () => {
      const id = await create();
      await driver.delete(id);
      assert.equal(await driver.inspect(id), null);
      assert.ok(!(await driver.list()).some((o) => o.id === id));
    });

    check('delete is idempotent, also for an id never created', async () => {
      const id = await create();
      await driver.delete(id);
      await driver.delete(id);
      await driver.delete(newId());
    });

    check('list shows every instance with its state', async () => {
      const stopped = await create();
      const running = await create();
      await driver.start(running);
      const listed = new Map((await driver.list()).map((o) => [o.id, o.state]));
      assert.equal(listed.get(stopped), 'stopped');
      assert.equal(listed.get(running), 'running');
      await driver.stop(running, { graceMs });
    });

    check('clone makes a new stopped instance from a snapshot, which starts beside its source', async () => {
      const source = await create();
      await driver.start(source);
      await ready(driver, source);
      const snapshotId = `snap-${randomUUID().slice(0, 8)}`;
      await driver.snapshot(source, snapshotId);
      const copy = newId();
      await driver.clone!(makeSpec(copy, driver.level), { instanceId: source, snapshotId });
      assert.equal(await stateOf(copy), 'stopped');
      assert.equal(await stateOf(source), 'running', 'the source runs on');
      await driver.start(copy);
      assert.equal(await stateOf(copy), 'running');
      const listed = new Map((await driver.list()).map((o) => [o.id, o.state]));
      assert.equal(listed.get(source), 'running');
      assert.equal(listed.get(copy), 'running');
      await driver.stop(copy, { graceMs });
      await driver.stop(source, { graceMs });
    }, ['snapshot', 'clone']);

    check('move hands a running instance over to a new one: it runs there and is gone here', async () => {
      const source = await create();
      await driver.start(source);
      await ready(driver, source);
      const target = newId();
      await driver.moveIn!(makeSpec(target, driver.level), (socket) => driver.moveOut!(source, socket));
      assert.equal(await stateOf(target), 'running');
      assert.equal(await driver.inspect(source), null, 'the sender deleted its side');
      await driver.stop(target, { graceMs });
    }, ['move']);

    check('logs of a running instance is a stream that ends when not following; of an unknown id, STRATA_ERR_NOT_FOUND', async () => {
      const id = await create();
      await driver.start(id);
      assert.equal(typeof (await textOf(await driver.logs!(id, { follow: false }))), 'string');
      assert.equal(typeof (await textOf(await driver.logs!(id, { follow: false, tail: 1 }))), 'string');
      await rejectsWithCode(driver.logs!(`conf-unknown-${randomUUID().slice(0, 8)}`, { follow: false }), 'STRATA_ERR_NOT_FOUND');
      await driver.stop(id, { graceMs });
    }, ['logs']);

    check('exec runs a command in a running instance (output, exit code 0); in a stopped one it is refused', async () => {
      const id = await create();
      await rejectsWithCode(driver.exec!(id, ['echo', 'conformance'], { tty: false }), 'STRATA_ERR_INVALID_STATE_TRANSITION');
      await driver.start(id);
      const session = await driver.exec!(id, ['echo', 'conformance'], { tty: false });
      session.stdin.end();
      const [out, code] = await Promise.all([textOf(session.stdout), session.exit]);
      assert.equal(out, 'conformance\n');
      assert.equal(code, 0);
      await driver.stop(id, { graceMs });
    }, ['exec']);

    check('the optional methods are there exactly for the operations the driver lists', async () => {
      for (const [op, methods] of Object.entries(OPTIONAL_METHODS) as Array<[DriverOperation, Array<keyof LevelDriver>]>) {
        for (const method of methods) {
          assert.equal(typeof driver[method] === 'function', driver.supports.has(op), `${method}() ${driver.supports.has(op) ? 'missing though' : 'present though not'} listed as '${op}'`);
        }
      }
    });

    check('operations the driver does not support throw STRATA_ERR_UNSUPPORTED', async () => {
      // The optional methods are absent when not listed (checked above): the control plane refuses those calls itself.
      const unsupported = OPTIONAL_OPERATIONS.filter((op) => !(op in OPTIONAL_METHODS) && !driver.supports.has(op));
      if (unsupported.length === 0) return;
      const id = await create();
      await driver.start(id);
      for (const op of unsupported) {
        const call =
          op === 'pause' ? driver.pause(id)
          : op === 'resume' ? driver.resume(id)
          : op === 'snapshot' ? driver.snapshot(id, `snap-${randomUUID().slice(0, 8)}`)
          : driver.restore(id, `snap-${randomUUID().slice(0, 8)}`);
        await rejectsWithCode(call, 'STRATA_ERR_UNSUPPORTED');
      }
      await driver.stop(id, { graceMs });
    });
  });
}
