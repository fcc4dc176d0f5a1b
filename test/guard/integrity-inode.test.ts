/**
 * File integrity by inode, with the real guard, checksum DB, hasher and
 * watches, and a target whose `recover` restores the docroot as the daemon's
 * does: each way around a path-and-hash baseline — a write through a hard link
 * made outside the tree, chmod/chown, new (hidden) directories, swapped
 * symlinks, a change put back at once — raises its alert and is undone by
 * recovery, after which the tree verifies clean; what operators really do
 * beside a watched tree raises nothing.
 */
import assert from 'node:assert/strict';
import {
  chmodSync, chownSync, linkSync, lstatSync, mkdirSync, readFileSync, readlinkSync, renameSync, statSync, symlinkSync, unlinkSync, writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import type { RecoverySubject } from '../../src/guard/actuator.js';
import { ChecksumDb } from '../../src/guard/checksums.js';
import type { GuardEvent } from '../../src/core/guard-event.js';
import { Guard } from '../../src/guard/guard.js';
import { Hasher } from '../../src/guard/hasher.js';
import { IntegrityMonitor } from '../../src/guard/integrity.js';
import { KnownGoodStore } from '../../src/guard/recovery.js';
import { loadDefaultRuleset } from '../../src/guard/rules.js';
import { FakeTarget, MemoryAudit, recordingBus } from './fakes.js';
import { tempDir } from '../support/temp.js';

const hasher = new Hasher({ threads: 2 });
after(() => hasher.close());

/** Recovers a docroot the way the daemon's target does: the monitor's restore. */
class RestoringTarget extends FakeTarget {
  monitor: IntegrityMonitor | undefined;
  readonly restores: Record<string, unknown>[] = [];
  override async recover(s: RecoverySubject): Promise<Record<string, unknown>> {
    await super.recover(s);
    const r: Record<string, unknown> = { ...(await this.monitor!.restore(s.scope!)) };
    this.restores.push(r);
    return r;
  }
}

const SCOPE = 'docroot:acme/www';

/** A docroot (index.html, css/site.css, a symlink latest.html → index.html) watched with known-good copies. */
async function setup(opts: { sweepIntervalMs?: number } = {}) {
  const dir = tempDir('inode');
  const root = join(dir, 'www');
  mkdirSync(join(root, 'css'), { recursive: true });
  writeFileSync(join(root, 'index.html'), '<h1>clean</h1>');
  writeFileSync(join(root, 'css', 'site.css'), 'body{}');
  symlinkSync('index.html', join(root, 'latest.html'));
  const outside = join(dir, 'outside');
  mkdirSync(outside);
  const db = new Database(join(dir, 'db.sqlite'));
  const checksums = new ChecksumDb(db, { key: Buffer.alloc(32, 9), hasher });
  const target = new RestoringTarget();
  const guard = new Guard({ ruleset: await loadDefaultRuleset(), target, audit: new MemoryAudit(), events: recordingBus().bus, escalateAfter: 1000 });
  const seen: GuardEvent[] = [];
  const monitor = new IntegrityMonitor({
    guard: { ingest: (e) => { seen.push(e); return guard.ingest(e); }, addInterceptor: (i) => guard.addInterceptor(i), removeInterceptor: (id) => guard.removeInterceptor(id) },
    checksums, knownGood: new KnownGoodStore(join(dir, 'known-good')), verifyIntervalMs: 0, sweepIntervalMs: opts.sweepIntervalMs ?? 0,
  });
  target.monitor = monitor;
  await guard.start();
  monitor.start();
  await monitor.watch({ scope: SCOPE, root, tenantId: 't1', instanceId: null, level: 'env', keepCopies: true, labels: { 'integrity.recoverable': true } });
  const mismatch = (path: string) => target.alerts.find((a) => a.rule === 'Tampered content recovered' && a.fields['file.path'] === path);
  /** Waits for the alert on `path`, then for the recovery it starts to finish. */
  const recovered = async (path: string) => {
    const alert = await until(() => mismatch(path), `the alert on ${path}`);
    await until(() => target.restores.length > 0 || undefined, 'the recovery');
    await guard.drained();
    return alert;
  };
  const close = async () => { await monitor.stop(); await guard.stop(); db.close(); };
  return { dir, root, outside, checksums, target, guard, monitor, seen, mismatch, recovered, close };
}

/** Polls with a generous bound: the test asserts that the alert comes, not how fast. */
async function until<T>(what: () => T | undefined, label: string, ms = 15_000): Promise<T> {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(10)) {
    const v = what();
    if (v) return v;
  }
  throw new Error(`timed out waiting for ${label}`);
}

async function whole(s: Awaited<ReturnType<typeof setup>>): Promise<void> {
  const report = await s.monitor.verify(SCOPE);
  assert.deepEqual({ added: report.added, removed: report.removed, changed: report.changed, ok: report.ok }, { added: [], removed: [], changed: [], ok: true });
}

test('a write through a hard link made outside the tree is alerted, and recovery cuts the link and puts the content back', async () => {
  const s = await setup();
  const link = join(s.outside, 'innocent.html');
  linkSync(join(s.root, 'index.html'), link);
  writeFileSync(link, '<h1>defaced through a link</h1>'); // same inode: no watched directory sees this write
  const alert = await s.recovered('/index.html');
  assert.match(String(alert.fields['integrity.changes']), /links/);
  assert.equal(readFileSync(join(s.root, 'index.html'), 'utf8'), '<h1>clean</h1>');
  assert.equal(statSync(join(s.root, 'index.html')).nlink, 1, 'the docroot file is its own inode again');
  assert.notEqual(statSync(link).ino, statSync(join(s.root, 'index.html')).ino);
  await whole(s);
  await s.close();
});

test('a file linked from outside before the baseline is a finding from the start', async () => {
  const dir = tempDir('inode-pre');
  const root = join(dir, 'www');
  mkdirSync(root);
  writeFileSync(join(root, 'index.html'), 'clean');
  linkSync(join(root, 'index.html'), join(dir, 'elsewhere'));
  const db = new Database(join(dir, 'db.sqlite'));
  const checksums = new ChecksumDb(db, { key: Buffer.alloc(32, 3), hasher });
  const summary = await checksums.baseline('docroot:a/b', root);
  assert.deepEqual(summary.linked, ['index.html']);
  const check = await checksums.verifyFile('docroot:a/b', 'index.html');
  assert.equal(check.status, 'changed');
  assert.deepEqual(check.status === 'changed' && check.changes, ['links']);
  db.close();
});

test('chmod 4755 is alerted and recovery puts the mode back', async () => {
  const s = await setup();
  chmodSync(join(s.root, 'index.html'), 0o4755);
  const alert = await s.recovered('/index.html');
  assert.match(String(alert.fields['integrity.changes']), /mode/);
  assert.equal(statSync(join(s.root, 'index.html')).mode & 0o7777, 0o644);
  await whole(s);
  await s.close();
});

test('a change of owner (file and directory) is alerted and recovery puts the owner back', async () => {
  const s = await setup();
  chownSync(join(s.root, 'css'), 4242, 4242);
  chownSync(join(s.root, 'css', 'site.css'), 4242, 4242);
  const alert = await s.recovered('/css/site.css');
  assert.match(String(alert.fields['integrity.changes']), /owner/);
  await until(() => (statSync(join(s.root, 'css')).uid === 0 && statSync(join(s.root, 'css', 'site.css')).uid === 0) || undefined, 'both owners back');
  await s.guard.drained();
  await whole(s);
  assert.equal(readFileSync(join(s.root, 'css', 'site.css'), 'utf8'), 'body{}');
  await s.close();
});

test('new directories, hidden or not, are alerted and removed with everything in them', async () => {
  const s = await setup();
  mkdirSync(join(s.root, '.well-hidden', 'deeper'), { recursive: true });
  writeFileSync(join(s.root, '.well-hidden', 'deeper', 'shell.php'), '<?php system($_GET[1]);');
  mkdirSync(join(s.root, 'uploads'));
  const alert = await s.recovered('/.well-hidden');
  assert.equal(alert.fields['integrity.status'], 'added');
  assert.equal(alert.fields['file.type'], 'dir');
  await until(() => s.mismatch('/uploads'), 'the alert on /uploads');
  await until(() => (!exists(join(s.root, '.well-hidden')) && !exists(join(s.root, 'uploads'))) || undefined, 'both directories gone');
  await s.guard.drained();
  await whole(s);
  await s.close();
});

test('a swapped symlink, and a file swapped for a symlink, are alerted and swapped back', async () => {
  const s = await setup();
  unlinkSync(join(s.root, 'latest.html'));
  symlinkSync('/etc/passwd', join(s.root, 'latest.html'));
  const tmp = join(s.outside, 'swap');
  symlinkSync('/etc/shadow', tmp);
  renameSync(tmp, join(s.root, 'css', 'site.css'));
  const alert = await s.recovered('/latest.html');
  assert.match(String(alert.fields['integrity.changes']), /target/);
  await until(() => s.mismatch('/css/site.css'), 'the alert on /css/site.css');
  await until(() => (lstatSync(join(s.root, 'css', 'site.css')).isFile() && readlinkSync(join(s.root, 'latest.html')) === 'index.html') || undefined, 'both put back');
  await s.guard.drained();
  assert.equal(readFileSync(join(s.root, 'css', 'site.css'), 'utf8'), 'body{}');
  await whole(s);
  await s.close();
});

test('a change put back at once (content restored within the same moment) is still alerted: its ctime moved', async () => {
  const s = await setup();
  const page = join(s.root, 'index.html');
  writeFileSync(page, '<h1>defaced for a moment</h1>');
  writeFileSync(page, '<h1>clean</h1>');
  const alert = await s.recovered('/index.html');
  assert.equal(alert.fields['integrity.status'], 'changed');
  assert.match(String(alert.fields['integrity.changes']), /ctime/);
  assert.equal(readFileSync(page, 'utf8'), '<h1>clean</h1>');
  await whole(s);
  await sleep(200);
  await s.guard.drained();
  assert.equal(s.target.restores.length, 1, 'the restore\'s own writes start no further recovery');
  await s.close();
});

test('the stat-only sweep finds what no watch reported (here: with the interceptor removed)', async () => {
  const s = await setup({ sweepIntervalMs: 200 });
  await s.guard.removeInterceptor(`fs:${SCOPE}`);
  chmodSync(join(s.root, 'css'), 0o777);
  const alert = await s.recovered('/css');
  assert.equal(alert.fields['integrity.source'], 'sweep');
  assert.equal(statSync(join(s.root, 'css')).mode & 0o7777, 0o755);
  await s.close();
});

test('benign: reading the files, and log rotation beside the watched tree, raise nothing', async () => {
  const s = await setup({ sweepIntervalMs: 200 });
  const logs = join(s.dir, 'logs');
  mkdirSync(logs);
  writeFileSync(join(logs, 'access.log'), 'GET /\n');
  for (let i = 0; i < 3; i++) {
    readFileSync(join(s.root, 'index.html'));
    readFileSync(join(s.root, 'latest.html'));
    renameSync(join(logs, 'access.log'), join(logs, `access.log.${i + 1}`));
    writeFileSync(join(logs, 'access.log'), `GET / ${i}\n`);
    await sleep(150);
  }
  await sleep(500); // two sweeps more
  await s.guard.drained();
  assert.deepEqual(s.seen.filter((e) => e.kind === 'integrity.mismatch').map((e) => e.fields['file.path']), []);
  assert.deepEqual(s.target.calls, []);
  await s.close();
});

const exists = (p: string): boolean => { try { lstatSync(p); return true; } catch { return false; } };
