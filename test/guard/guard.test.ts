import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { ChecksumDb } from '../../src/guard/checksums.js';
import { Guard } from '../../src/guard/guard.js';
import { Hasher } from '../../src/guard/hasher.js';
import { FileInterceptor } from '../../src/guard/interceptors/fs.js';
import { loadDefaultRuleset } from '../../src/guard/rules.js';
import { tempLog } from '../audit/fixtures.js';
import { event, FakeTarget, MemoryAudit, recordingBus } from './fakes.js';
import { tempDir } from '../support/temp.js';

test('ingest only queues; evaluation runs later, off the caller; stats and alert queries', async () => {
  const target = new FakeTarget(), { bus, published } = recordingBus();
  const guard = new Guard({ ruleset: await loadDefaultRuleset(), target, audit: new MemoryAudit(), events: bus });
  await guard.start();
  guard.ingest(event('process.exec', { 'proc.name': 'sh', 'proc.pname': 'php-fpm', 'instance.role': 'web' }, { tenantId: 'a' }));
  guard.ingest(event('net.connect', { 'net.direction': 'out', 'net.dip': '10.0.0.9', 'net.dport': 6667 }, { tenantId: 'b', instanceId: 'i2' }));
  guard.ingest(event('file.write', { 'file.path': '/var/log/x' }));
  assert.equal(guard.stats().evaluated, 0, 'nothing evaluated on the ingest path');
  await guard.drained();
  assert.deepEqual(guard.stats(), { received: 3, aggregated: 0, dropped: 0, evaluated: 3, alerts: 2, waiting: 0 });
  assert.deepEqual(guard.alerts().map((a) => a.rule), ['Shell in web instance', 'Unexpected outbound connection']);
  assert.deepEqual(guard.alerts({ tenantId: 'b' }).map((a) => a.tenantId), ['b']);
  assert.deepEqual(guard.alerts({ priority: 'critical' }).map((a) => a.rule), ['Shell in web instance']);
  assert.deepEqual(guard.alerts({ since: Date.now() + 60_000 }), []);
  assert.deepEqual(target.calls, ['freeze i1']);
  assert.ok(published.some((e) => e.type === 'guard.alert' && e.tenantId === 'a'));
  await guard.stop();
  assert.deepEqual(target.calls, ['freeze i1', 'resume i1'], 'stopping the guard leaves nothing frozen');
});

test('a flood aggregates, and a full pool drops nothing silently: the drops are counted and alerted', async () => {
  const target = new FakeTarget();
  const guard = new Guard({ ruleset: await loadDefaultRuleset(), target, audit: new MemoryAudit(), events: recordingBus().bus, pool: { capacity: 100 } });
  for (let i = 0; i < 1000; i++) guard.ingest(event('file.write', { 'file.path': '/var/www/same' }));
  for (let i = 0; i < 300; i++) guard.ingest(event('file.write', { 'file.path': `/var/www/f${i}` }, { priority: 'info' }));
  await guard.drained();
  const s = guard.stats();
  assert.equal(s.received, 1300);
  assert.equal(s.aggregated, 999);
  assert.equal(s.dropped, 201);
  const [dropAlert] = guard.alerts({ priority: 'critical' });
  assert.equal(dropAlert!.rule, 'guard.pool.dropped');
  assert.equal(dropAlert!.count, 201);
  assert.equal(dropAlert!.fields['dropped.info'], 201);
  await guard.stop();
});

test('file tamper: a write to a baselined file raises integrity.mismatch within a bounded time; a benign write raises nothing', async (t) => {
  const dir = tempDir('guard-fs');
  const root = join(dir, 'rootfs');
  mkdirSync(join(root, 'var/www/html'), { recursive: true });
  mkdirSync(join(root, 'var/cache'), { recursive: true });
  writeFileSync(join(root, 'var/www/html/index.php'), '<?php echo "hello";');
  const hasher = new Hasher({ threads: 2 });
  const db = new Database(join(dir, 'guard.db'));
  const checksums = new ChecksumDb(db, { key: randomBytes(32), hasher });
  const audit = tempLog();
  t.after(async () => { await hasher.close(); db.close(); audit.cleanup(); });
  await checksums.baseline('instance:i1', root, { include: ['/var/www/**'] });

  const target = new FakeTarget();
  const guard = new Guard({ ruleset: await loadDefaultRuleset(), target, audit: audit.log, events: recordingBus().bus });
  await guard.addInterceptor(new FileInterceptor({
    root, tenantId: 't1', instanceId: 'i1', level: 'os', labels: { 'instance.role': 'web' },
    integrity: { checksums, scope: 'instance:i1' },
  }));
  await guard.start();
  await sleep(50);

  writeFileSync(join(root, 'var/cache/page.html'), 'cached');
  await sleep(300);
  await guard.drained();
  assert.deepEqual(guard.alerts(), [], 'a write outside the critical files raises nothing');

  const started = Date.now();
  writeFileSync(join(root, 'var/www/html/index.php'), '<?php system($_GET["c"]);');
  let mismatch;
  while (!(mismatch = guard.alerts().find((a) => a.rule === 'Integrity mismatch')) && Date.now() - started < 10_000) await sleep(5);
  assert.ok(mismatch, 'integrity mismatch alerted');
  // Found by the write itself, not by the scheduled re-verification (how fast: the guard-detect benchmark).
  assert.notEqual(mismatch.fields['integrity.source'], 'schedule');
  assert.equal(mismatch.fields['file.path'], '/var/www/html/index.php');
  assert.equal(mismatch.fields['integrity.status'], 'changed');
  await guard.drained();
  assert.deepEqual(target.calls, ['snapshot i1']);
  assert.equal(guard.alerts({ priority: 'critical' }).length, 1, 'one tamper, one alert');

  const records = audit.log.entries({ tenantId: 't1' });
  const alertRecord = records.find((r) => r.entry.action === 'guard.alert');
  assert.equal(alertRecord?.index, mismatch.auditIndex, 'the alert points at its audit entry');
  assert.equal((alertRecord!.entry.details as { rule: string }).rule, 'Integrity mismatch');
  assert.deepEqual(alertRecord!.entry.actor, { userId: null, name: 'guard', role: 'system' });
  assert.ok(records.some((r) => r.entry.action === 'guard.snapshot' && r.entry.result === 'ok'));
  await guard.stop();
});
