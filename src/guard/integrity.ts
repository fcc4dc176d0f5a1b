/**
 * The integrity monitor: the hasher's side of the guard for live trees — a
 * running instance's root, a static site's docroot, Strata's own install.
 *
 * `watch` takes the tree's baseline by inode into the signed checksum DB
 * (replacing the last one), keeps known-good copies of its files when the
 * tree is restored by copying (docroots), and starts a file interceptor on it
 * that re-verifies each changed entry at once (watches on every directory and
 * every file's inode). Two schedules back it up: a stat-only sweep every few
 * seconds (default 3 s: a walk with lstat on a worker thread, re-hashing only
 * files whose inode, ctime or size moved — it sees what no watch reported,
 * and a change put back within milliseconds, whose ctime still moved), and a
 * full re-verification (default every 10 min) that re-hashes everything and
 * checks every signature of the DB. Each finding becomes an
 * `integrity.mismatch` event naming the path, what happened to it (changed /
 * added / removed / unreadable / tampered), what changed (`integrity.changes`:
 * content, mode, owner, links, inode, ctime, type, target) and both hashes;
 * the same finding is reported once until the entry is whole again, by the
 * interceptor and the schedules alike.
 */
import type { FieldValue, GuardEvent, EventLevel } from '../core/guard-event.js';
import type { Emit, Interceptor } from '../core/interceptor.js';
import type { BaselineSummary, ChecksumDb, FileCheck, VerifyReport } from './checksums.js';
import { describeFinding, FileInterceptor } from './interceptors/fs.js';
import type { KnownGoodStore, RestoreReport } from './recovery.js';

/** The part of the guard the monitor needs. */
export interface GuardPort {
  ingest: Emit;
  addInterceptor(i: Interceptor): Promise<void>;
  removeInterceptor(id: string): Promise<void>;
}

export interface WatchedTree {
  /** `instance:<id>`, `docroot:<tenant id>/<dir>`, `strata:self`. */
  scope: string;
  root: string;
  /** Globs over paths as the tree's user sees them; default all. */
  include?: string[];
  /** Directories below the root to watch with inotify (default the whole root); the schedule covers all of `include`. */
  dirs?: string[];
  /** Only these files are reported by inotify (others beside them change all the time: logs). */
  files?: string[];
  tenantId: string | null;
  instanceId: string | null;
  level: EventLevel;
  /** Fields on every event from this tree, e.g. `{ 'integrity.recoverable': true }`. */
  labels?: Record<string, FieldValue>;
  /** Keep known-good copies of its files so `restore` can put them back (docroots). */
  keepCopies?: boolean;
  /** Its stat-only sweep at most this often (a large tree: Strata's own install); default every sweep. */
  sweepEveryMs?: number;
}

export interface IntegrityMonitorOptions {
  guard: GuardPort;
  checksums: ChecksumDb;
  knownGood?: KnownGoodStore;
  /** Whole-tree re-verification period; default 10 min; 0 turns the schedule off. */
  verifyIntervalMs?: number;
  /** Stat-only sweep period; default 3 s; 0 turns it off. */
  sweepIntervalMs?: number;
  /** Findings reported per verification, in detail; the rest are counted in one event. Default 1,000. */
  maxFindings?: number;
}

export class IntegrityMonitor {
  readonly #opts: IntegrityMonitorOptions;
  readonly #trees = new Map<string, WatchedTree>();
  /** scope → path → fingerprint of the finding last reported (shared with the scope's interceptor). */
  readonly #reported = new Map<string, Map<string, string>>();
  readonly #interceptors = new Map<string, FileInterceptor>();
  /** scope → its verification, sweep or restore under way: one at a time per tree. */
  readonly #busy = new Map<string, Promise<unknown>>();
  /** scope → when its last sweep started. */
  readonly #lastSweep = new Map<string, number>();
  #timer: NodeJS.Timeout | undefined;
  #sweepTimer: NodeJS.Timeout | undefined;
  #sweeping: Promise<void> | undefined;
  #statSweeping: Promise<void> | undefined;

  constructor(opts: IntegrityMonitorOptions) {
    this.#opts = opts;
  }

  /** Starts the schedule. */
  start(): void {
    const every = this.#opts.verifyIntervalMs ?? 600_000;
    if (every > 0 && !this.#timer) {
      this.#timer = setInterval(() => { this.#sweeping ??= this.verifyAll().then(() => undefined).finally(() => { this.#sweeping = undefined; }); }, every);
      this.#timer.unref();
    }
    const sweepEvery = this.#opts.sweepIntervalMs ?? 3000;
    if (sweepEvery > 0 && !this.#sweepTimer) {
      this.#sweepTimer = setInterval(() => { this.#statSweeping ??= this.sweepAll().finally(() => { this.#statSweeping = undefined; }); }, sweepEvery);
      this.#sweepTimer.unref();
    }
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    clearInterval(this.#sweepTimer);
    this.#timer = undefined;
    this.#sweepTimer = undefined;
    await this.#sweeping;
    await this.#statSweeping;
    for (const scope of [...this.#trees.keys()]) await this.#opts.guard.removeInterceptor(interceptorId(scope)).catch(() => undefined);
    this.#trees.clear();
    this.#interceptors.clear();
  }

  scopes(): string[] {
    return [...this.#trees.keys()];
  }

  tree(scope: string): WatchedTree | undefined {
    return this.#trees.get(scope);
  }

  /** Baselines the tree now and watches it; a tree watched already is re-baselined. */
  async watch(tree: WatchedTree): Promise<BaselineSummary> {
    await this.unwatch(tree.scope, { forget: false });
    const summary = await this.#opts.checksums.baseline(tree.scope, tree.root, tree.include ? { include: tree.include } : {});
    if (tree.keepCopies) {
      if (!this.#opts.knownGood) throw new Error('keepCopies needs a known-good store');
      await this.#opts.knownGood.keep(tree.root, this.#opts.checksums.entries(tree.scope).filter((e) => e.kind === 'file'));
    }
    const reported = new Map<string, string>();
    this.#reported.set(tree.scope, reported);
    const interceptor = new FileInterceptor({
      root: tree.root, tenantId: tree.tenantId, instanceId: tree.instanceId, level: tree.level,
      ...(tree.labels ? { labels: tree.labels } : {}), ...(tree.dirs ? { dirs: tree.dirs } : {}), ...(tree.files ? { files: tree.files } : {}),
      integrity: { checksums: this.#opts.checksums, scope: tree.scope, reported },
    });
    await this.#opts.guard.addInterceptor(interceptor);
    this.#interceptors.set(tree.scope, interceptor);
    // Listed only once inotify is on it: a caller seeing the tree watched knows a write will be seen.
    this.#trees.set(tree.scope, tree);
    // A file linked from outside the tree already: a finding from the start, not part of what is good.
    for (const path of summary.linked) this.#reportCheck(tree, await this.#opts.checksums.verifyFile(tree.scope, path), 'baseline');
    return summary;
  }

  /**
   * Stops reporting writes to the tree at once (synchronously: before a
   * legitimate change the caller is about to make, e.g. a redeploy), without
   * waiting for the watcher to close; `watch` again re-baselines it.
   */
  suspend(scope: string): void {
    if (!this.#trees.delete(scope)) return;
    this.#interceptors.delete(scope);
    void this.#opts.guard.removeInterceptor(interceptorId(scope)).catch(() => undefined);
  }

  /** Stops watching; `forget` also drops the baseline (the tree is gone for good). */
  async unwatch(scope: string, opts: { forget: boolean }): Promise<void> {
    this.#trees.delete(scope);
    this.#interceptors.delete(scope);
    await this.#opts.guard.removeInterceptor(interceptorId(scope));
    this.#reported.delete(scope);
    if (opts.forget) this.#opts.checksums.forget(scope);
  }

  /** Re-verifies one watched tree whole and reports every new finding as an event. */
  async verify(scope: string): Promise<VerifyReport> {
    const tree = this.#trees.get(scope);
    if (!tree) throw new RangeError(`'${scope}' is not watched`);
    const report = await this.#exclusive(scope, () => this.#opts.checksums.verify(scope));
    this.#report(tree, report, 'schedule');
    return report;
  }

  /** The stat-only sweep of one watched tree: lstat everything, re-hash only what moved; reports every new finding. */
  async sweep(scope: string): Promise<VerifyReport> {
    const tree = this.#trees.get(scope);
    if (!tree) throw new RangeError(`'${scope}' is not watched`);
    const report = await this.#exclusive(scope, () => this.#opts.checksums.verify(scope, { rehash: 'changed' }));
    if (this.#trees.get(scope) === tree) this.#report(tree, report, 'sweep');
    return report;
  }

  async sweepAll(): Promise<void> {
    for (const [scope, tree] of [...this.#trees]) {
      if (this.#trees.get(scope) !== tree) continue;
      const now = Date.now();
      if (tree.sweepEveryMs && now - (this.#lastSweep.get(scope) ?? 0) < tree.sweepEveryMs) continue;
      this.#lastSweep.set(scope, now);
      // A tree whose root went (a container stopping) is no finding: its watch is about to go too.
      await this.sweep(scope).catch(() => undefined);
    }
  }

  /** Runs `work` once the scope's verification, sweep or restore under way is done. */
  #exclusive<T>(scope: string, work: () => Promise<T>): Promise<T> {
    const run = (this.#busy.get(scope) ?? Promise.resolve()).catch(() => undefined).then(work);
    const tail = run.catch(() => undefined);
    this.#busy.set(scope, tail);
    void tail.then(() => { if (this.#busy.get(scope) === tail) this.#busy.delete(scope); });
    return run;
  }

  async verifyAll(): Promise<VerifyReport[]> {
    const reports: VerifyReport[] = [];
    for (const scope of [...this.#trees.keys()]) {
      if (!this.#trees.has(scope)) continue;
      reports.push(await this.verify(scope).catch((err: Error) => {
        this.#emit(this.#trees.get(scope), 'error', 'guard.interceptor_error', { 'integrity.scope': scope, error: err.message });
        return null;
      }).then((r) => r!));
    }
    return reports.filter(Boolean);
  }

  /**
   * Puts a tree kept with `keepCopies` back to its baseline: changed and removed
   * files from their known-good copies, added files deleted. Refuses when the
   * DB's baseline is itself not authentic — restoring from forged hashes would
   * install the attacker's content.
   */
  async restore(scope: string): Promise<RestoreReport & { scope: string }> {
    const tree = this.#trees.get(scope);
    if (!tree?.keepCopies || !this.#opts.knownGood) throw new RangeError(`'${scope}' has no known-good copies`);
    const knownGood = this.#opts.knownGood;
    const interceptor = this.#interceptors.get(scope);
    // The restore's own writes are no findings: collected while it runs, checked once the baseline says what they left.
    try {
      await interceptor?.hold();
      return await this.#exclusive(scope, async () => {
        const report = await this.#opts.checksums.verify(scope);
        if (report.tampered.baseline || report.tampered.rows.length > 0) throw new Error(`the checksum DB's baseline of ${scope} is not authentic: refusing to restore from it`);
        const expected = new Map(this.#opts.checksums.entries(scope).map((e) => [e.path, e]));
        const restored = await knownGood.restore(tree.root, report, expected);
        await this.#opts.checksums.reseal(scope, restored.touched);
        this.#reported.get(scope)?.clear();
        const { touched: _, ...out } = restored;
        return { scope, ...out };
      });
    } finally {
      await interceptor?.release();
    }
  }

  #reportCheck(tree: WatchedTree, check: FileCheck, source: string): void {
    const finding = describeFinding(check);
    if (!finding) return;
    const seen = this.#reported.get(tree.scope) ?? new Map<string, string>();
    this.#reported.set(tree.scope, seen);
    const { fingerprint, fields } = finding;
    if (seen.get(check.path) === fingerprint) return;
    seen.set(check.path, fingerprint);
    this.#emit(tree, 'critical', 'integrity.mismatch', { ...fields, 'integrity.scope': tree.scope, 'integrity.source': source });
  }

  #report(tree: WatchedTree, report: VerifyReport, source: string): void {
    const seen = this.#reported.get(tree.scope) ?? new Map<string, string>();
    this.#reported.set(tree.scope, seen);
    if (report.ok) { seen.clear(); return; }
    const findings: Record<string, FieldValue>[] = [];
    if (report.tampered.baseline) findings.push({ 'file.path': '/', 'integrity.status': 'tampered', 'integrity.what': 'baseline' });
    for (const path of report.tampered.rows) findings.push({ 'file.path': '/' + path, 'integrity.status': 'tampered', 'integrity.what': 'row' });
    const checks: FileCheck[] = [
      ...report.changed.map((c) => ({ status: 'changed' as const, ...c })),
      ...report.added.map((path) => ({ status: 'added' as const, path, kind: report.kinds[path] ?? 'unknown' })),
      ...report.removed.map((path) => ({ status: 'removed' as const, path })),
      ...report.unreadable.map((u) => ({ status: 'unreadable' as const, ...u })),
    ];
    const fresh = findings.filter((f) => {
      const key = `tampered:${String(f['file.path'])}`;
      if (seen.get(key) === 'tampered') return false;
      seen.set(key, 'tampered');
      return true;
    });
    for (const check of checks) {
      const finding = describeFinding(check);
      if (!finding) continue;
      const { fingerprint, fields } = finding;
      if (seen.get(check.path) === fingerprint) continue;
      seen.set(check.path, fingerprint);
      fresh.push(fields);
    }
    const max = this.#opts.maxFindings ?? 1000;
    for (const f of fresh.slice(0, max)) this.#emit(tree, 'critical', 'integrity.mismatch', { ...f, 'integrity.scope': tree.scope, 'integrity.source': source });
    if (fresh.length > max) {
      this.#emit(tree, 'critical', 'integrity.mismatch', {
        'file.path': '/', 'integrity.status': 'many', 'integrity.scope': tree.scope, 'integrity.source': source, 'integrity.more': fresh.length - max,
      });
    }
  }

  #emit(tree: WatchedTree | undefined, priority: GuardEvent['priority'], kind: string, fields: Record<string, FieldValue>): void {
    this.#opts.guard.ingest({
      time: Date.now(), tenantId: tree?.tenantId ?? null, instanceId: tree?.instanceId ?? null, level: tree?.level ?? 'host', kind, priority,
      fields: { ...tree?.labels, ...fields },
    });
  }
}

/** The id FileInterceptor gives itself for a scope. */
const interceptorId = (scope: string): string => `fs:${scope}`;
