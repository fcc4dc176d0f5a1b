import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { KeyedMutex } from '../../src/core/keyed-mutex.js';

test('work on one key runs one at a time, in the order it was asked for', async () => {
  const locks = new KeyedMutex();
  const log: string[] = [];
  let active = 0;
  const work = (name: string, ms: number) =>
    locks.run('i-1', async () => {
      active++;
      assert.equal(active, 1, 'overlap on one key');
      log.push(`start ${name}`);
      await sleep(ms);
      log.push(`end ${name}`);
      active--;
      return name;
    });
  const results = await Promise.all([work('a', 15), work('b', 1), work('c', 5)]);
  assert.deepEqual(results, ['a', 'b', 'c']);
  assert.deepEqual(log, ['start a', 'end a', 'start b', 'end b', 'start c', 'end c']);
});

test('different keys run side by side', async () => {
  const locks = new KeyedMutex();
  let active = 0;
  let most = 0;
  const work = (key: string) =>
    locks.run(key, async () => {
      most = Math.max(most, ++active);
      await sleep(10);
      active--;
    });
  await Promise.all([work('a'), work('b'), work('c')]);
  assert.equal(most, 3);
});

test('a failure releases the lock and reaches only its own caller', async () => {
  const locks = new KeyedMutex();
  const failing = locks.run('k', async () => {
    throw new Error('driver exploded');
  });
  const throwingSync = locks.run('k', () => {
    throw new Error('thrown before any await');
  });
  const next = locks.run('k', async () => 'ran');
  await assert.rejects(failing, /driver exploded/);
  await assert.rejects(throwingSync, /thrown before any await/);
  assert.equal(await next, 'ran');
  assert.equal(locks.size, 0);
});

test('no entry is kept for an idle key', async () => {
  const locks = new KeyedMutex();
  let release!: () => void;
  const held = locks.run('busy', () => new Promise<void>((r) => (release = r)));
  const queued = locks.run('busy', async () => undefined);
  await Promise.all(Array.from({ length: 1000 }, (_, i) => locks.run(`i-${i}`, async () => i)));
  assert.equal(locks.size, 1, 'only the held key');
  release();
  await held;
  await queued;
  assert.equal(locks.size, 0);
});

test('a waiter does not start before the holder has finished, even when the holder resolves late', async () => {
  const locks = new KeyedMutex();
  const order: string[] = [];
  const first = locks.run('k', async () => {
    await sleep(5);
    order.push('first done');
  });
  await sleep(1);
  const second = locks.run('k', async () => {
    order.push('second starts');
  });
  await Promise.all([first, second]);
  assert.deepEqual(order, ['first done', 'second starts']);
});
