/**
 * The integrity monitor: the hasher's side of the guard for live trees — a
 * running instance's root, a static site's docroot, Strata's own install.
 *
 * `watch` takes the tree's baseline into the signed checksum DB (replacing the
 * last one), keeps known-good copies of its files when the tree is restored by
 * copying (docroots), and starts a file interceptor on it that re-verifies
 * each written file at once. On top of that every watched tree is re-verified
 * whole on a schedule (default every 10 min), which also catches what inotify
 * cannot see (writes made while the watch was down, a forged DB). Each finding
 * becomes an `integrity.mismatch` event naming the path, what happened to it
 * (changed / added / removed / unreadable / tampered) and both hashes; the same
 * finding is reported once until the tree is whole again.
 */
import type { FieldValue, GuardEvent, EventLevel } from './event.js';
import type { Emit, Interceptor } from './interceptor.js';
import type { BaselineSummary, ChecksumDb, VerifyReport } from './checksums.js';
import { FileInterceptor } from './interceptors/fs.js';
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
}

export interface IntegrityMonitorOptions {
  guard: GuardPort;
  checksums: ChecksumDb;
  knownGood?: KnownGoodStore;
  /** Whole-tree re-verification period; default 10 min; 0 turns the schedule off. */
  verifyIntervalMs?: number;
  /** Findings reported per verification, in detail; the rest are counted in one event. Default 1,000. */
  maxFindings?: number;
}

export class IntegrityMonitor {
  readonly #opts: IntegrityMonitorOptions;
  readonly #trees = new Map<string, WatchedTree>();
  /** scope → path → fingerprint of the finding last reported. */
  readonly #reported = new Map<string, Map<string, string>>();
  #timer: NodeJS.Timeout | undefined;
  #sweeping: Promise<void> | undefined;

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
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#sweeping;
    for (const scope of [...this.#trees.keys()]) await this.#opts.guard.removeInterceptor(interceptorId(scope)).catch(() => undefined);
    this.#trees.clear();
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
      await this.#opts.knownGood.keep(tree.root, this.#opts.checksums.entries(tree.scope));
    }
    this.#reported.delete(tree.scope);
    await this.#opts.guard.addInterceptor(new FileInterceptor({
      root: tree.root, tenantId: tree.tenantId, instanceId: tree.instanceId, level: tree.level,
      ...(tree.labels ? { labels: tree.labels } : {}), ...(tree.dirs ? { dirs: tree.dirs } : {}), ...(tree.files ? { files: tree.files } : {}),
      integrity: { checksums: this.#opts.checksums, scope: tree.scope },
    }));
    // Listed only once inotify is on it: a caller seeing the tree watched knows a write will be seen.
    this.#trees.set(tree.scope, tree);
    return summary;
  }

  /**
   * Stops reporting writes to the tree at once (synchronously: before a
   * legitimate change the caller is about to make, e.g. a redeploy), without
   * waiting for the watcher to close; `watch` again re-baselines it.
   */
  suspend(scope: string): void {
    if (!this.#trees.delete(scope)) return;
    void this.#opts.guard.removeInterceptor(interceptorId(scope)).catch(() => undefined);
  }

  /** Stops watching; `forget` also drops the baseline (the tree is gone for good). */
  async unwatch(scope: string, opts: { forget: boolean }): Promise<void> {
    this.#trees.delete(scope);
    await this.#opts.guard.removeInterceptor(interceptorId(scope));
    this.#reported.delete(scope);
    if (opts.forget) this.#opts.checksums.forget(scope);
  }

  /** Re-verifies one watched tree whole and reports every new finding as an event. */
  async verify(scope: string): Promise<VerifyReport> {
    const tree = this.#trees.get(scope);
    if (!tree) throw new RangeError(`'${scope}' is not watched`);
    const report = await this.#opts.checksums.verify(scope);
    this.#report(tree, report);
    return report;
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
    const report = await this.#opts.checksums.verify(scope);
    if (report.tampered.baseline || report.tampered.rows.length > 0) throw new Error(`the checksum DB's baseline of ${scope} is not authentic: refusing to restore from it`);
    const expected = new Map(this.#opts.checksums.entries(scope).map((e) => [e.path, e.hash]));
    const restored = await this.#opts.knownGood.restore(tree.root, report, expected);
    return { scope, ...restored };
  }

  #report(tree: WatchedTree, report: VerifyReport): void {
    let seen = this.#reported.get(tree.scope);
    if (report.ok) { this.#reported.delete(tree.scope); return; }
    if (!seen) this.#reported.set(tree.scope, (seen = new Map()));
    const findings: Record<string, FieldValue>[] = [];
    if (report.tampered.baseline) findings.push({ 'file.path': '/', 'integrity.status': 'tampered', 'integrity.what': 'baseline' });
    for (const path of report.tampered.rows) findings.push({ 'file.path': '/' + path, 'integrity.status': 'tampered', 'integrity.what': 'row' });
    for (const c of report.changed) findings.push({ 'file.path': '/' + c.path, 'integrity.status': 'changed', 'integrity.expected': c.expected, 'integrity.actual': c.actual });
    for (const path of report.added) findings.push({ 'file.path': '/' + path, 'integrity.status': 'added' });
    for (const path of report.removed) findings.push({ 'file.path': '/' + path, 'integrity.status': 'removed' });
    for (const u of report.unreadable) findings.push({ 'file.path': '/' + u.path, 'integrity.status': 'unreadable', error: u.error });
    const fresh = findings.filter((f) => {
      const key = `${f['integrity.status']}:${f['file.path']}`;
      const fingerprint = String(f['integrity.actual'] ?? f['integrity.status']);
      if (seen!.get(key) === fingerprint) return false;
      seen!.set(key, fingerprint);
      return true;
    });
    const max = this.#opts.maxFindings ?? 1000;
    for (const f of fresh.slice(0, max)) this.#emit(tree, 'critical', 'integrity.mismatch', { ...f, 'integrity.scope': tree.scope, 'integrity.source': 'schedule' });
    if (fresh.length > max) {
      this.#emit(tree, 'critical', 'integrity.mismatch', {
        'file.path': '/', 'integrity.status': 'many', 'integrity.scope': tree.scope, 'integrity.source': 'schedule', 'integrity.more': fresh.length - max,
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
