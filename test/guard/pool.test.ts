import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WarningPool } from '../../src/guard/pool.js';
import { event } from './fakes.js';

test('drains critical first, oldest first within a priority', () => {
  const pool = new WarningPool({ capacity: 10 });
  pool.record(event('a', { n: 1 }, { priority: 'info' }));
  pool.record(event('b', { n: 2 }, { priority: 'critical' }));
  pool.record(event('c', { n: 3 }));
  pool.record(event('d', { n: 4 }, { priority: 'critical' }));
  assert.deepEqual(pool.drain(3).map((w) => w.event.kind), ['b', 'd', 'c']);
  assert.deepEqual(pool.drain(10).map((w) => w.event.kind), ['a']);
  assert.equal(pool.waiting, 0);
});

test('aggregates identical warnings within the window into one with a count', () => {
  const pool = new WarningPool({ aggregateWindowMs: 1000, aggregateFields: { 'file.write': ['file.path'] } });
  const write = (path: string, time: number, op = 'write') => event('file.write', { 'file.path': path, 'file.op': op }, { time });
  assert.equal(pool.record(write('/a', 0)), 'queued');
  assert.equal(pool.record(write('/a', 10, 'rename')), 'aggregated', 'only the key fields count');
  assert.equal(pool.record(write('/b', 20)), 'queued');
  assert.equal(pool.record(write('/a', 2000)), 'queued', 'outside the window: a new warning');
  assert.equal(pool.record(event('file.write', { 'file.path': '/a' }, { time: 30, instanceId: 'i2' })), 'queued', 'another instance');
  const drained = pool.drain(10);
  assert.deepEqual(drained.map((w) => [w.event.fields['file.path'], w.count]), [['/a', 2], ['/b', 1], ['/a', 1], ['/a', 1]]);
  assert.equal(drained[0]!.lastTime, 10);
  assert.equal(pool.record(write('/a', 2001)), 'queued', 'a drained warning is not aggregated into');
  assert.deepEqual(pool.stats().aggregated, 1);
});

test('bounded: signals pressure, evicts less urgent for more urgent, counts every drop and reports them once', () => {
  const pool = new WarningPool({ capacity: 4, highWater: 0.75 });
  assert.equal(pool.record(event('x', { n: 1 }, { priority: 'info' })), 'queued');
  assert.equal(pool.record(event('x', { n: 2 }, { priority: 'info' })), 'queued');
  assert.equal(pool.record(event('x', { n: 3 }, { priority: 'info' })), 'pressure');
  assert.equal(pool.record(event('x', { n: 4 }, { priority: 'info' })), 'pressure');
  assert.equal(pool.record(event('x', { n: 5 }, { priority: 'info' })), 'dropped', 'same priority: the newcomer is dropped');
  assert.notEqual(pool.record(event('y', { n: 6 }, { priority: 'critical' })), 'dropped', 'critical evicts the newest info');
  assert.equal(pool.stats().dropped, 2);
  assert.deepEqual(pool.takeDropReport(), { total: 2, byPriority: { critical: 0, error: 0, warning: 0, notice: 0, info: 2 } });
  assert.equal(pool.takeDropReport(), null, 'reported once');
  assert.deepEqual(pool.drain(10).map((w) => w.event.fields.n), [6, 1, 2, 3]);
  assert.deepEqual(pool.stats(), { received: 6, aggregated: 0, dropped: 2, droppedByPriority: { critical: 0, error: 0, warning: 0, notice: 0, info: 2 }, waiting: 0, capacity: 4 });
});
