/**
 * `logStream` on plain files (no root): the history across generations, the
 * last N lines across a generation boundary, and a follower that loses nothing
 * across both rotation styles — copy-then-truncate (os) and rename (env) — and
 * ends when its source is gone.
 */
import assert from 'node:assert/strict';
import { appendFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { test } from 'node:test';
import { lastLines, logStream } from '../../../src/levels/log-stream.js';
import { rotateIfLarge } from '../../../src/levels/os/logs.js';
import { until } from '../../support/until.js';
import { tempDir } from '../../support/temp.js';

const dir = tempDir('log-stream');

const text = async (s: Readable): Promise<string> => {
  let out = '';
  for await (const c of s) out += (c as Buffer).toString();
  return out;
};

/** Waits until what `get` returns matches `re`. */
const matches = (get: () => string, re: RegExp): Promise<boolean> =>
  until(() => re.test(get()), { ms: 5_000, every: 10, what: () => `${re} in ${JSON.stringify(get())}` });

test('history is every generation, oldest first; tail counts lines across generations', async () => {
  const path = join(dir, 'a.log');
  writeFileSync(`${path}.2`, 'one\ntwo\n');
  writeFileSync(`${path}.1`, 'three\n');
  writeFileSync(path, 'four\nfive');
  assert.equal(await text(logStream({ path, keep: 3, follow: false })), 'one\ntwo\nthree\nfour\nfive');
  assert.equal(await text(logStream({ path, keep: 3, follow: false, tail: 3 })), 'three\nfour\nfive');
  assert.equal(lastLines([`${path}.2`, `${path}.1`, path], 4).toString(), 'two\nthree\nfour\nfive');
  assert.equal(lastLines([`${path}.1`], 1).toString(), 'three\n');
  assert.equal(lastLines([`${path}.1`], 0).toString(), '');
  assert.equal(lastLines([join(dir, 'none')], 5).toString(), '');
});

test('a follower survives copy-then-truncate and rename rotations and ends when the source is gone', async () => {
  const path = join(dir, 'b.log');
  writeFileSync(path, 'old\n');
  let gone = false;
  const s = logStream({ path, keep: 2, follow: true, tail: 0, gone: () => gone, pollMs: 20 });
  let seen = '';
  s.on('data', (c: Buffer) => (seen += c.toString()));
  const ended = new Promise((r) => s.on('end', r));
  appendFileSync(path, 'a\n');
  await matches(() => seen, /a\n/);
  // Written, then rotated by copy + truncate before the follower looked: it is read from the copy.
  appendFileSync(path, 'b\n');
  assert.ok(await rotateIfLarge(path, 1, 2));
  appendFileSync(path, 'c\n');
  await matches(() => seen, /c\n/);
  // Written, then renamed away and a new file started.
  appendFileSync(path, 'd\n');
  renameSync(`${path}.1`, `${path}.2`);
  renameSync(path, `${path}.1`);
  writeFileSync(path, 'e\n');
  await matches(() => seen, /e\n/);
  assert.equal(seen, 'a\nb\nc\nd\ne\n');
  gone = true;
  await ended;
});
