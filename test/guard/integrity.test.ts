/**
 * The integrity monitor with the real guard, checksum DB, hasher and inotify:
 * a write under a watched tree is reported at once with both hashes; the
 * schedule reports what changed while nobody watched; a docroot comes back
 * from its known-good copies; a forged DB is detected and never restored from;
 * the guard's self-check catches a modified file of a copy of dist/.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { cpSync, mkdirSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import Database from 'better-sqlite3';
import { ChecksumDb } from '../../src/guard/checksums.js';
import { Guard } from '../../src/guard/guard.js';
import { Hasher } from '../../src/guard/hasher.js';
import { IntegrityMonitor } from '../../src/guard/integrity.js';
import { KnownGoodStore } from '../../src/guard/recovery.js';
import { loadDefaultRuleset } from '../../src/guard/rules.js';
import type { GuardEvent } from '../../src/core/guard-event.js';
import { FakeTarget, MemoryAudit, recordingBus } from './fakes.js';
import { until } from '../support/until.js';
import { tempDir } from '../support/temp.js';

/** How long this file's checks wait, and how often they look. */
const WAIT = { ms: 3000, every: 10 };

const hasher = new Hasher({ threads: 2 });
after(() => hasher.close());
const tmp = (): string => tempDir('integrity');
const sha = (s: string): string => createHash('sha256').update(s).digest('hex');

async function setup() {
  const dir = tmp();
  const db = new Database(join(dir, 'db.sqlite'));
  const checksums = new ChecksumDb(db, { key: Buffer.alloc(32, 7), hasher });
  const target = new FakeTarget();
  const audit = new MemoryAudit();
  const guard = new Guard({ ruleset: await loadDefaultRuleset(), target, audit, events: recordingBus().bus, escalateAfter: 1000 });
  const seen: GuardEvent[] = [];
  const ingest = guard.ingest;
  const port = {
    ingest: (e: GuardEvent) => { seen.push(e); return ingest(e); },
    addInterceptor: (i: Parameters<Guard['addInterceptor']>[0]) => guard.addInterceptor(i),
    removeInterceptor: (id: string) => guard.removeInterceptor(id),
  };
  const monitor = new IntegrityMonitor({ guard: port, checksums, knownGood: new KnownGoodStore(join(dir, 'known-good')), verifyIntervalMs: 0 });
  await guard.start();
  const close = async () => { await monitor.stop(); await guard.stop(); db.close(); };
  return { dir, db, checksums, target, audit, guard, monitor, seen, close };
}

test('a write to a watched file is reported at once, naming the path and both hashes', async () => {
  const s = await setup();
  const root = join(s.dir, 'www');
  mkdirSync(join(root, 'css'), { recursive: true });
  writeFileSync(join(root, 'index.html'), 'clean');
  writeFileSync(join(root, 'css', 'site.css'), 'body{}');
  const summary = await s.monitor.watch({ scope: 'docroot:acme/www', root, tenantId: 't1', instanceId: null, level: 'env', keepCopies: true, labels: { 'integrity.recoverable': true } });
  assert.equal(summary.files, 2);
  writeFileSync(join(root, 'index.html'), 'defaced');
  const mismatch = await until(() => s.target.alerts.find((a) => a.kind === 'integrity.mismatch'), WAIT);
  assert.deepEqual(
    { path: mismatch.fields['file.path'], status: mismatch.fields['integrity.status'], expected: mismatch.fields['integrity.expected'], actual: mismatch.fields['integrity.actual'] },
    { path: '/index.html', status: 'changed', expected: sha('clean'), actual: sha('defaced') },
  );
  await until(() => s.target.calls.length > 0 ? true : undefined, WAIT);
  await s.guard.drained();
  const rules = s.target.alerts.map((a) => a.rule).sort();
  assert.deepEqual(rules, ['Integrity mismatch', 'Tampered content recovered']);
  assert.deepEqual(s.target.calls, ['recover docroot:acme/www'], 'a docroot without an instance is recovered by its scope');
  const recovered = s.audit.entries.find((e) => e.action === 'guard.recover')!;
  const alert = s.target.alerts.find((a) => a.rule === 'Tampered content recovered')!;
  assert.equal((recovered.details as { alertAuditIndex: number }).alertAuditIndex, alert.auditIndex, 'the action names its evidence');
  await s.close();
});

test('recover on a docroot puts back changed and removed files and deletes added ones, from the known-good copies', async () => {
  const s = await setup();
  const root = join(s.dir, 'site');
  mkdirSync(join(root, 'img'), { recursive: true });
  writeFileSync(join(root, 'index.html'), '<h1>clean</h1>');
  writeFileSync(join(root, 'img', 'logo.svg'), '<svg/>');
  await s.monitor.watch({ scope: 'docroot:acme/site', root, tenantId: 't1', instanceId: null, level: 'env', keepCopies: true });
  rmSync(root, { recursive: true }); // the known-good copies do not depend on the tree
  mkdirSync(root);
  writeFileSync(join(root, 'index.html'), '<h1>pwned</h1>');
  writeFileSync(join(root, 'shell.php'), '<?php system($_GET[1]);');
  const restored = await s.monitor.restore('docroot:acme/site');
  assert.deepEqual(restored.restored.sort(), ['img', 'img/logo.svg', 'index.html']);
  assert.deepEqual(restored.removed, ['shell.php']);
  assert.equal(readFileSync(join(root, 'index.html'), 'utf8'), '<h1>clean</h1>');
  assert.equal(readFileSync(join(root, 'img', 'logo.svg'), 'utf8'), '<svg/>');
  assert.equal((await s.monitor.verify('docroot:acme/site')).ok, true);
  await s.close();
});

test('the schedule reports what changed while nothing watched: added, removed and changed, each once', async () => {
  const s = await setup();
  const root = join(s.dir, 'app');
  mkdirSync(root);
  writeFileSync(join(root, 'a.js'), 'a');
  writeFileSync(join(root, 'b.js'), 'b');
  await s.monitor.watch({ scope: 'instance:i9', root, tenantId: 't1', instanceId: 'i9', level: 'os' });
  await s.guard.removeInterceptor('fs:instance:i9'); // inotify down: only the schedule can see it
  writeFileSync(join(root, 'a.js'), 'A');
  unlinkSync(join(root, 'b.js'));
  writeFileSync(join(root, 'c.js'), 'c');
  const report = await s.monitor.verify('instance:i9');
  assert.deepEqual({ changed: report.changed, added: report.added, removed: report.removed },
    { changed: [{ path: 'a.js', expected: sha('a'), actual: sha('A'), changes: ['ctime', 'content'] }], added: ['c.js'], removed: ['b.js'] });
  const found = () => s.seen.filter((e) => e.kind === 'integrity.mismatch').map((e) => `${e.fields['integrity.status']} ${e.fields['file.path']}`).sort();
  assert.deepEqual(found(), ['added /c.js', 'changed /a.js', 'removed /b.js']);
  await s.monitor.verify('instance:i9');
  assert.equal(found().length, 3, 'a finding already reported is not reported again');
  await s.close();
});

test('a forged checksum DB is detected, alerted, and never restored from', async () => {
  const s = await setup();
  const root = join(s.dir, 'docs');
  mkdirSync(root);
  writeFileSync(join(root, 'index.html'), 'clean');
  await s.monitor.watch({ scope: 'docroot:acme/docs', root, tenantId: 't1', instanceId: null, level: 'env', keepCopies: true });
  // The attacker defaces the page and rewrites the DB row to the defaced hash, so the change would look expected.
  writeFileSync(join(root, 'index.html'), 'defaced');
  s.db.prepare('UPDATE guard_checksums SET hash = ? WHERE scope = ? AND path = ?').run(sha('defaced'), 'docroot:acme/docs', 'index.html');
  const report = await s.monitor.verify('docroot:acme/docs');
  assert.deepEqual(report.tampered.rows, ['index.html']);
  await assert.rejects(s.monitor.restore('docroot:acme/docs'), /not authentic/);
  await s.guard.drained();
  assert.ok(s.target.alerts.some((a) => a.rule === 'Checksum DB tampered' && a.fields['integrity.what'] === 'row'));
  // Deleting a row instead breaks the baseline's own signature.
  s.db.prepare('DELETE FROM guard_checksums WHERE scope = ?').run('docroot:acme/docs');
  assert.equal((await s.checksums.verify('docroot:acme/docs')).tampered.baseline, true);
  await s.close();
});

test('self-check: a modified file in a copy of dist/ raises the critical "Strata files changed" alert', async () => {
  const s = await setup();
  const install = join(s.dir, 'install');
  cpSync(new URL('../../src/guard', import.meta.url), join(install, 'dist', 'src', 'guard'), { recursive: true });
  mkdirSync(join(install, 'rules'));
  writeFileSync(join(install, 'rules', 'x.yaml'), 'rules: []\n');
  await s.monitor.watch({ scope: 'strata:self', root: install, include: ['/dist/**', '/rules/**'], dirs: ['dist', 'rules', 'bin'], tenantId: null, instanceId: null, level: 'host' });
  writeFileSync(join(install, 'dist', 'src', 'guard', 'actuator.js'), '// the guard does nothing now\n', { flag: 'a' });
  const alert = await until(() => s.target.alerts.find((a) => a.rule === 'Strata files changed'), WAIT);
  assert.equal(alert.priority, 'critical');
  assert.equal(alert.fields['file.path'], '/dist/src/guard/actuator.js');
  assert.equal(alert.action, 'notify');
  await s.close();
});
