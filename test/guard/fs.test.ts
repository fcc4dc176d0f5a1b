import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { ChecksumDb } from '../../src/guard/checksums.js';
import type { GuardEvent } from '../../src/core/guard-event.js';
import { Hasher } from '../../src/guard/hasher.js';
import { FileInterceptor } from '../../src/guard/interceptors/fs.js';
import { until } from '../support/until.js';
import { tempDir } from '../support/temp.js';

/** How long this file's checks wait, and how often they look. */
const WAIT = { ms: 2000, every: 5 };

test('file interceptor: writes, renames, removals and new directories, each checked against the baseline', async (t) => {
  const dir = tempDir('guard-fsi');
  const root = join(dir, 'rootfs');
  mkdirSync(join(root, 'usr/bin'), { recursive: true });
  writeFileSync(join(root, 'usr/bin/ls'), 'ls');
  writeFileSync(join(root, 'usr/bin/cat'), 'cat');
  const hasher = new Hasher({ threads: 1 });
  const db = new Database(join(dir, 'g.db'));
  const checksums = new ChecksumDb(db, { key: randomBytes(32), hasher });
  await checksums.baseline('instance:i1', root, { include: ['/usr/**'] });
  const events: GuardEvent[] = [];
  const interceptor = new FileInterceptor({ root, tenantId: 't1', instanceId: 'i1', level: 'os', labels: { 'instance.role': 'web' }, integrity: { checksums, scope: 'instance:i1' } });
  t.after(async () => { await interceptor.stop(); await hasher.close(); db.close(); });
  await interceptor.start((e) => events.push(e));
  const mismatches = () => events.filter((e) => e.kind === 'integrity.mismatch').map((e) => `${e.fields['file.path']} ${e.fields['integrity.status']}`);

  writeFileSync(join(root, 'usr/bin/ls'), 'evil ls');
  await until(() => mismatches().includes('/usr/bin/ls changed'), WAIT);
  const write = events.find((e) => e.kind === 'file.write')!;
  assert.deepEqual({ ...write, time: 0 }, { time: 0, tenantId: 't1', instanceId: 'i1', level: 'os', kind: 'file.write', priority: 'notice', fields: { 'instance.role': 'web', 'file.path': '/usr/bin/ls', 'file.op': 'write' } });

  writeFileSync(join(dir, 'cat.new'), 'evil cat');
  renameSync(join(dir, 'cat.new'), join(root, 'usr/bin/cat'));
  await until(() => mismatches().includes('/usr/bin/cat changed'), WAIT);

  mkdirSync(join(root, 'usr/lib/x'), { recursive: true });
  writeFileSync(join(root, 'usr/lib/x/rootkit.so'), 'so');
  await until(() => mismatches().includes('/usr/lib/x/rootkit.so added'), WAIT);
  writeFileSync(join(root, 'usr/lib/x/rootkit.so'), 'so2');
  await until(() => events.filter((e) => e.fields['file.path'] === '/usr/lib/x/rootkit.so' && e.kind === 'file.write').length >= 2, WAIT);

  unlinkSync(join(root, 'usr/bin/ls'));
  await until(() => mismatches().includes('/usr/bin/ls removed'), WAIT);

  mkdirSync(join(root, 'tmp'));
  writeFileSync(join(root, 'tmp/scratch'), 'benign');
  await until(() => events.some((e) => e.fields['file.path'] === '/tmp/scratch'), WAIT);
  await sleep(100);
  assert.equal(mismatches().filter((m) => m.startsWith('/tmp')).length, 0, 'an untracked path is no mismatch');
  assert.equal(mismatches().filter((m) => m === '/usr/bin/ls changed').length, 1, 'one tamper, one mismatch');
});
