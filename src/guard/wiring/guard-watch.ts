/**
 * Keeps the guard's integrity monitor on what is live: every running instance
 * whose level shows the guard its files (os: the container's root), every
 * static site's docroot, and — when asked — Strata's own installed files.
 *
 * An instance that reaches `running` gets, after `knownGoodDelayMs` (default
 * 1 s: its first requests are not slowed by the snapshot's brief freeze), a
 * known-good snapshot through the lifecycle service and then its baseline; it
 * is watched until it leaves `running`, and its baseline is dropped when it is
 * deleted. A replacement made by hot recovery is baselined at once, with a
 * known-good snapshot of its own (the old one goes with the old instance). A
 * VM, whose files the host cannot see, gets its known-good snapshot right after
 * its kernel text is baselined. Docroots are baselined with known-good copies
 * of their files, so recovery is a copy.
 * Follows the event bus, as the front door does.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { GuardEvent } from '../../core/guard-event.js';
import type { IntegrityMonitor } from '../integrity.js';
import { STATIC_SITE_LEVEL } from '../../levels/index.js';
import type { InstanceLevers, KernelWatch } from '../../levels/module.js';
import type { DriverRegistry } from '../../levels/registry.js';
import type { Store } from '../../store/store.js';
import type { Instance } from '../../store/types.js';
import type { EventBus } from '../../core/events.js';
import { docrootScope, tenantDocroot } from '../../control/tenants/tenant-data.js';
import type { GuardTarget } from './guard-target.js';

/** Operations that rewrite a running instance's files on purpose: its new files are baselined once they are done. */
const REWRITES = new Set(['instance.redeploy', 'instance.files']);
/** Operations that take an instance's files away on purpose. */
const TEARDOWNS = new Set(['instance.stop', 'instance.restart', 'instance.delete', 'snapshot.restore']);

export interface GuardWatchOptions {
  store: Store;
  registry: DriverRegistry;
  monitor: IntegrityMonitor;
  target: GuardTarget;
  dataDir: string;
  log: Logger;
  knownGoodDelayMs?: number;
  /** Baseline and watch Strata's own files under this install root. */
  selfRoot?: string;
  /** Where kernel-text checks of VMs report (the guard's ingest); no checks without it. */
  ingest?: (event: GuardEvent) => unknown;
  /** After a VM starts, wait this long for its kernel to boot before the kernel-text baseline; default 30 s. */
  kernelBaselineDelayMs?: number;
  /** Kernel-text re-checks; default every 60 s. */
  kernelCheckIntervalMs?: number;
}

/** What of Strata's install the guard checks: its code (not its compiled tests), its dependencies, its CLI and its rules. */
export const SELF_DIRS = ['dist/src', 'node_modules', 'bin', 'rules'];
const SELF_SWEEP_MS = 60_000;

export class GuardWatch {
  readonly #o: GuardWatchOptions;
  #unsubscribe: (() => void) | undefined;
  /** instance id → pending delayed baseline. */
  readonly #timers = new Map<string, NodeJS.Timeout>();
  /** Serialises the work so scopes are never baselined twice at once. */
  #queue: Promise<void> = Promise.resolve();
  #closed = false;
  /** Instance id → its kernel-text watch and the timer of its next step (levels with kernel introspection). */
  readonly #kernels = new Map<string, { timer: NodeJS.Timeout; watch?: KernelWatch; step?: Promise<void> }>();
  /** Tenant id → copies into its docroots under way (`strata cp`): its docroots are not watched until they are done. */
  readonly #copying = new Map<string, number>();
  /** Instances whose code is being replaced on purpose: not baselined until it is done. */
  readonly #redeploying = new Set<string>();

  constructor(opts: GuardWatchOptions) {
    this.#o = opts;
  }

  /** Watches what runs now and follows changes. */
  start(events: EventBus): void {
    this.#unsubscribe = events.subscribe((e) => {
      if (e.category === 'lifecycle' && e.type === 'instance.state') {
        const id = String(e.data.id ?? '');
        if (e.data.to === 'running') {
          const replacement = this.#o.target.replacements.delete(id);
          this.#scheduleInstance(id, replacement ? 0 : undefined);
          // A replacement resumed a booted, known-good guest: no boot to wait for, only the site swap (the snapshot's freeze stays out of it).
          const kernelDelay = replacement ? this.#o.knownGoodDelayMs ?? 1000 : this.#o.kernelBaselineDelayMs ?? 30_000;
          if (this.#introspects(String(e.data.level)) && e.data.from !== 'paused') this.#scheduleKernel(id, kernelDelay);
        } else if (e.data.to === 'stopped' || e.data.to === 'deleted' || e.data.to === 'failed') this.#dropKernel(id);
        if (e.data.to !== 'running' && (e.data.from === 'running' || e.data.to === 'deleted')) this.#enqueue(() => this.#unwatchInstance(id, e.data.to === 'deleted'));
      } else if (e.category === 'operation' && REWRITES.has(String((e.data.operation as { kind?: string } | undefined)?.kind))) {
        this.#onRedeploy(e.data.operation as { status: string; tenantId: string | null; target: string });
      } else if (e.category === 'operation' && (e.data.operation as { kind?: string } | undefined)?.kind === 'site.files') {
        this.#onDocrootCopy(e.data.operation as { status: string; tenantId: string | null });
      } else if (e.category === 'operation' && TEARDOWNS.has(String((e.data.operation as { kind?: string } | undefined)?.kind))) {
        this.#onTeardown(e.data.operation as { status: string; tenantId: string | null; target: string });
      } else if (e.category === 'audit' && /^(site|tenant)\./.test(String(e.data.action))) {
        this.#enqueue(() => this.#syncDocroots());
      }
    });
    for (const i of this.#o.store.listInstances()) {
      if (i.actualState !== 'running') continue;
      this.#scheduleInstance(i.id, 0);
      if (this.#introspects(i.level)) this.#scheduleKernel(i.id, 0);
    }
    this.#enqueue(() => this.#syncDocroots());
    if (this.#o.selfRoot) {
      const root = this.#o.selfRoot;
      this.#enqueue(async () => {
        const dirs = SELF_DIRS.filter((d) => existsSync(join(root, d)));
        const s = await this.#o.monitor.watch({
          scope: 'strata:self', root, include: dirs.map((d) => `/${d}/**`), dirs, tenantId: null, instanceId: null, level: 'host',
          // Tens of thousands of entries (~0.5 s of a core per walk): every file's inode is watched, the sweep is the backstop.
          sweepEveryMs: SELF_SWEEP_MS,
        });
        this.#o.log.info({ files: s.files, bytes: s.bytes }, 'guard: baselined Strata\'s own files');
      });
    }
  }

  /** Resolves when the work queued so far is done (tests). */
  idle(): Promise<void> {
    return this.#queue;
  }

  async stop(): Promise<void> {
    this.#closed = true;
    this.#unsubscribe?.();
    for (const t of this.#timers.values()) clearTimeout(t);
    this.#timers.clear();
    const steps = [...this.#kernels.values()].map((k) => k.step);
    for (const id of [...this.#kernels.keys()]) this.#dropKernel(id);
    await Promise.all(steps); // a baseline or known-good snapshot under way finishes before the drivers go
    await this.#queue;
  }

  #enqueue(work: () => Promise<void>): void {
    this.#queue = this.#queue.then(() => (this.#closed ? undefined : work())).catch((err: unknown) => {
      this.#o.log.warn({ err }, 'guard: integrity watch failed');
    });
  }

  /**
   * A redeploy rewrites the instance's code on purpose: stop reporting writes
   * to it the moment the work starts (this runs inside the publish, before the
   * driver writes), and baseline the new code once it is done.
   */
  #onRedeploy(op: { status: string; tenantId: string | null; target: string }): void {
    const instance = this.#instanceOf(op);
    if (!instance) return;
    if (op.status === 'running') {
      this.#redeploying.add(instance.id);
      this.#o.monitor.suspend(`instance:${instance.id}`);
    } else if (op.status === 'succeeded' || op.status === 'failed') {
      this.#redeploying.delete(instance.id);
      this.#scheduleInstance(instance.id, 0);
    }
  }

  /**
   * A copy into a tenant's docroot (`strata cp`) is an authorised change, as
   * a redeploy is: its docroots stop being reported on the moment the write
   * starts (inside the publish, before the first byte), and are baselined
   * again — known-good copies included — once it is done, so what the copy
   * wrote is the new good content rather than a tamper to revert.
   */
  #onDocrootCopy(op: { status: string; tenantId: string | null }): void {
    const tenantId = op.tenantId;
    if (!tenantId) return;
    if (op.status === 'running') {
      this.#copying.set(tenantId, (this.#copying.get(tenantId) ?? 0) + 1);
      for (const scope of this.#o.monitor.scopes()) if (scope.startsWith(docrootScope(tenantId, ''))) this.#o.monitor.suspend(scope);
    } else if (op.status === 'succeeded' || op.status === 'failed') {
      const left = (this.#copying.get(tenantId) ?? 1) - 1;
      if (left > 0) this.#copying.set(tenantId, left);
      else this.#copying.delete(tenantId);
      this.#enqueue(() => this.#syncDocroots());
    }
  }

  /**
   * Stopping, restarting, deleting or restoring an instance takes its files away
   * on purpose (a container's root is unmounted): stop reporting on them the
   * moment the work starts, and baseline again if it runs once the work is done.
   */
  #onTeardown(op: { status: string; tenantId: string | null; target: string }): void {
    const instance = this.#instanceOf(op);
    if (!instance) return;
    if (op.status === 'running') this.#o.monitor.suspend(`instance:${instance.id}`);
    else if ((op.status === 'succeeded' || op.status === 'failed') && this.#o.store.getInstanceById(instance.id)?.actualState === 'running') {
      this.#scheduleInstance(instance.id, 0);
    }
  }

  #instanceOf(op: { tenantId: string | null; target: string }): Instance | null {
    const tenant = op.tenantId ? this.#o.store.getTenant(op.tenantId) : null;
    return tenant ? this.#o.store.getInstance(tenant.id, op.target.slice(tenant.name.length + 1)) : null;
  }

  #scheduleInstance(id: string, delay: number = this.#o.knownGoodDelayMs ?? 1000): void {
    clearTimeout(this.#timers.get(id));
    const timer = setTimeout(() => {
      this.#timers.delete(id);
      this.#enqueue(() => this.#watchInstance(id));
    }, delay);
    timer.unref();
    this.#timers.set(id, timer);
  }

  async #watchInstance(id: string): Promise<void> {
    const instance = this.#o.store.getInstanceById(id);
    const tenant = instance ? this.#o.store.getTenant(instance.tenantId) : null;
    if (!instance || !tenant || instance.actualState !== 'running' || this.#redeploying.has(id)) return;
    const tree = this.#treeOf(instance);
    if (!tree) return;
    let recoverable = this.#o.target.knownGood.has(id) || tree.keepCopies === true;
    if (!recoverable) {
      try {
        const previous = this.#o.target.knownGood.get(id);
        const taken = await this.#o.target.takeSnapshot(tenant, instance, 'guard-good');
        this.#o.target.knownGood.set(id, taken.id);
        recoverable = true;
        if (previous) this.#o.log.debug({ previous }, 'guard: known-good snapshot replaced');
      } catch (err) {
        this.#o.log.warn({ err, instance: instance.name }, 'guard: no known-good snapshot; recovery will not be possible');
      }
    }
    if (this.#o.store.getInstanceById(id)?.actualState !== 'running' || this.#redeploying.has(id)) return;
    await this.#o.monitor.watch({
      scope: `instance:${id}`, root: tree.root, include: tree.include, tenantId: instance.tenantId, instanceId: id, level: instance.level,
      labels: { 'integrity.recoverable': recoverable },
      ...(tree.files ? { files: tree.files } : {}), ...(tree.keepCopies ? { keepCopies: true } : {}),
    });
    // A redeploy that began while the baseline was being taken: that baseline is already stale.
    if (this.#redeploying.has(id)) this.#o.monitor.suspend(`instance:${id}`);
  }

  async #unwatchInstance(id: string, forget: boolean): Promise<void> {
    clearTimeout(this.#timers.get(id));
    this.#timers.delete(id);
    await this.#o.monitor.unwatch(`instance:${id}`, { forget });
    if (forget) this.#o.target.knownGood.delete(id);
  }

  /**
   * VM introspection: the kernel-text baseline once the guest has booted, then
   * a check every `kernelCheckIntervalMs`, each reported as a `kernel.text` event.
   */
  #scheduleKernel(id: string, delay: number): void {
    if (!this.#o.ingest) return;
    const entry = this.#kernels.get(id);
    clearTimeout(entry?.timer);
    const timer = setTimeout(() => { void this.checkKernel(id); }, delay);
    timer.unref();
    if (entry) entry.timer = timer;
    else this.#kernels.set(id, { timer });
  }

  /**
   * The VM's next kernel-text step now instead of at its timer: the baseline
   * (and known-good snapshot) if it has none yet, else a check. Steps of one VM
   * never overlap; the periodic checks go on from here. No-op for an instance
   * the guard does not introspect.
   */
  checkKernel(id: string): Promise<void> {
    const entry = this.#kernels.get(id);
    if (!entry) return Promise.resolve();
    const step = (entry.step ?? Promise.resolve()).then(() => this.#kernelStep(id));
    entry.step = step;
    return step;
  }

  async #kernelStep(id: string): Promise<void> {
    const entry = this.#kernels.get(id);
    const instance = this.#o.store.getInstanceById(id);
    if (!entry || !instance || this.#closed) return;
    clearTimeout(entry.timer);
    try {
      if (!entry.watch) {
        const watch = await this.#levers(instance.level)?.kernelWatch?.(instance);
        if (!watch) return;
        if (watch === 'unmapped') {
          // A compressed kernel image: no kernel-text map for this guest, but booted by now, so still a state to recover to.
          await this.#knownGoodVm(id);
          return;
        }
        entry.watch = watch;
        await watch.baseline();
        this.#o.log.info({ instance: instance.name }, 'guard: kernel text baselined');
        await this.#knownGoodVm(id);
      } else {
        this.#o.ingest!(await entry.watch.check());
      }
    } catch (err) {
      this.#o.log.warn({ err, instance: instance.name }, 'guard: kernel-text check failed');
    }
    if (this.#kernels.get(id) === entry) this.#scheduleKernel(id, this.#o.kernelCheckIntervalMs ?? 60_000);
  }

  /**
   * A VM's known-good state for hot recovery: a `guard-good` system snapshot
   * (memory and disk) taken right after its kernel text was baselined, so what
   * recovery resumes is the kernel the baseline vouches for (a guest without
   * a kernel-text map: once it has booted). Taken once per instance: a clean
   * guest's kernel text changes after that only by its own jump-label flips,
   * which the check explains (`levels/vm/guard/kernel-patches.ts`).
   */
  async #knownGoodVm(id: string): Promise<void> {
    const instance = this.#o.store.getInstanceById(id);
    const tenant = instance ? this.#o.store.getTenant(instance.tenantId) : null;
    if (!instance || !tenant || instance.actualState !== 'running' || this.#o.target.knownGood.has(id)) return;
    try {
      const started = Date.now();
      const taken = await this.#o.target.takeSnapshot(tenant, instance, 'guard-good');
      this.#o.target.knownGood.set(id, taken.id);
      const sizeBytes = this.#o.store.getSnapshotById(taken.id)?.sizeBytes;
      this.#o.log.info({ instance: instance.name, snapshot: taken.name, sizeBytes, ms: Date.now() - started }, 'guard: known-good snapshot of a VM');
    } catch (err) {
      this.#o.log.warn({ err, instance: instance.name }, 'guard: no known-good snapshot; recovery will not be possible');
    }
  }

  #dropKernel(id: string): void {
    clearTimeout(this.#kernels.get(id)?.timer);
    this.#kernels.delete(id);
  }

  #levers(level: string): InstanceLevers | null {
    return this.#o.registry.levers(level as Instance['level']);
  }

  /** Whether instances of `level` get kernel introspection. */
  #introspects(level: string): boolean {
    return this.#levers(level)?.kernelWatch !== undefined;
  }

  #treeOf(instance: Instance) {
    const tree = this.#levers(instance.level)?.tree(instance);
    return tree && existsSync(tree.root) ? tree : null;
  }

  /** Watches every static site's docroot (once per directory), and stops watching those no site uses any more. */
  async #syncDocroots(): Promise<void> {
    const tenants = new Map(this.#o.store.listTenants().map((t) => [t.id, t]));
    const wanted = new Map<string, { root: string; tenantId: string }>();
    for (const site of this.#o.store.listSites()) {
      const tenant = tenants.get(site.tenantId);
      if (site.target.kind !== 'static' || !tenant) continue;
      const root = join(tenantDocroot(this.#o.dataDir, tenant.id), site.target.root);
      wanted.set(docrootScope(tenant.id, site.target.root), { root, tenantId: tenant.id });
    }
    for (const scope of this.#o.monitor.scopes()) {
      if (scope.startsWith('docroot:') && !wanted.has(scope)) await this.#o.monitor.unwatch(scope, { forget: true });
    }
    for (const [scope, { root, tenantId }] of wanted) {
      if (this.#o.monitor.tree(scope) || !existsSync(root) || this.#copying.has(tenantId)) continue;
      await this.#o.monitor.watch({
        scope, root, tenantId, instanceId: null, level: STATIC_SITE_LEVEL, keepCopies: true, labels: { 'integrity.recoverable': true },
      });
    }
  }
}
