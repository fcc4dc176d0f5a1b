/**
 * The reconciler drives what the drivers actually run toward what the store says
 * should run. It is how Strata survives its own crash or restart: instances that
 * kept running are adopted, instances that died are started again, and whatever a
 * driver holds that the store no longer knows (an orphan, e.g. of a delete cut
 * short) is removed.
 *
 * One pass (`reconcileOnce`), for every available driver:
 *
 * - lists what the driver holds, then reads the store (in that order: the API
 *   writes an instance's row before it asks the driver, so anything the driver
 *   lists that the store then lacks really is gone from the store);
 * - skips every instance whose observed state already matches the store and its
 *   desired state — the common case costs no lock and no write;
 * - for the rest, takes the instance's lock (the one the API's lifecycle executor
 *   takes), reads both sides again — the API may have acted while we waited — and
 *   then records what it observes and takes the steps the shared state machine
 *   allows toward the desired state: create, start, stop, pause, resume.
 *
 * An instance still `creating` that its driver does not hold is created — but
 * after start-up only once a second pass finds it so: until then it is most
 * likely a launch whose operation is about to take the lock, and creating it
 * first would make that launch fail on a duplicate.
 *
 * A clone carries its source (a snapshot) until the driver has made it. One the
 * daemon did not finish (it died mid-copy) is made again from that snapshot —
 * whatever the driver holds of it is half a copy and is removed first — never
 * created empty from its image; where that cannot be done the instance is
 * marked `failed` with the reason.
 *
 * An instance that died while the daemon watched it (recorded alive, observed
 * dead, meant to run) meets its restart policy (`restart-policy.ts`): left dead
 * and then meant to be stopped, or started again after an exponential back-off.
 *
 * A driver call that throws marks that instance `failed` with the error in its
 * info; the pass goes on with the others, and the next pass tries again.
 * `start()` runs a pass at once and then every `intervalMs`; passes never overlap.
 */
import type { InstanceInfo } from '../../core/instance-facts.js';
import type { InstanceSpec, LevelDriver, ObservedInstance } from '../../levels/driver.js';
import { canTransition, type DesiredState, type InstanceState } from '../../levels/lifecycle.js';
import type { DriverRegistry } from '../../levels/registry.js';
import type { CloneSource, LevelId } from '../../store/types.js';
import type { ReconcileRecord, ReconcileStore } from '../../store/store.js';
import type { KeyedMutex } from '../../core/keyed-mutex.js';
import { RestartBackoff, driverSpec, restartPolicyOf, shouldRestart, type BackoffOptions } from './restart-policy.js';
import { isAlive, isReachable, nextStep, stepTarget, type Step } from './steps.js';
import { messageOf } from '../../core/errors.js';

/**
 * `instance.state` accompanies every actual-state change the reconciler records;
 * the other types say why, once per instance and pass.
 */
export interface ReconcileEvent {
  type: 'instance.adopted' | 'instance.orphan-removed' | 'instance.restarted' | 'instance.exited' | 'instance.state';
  instanceId: string;
  /** Absent for orphans: the store no longer says whose they were. */
  tenantId?: string;
  level: LevelId;
  from?: InstanceState;
  to?: InstanceState;
  error?: string;
  /** instance.exited: the instance's restart policy, and whether it is started again. */
  policy?: string;
  restart?: boolean;
  /** instance.restarted by the restart policy: its restarts so far. */
  restarts?: number;
}

export interface ReconcileLogger {
  info(o: object, msg?: string): void;
  warn(o: object, msg?: string): void;
  error(o: object, msg?: string): void;
}

export interface ReconcilerOptions {
  store: ReconcileStore;
  registry: DriverRegistry;
  locks: KeyedMutex;
  onEvent?: (e: ReconcileEvent) => void;
  logger?: ReconcileLogger;
  /** Pause between passes; default 10 s. */
  intervalMs?: number;
  /** Grace the reconciler gives a process it stops (an orphan, or an instance that should be stopped) before killing it; default 10 s, as for a user's stop. */
  stopGraceMs?: number;
  /** Back-off of restarts made by instances' restart policies. */
  restartBackoff?: BackoffOptions;
  /**
   * Records a new desired state: an instance that died and whose policy does not
   * restart it is meant to be stopped from then on (so a daemon restart does not
   * start it either). Without it, the reconciler only remembers that for its lifetime.
   */
  setDesiredState?: (id: string, desired: DesiredState) => void;
  /** Milliseconds since the epoch, for the restart back-off; tests pass a clock they move. Default Date.now. */
  now?: () => number;
}

/** Counts for one pass. `unchanged` counts known instances that needed nothing. */
export interface ReconcileReport {
  adopted: number;
  orphansRemoved: number;
  created: number;
  started: number;
  stopped: number;
  paused: number;
  resumed: number;
  failed: number;
  unchanged: number;
  /** Known instances whose level has no available driver, or whose driver could not be listed. */
  skipped: number;
  /** Failures that are not an instance's own (a driver's list, an orphan's removal). */
  errors: Array<{ driver: string; instanceId?: string; message: string }>;
  durationMs: number;
}

interface PassContext {
  report: ReconcileReport;
  /** Becomes `#unlaunched` when the pass ends. */
  unlaunched: Set<string>;
}

const DEFAULT_INTERVAL_MS = 10_000;
const DEFAULT_STOP_GRACE_MS = 10_000;

const silentLogger: ReconcileLogger = { info() {}, warn() {}, error() {} };

const emptyReport = (): ReconcileReport => ({
  adopted: 0, orphansRemoved: 0, created: 0, started: 0, stopped: 0, paused: 0, resumed: 0, failed: 0, unchanged: 0, skipped: 0,
  errors: [], durationMs: 0,
});

export class Reconciler {
  readonly #store: ReconcileStore;
  readonly #registry: DriverRegistry;
  readonly #locks: KeyedMutex;
  readonly #onEvent: ((e: ReconcileEvent) => void) | undefined;
  readonly #log: ReconcileLogger;
  readonly #intervalMs: number;
  readonly #stopGraceMs: number;

  /** Drivers listed at least once: the first listing adopts everything alive, to record its live facts. */
  readonly #listedDrivers = new Set<string>();
  /** Instances found `creating` and missing by the last pass: no launch is creating them, so the next pass does. */
  #unlaunched = new Set<string>();
  #current: Promise<ReconcileReport> | null = null;
  #queued: Promise<ReconcileReport> | null = null;
  #timer: NodeJS.Timeout | null = null;
  #looping = false;
  readonly #backoff: RestartBackoff;
  readonly #setDesiredState: ((id: string, desired: DesiredState) => void) | undefined;
  readonly #now: () => number;
  /** Instances that died and stay down by their policy, where the store cannot be told (no setDesiredState). */
  readonly #keptDown = new Set<string>();
  /** A pass asked for when the earliest back-off ends (only while looping). */
  #wake: { timer: NodeJS.Timeout; at: number } | null = null;

  constructor(opts: ReconcilerOptions) {
    this.#store = opts.store;
    this.#registry = opts.registry;
    this.#locks = opts.locks;
    this.#onEvent = opts.onEvent;
    this.#log = opts.logger ?? silentLogger;
    this.#intervalMs = opts.intervalMs ?? DEFAULT_INTERVAL_MS;
    this.#stopGraceMs = opts.stopGraceMs ?? DEFAULT_STOP_GRACE_MS;
    this.#backoff = new RestartBackoff(opts.restartBackoff);
    this.#setDesiredState = opts.setDesiredState;
    this.#now = opts.now ?? Date.now;
  }

  /**
   * Runs one pass. While a pass runs, callers share one follow-up pass instead of
   * overlapping it, so a pass asked for after a change always sees that change.
   */
  reconcileOnce(): Promise<ReconcileReport> {
    if (this.#queued) return this.#queued;
    if (this.#current) {
      const queued = this.#current.then(() => {
        this.#queued = null;
        return this.#begin();
      });
      this.#queued = queued;
      return queued;
    }
    return this.#begin();
  }

  /** Runs a pass now, then one every `intervalMs` after the previous ends; resolves with the first. */
  start(): Promise<ReconcileReport> {
    if (this.#looping) return this.reconcileOnce();
    this.#looping = true;
    return this.#tick();
  }

  /** Stops the loop and waits for a pass in progress (and one queued behind it). */
  async stop(): Promise<void> {
    this.#looping = false;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    if (this.#wake) clearTimeout(this.#wake.timer);
    this.#wake = null;
    await this.#queued;
    await this.#current;
  }

  #tick(): Promise<ReconcileReport> {
    this.#timer = null;
    const pass = this.reconcileOnce();
    void pass.then(() => {
      // A stop() and start() during the pass may have begun another loop: keep one timer.
      if (!this.#looping || this.#timer) return;
      this.#timer = setTimeout(() => void this.#tick(), this.#intervalMs);
      this.#timer.unref();
    });
    return pass;
  }

  #begin(): Promise<ReconcileReport> {
    const pass = this.#pass()
      .catch((e: unknown): ReconcileReport => {
        this.#log.error({ err: messageOf(e) }, 'reconcile: pass aborted');
        return { ...emptyReport(), errors: [{ driver: 'reconciler', message: messageOf(e) }] };
      })
      .finally(() => {
        if (this.#current === pass) this.#current = null;
      });
    this.#current = pass;
    return pass;
  }

  /** Failures of drivers and instances land in the report and the log; only a bug rejects. */
  async #pass(): Promise<ReconcileReport> {
    const began = performance.now();
    const report = emptyReport();
    const listings = await Promise.all(
      this.#registry.availableDrivers().map(async (driver) => {
        try {
          return { driver, observed: await driver.list() };
        } catch (e) {
          report.errors.push({ driver: driver.id, message: messageOf(e) });
          this.#log.error({ driver: driver.id, err: messageOf(e) }, 'reconcile: driver list failed; its instances are skipped this pass');
          return null;
        }
      }),
    );
    let records: ReconcileRecord[];
    try {
      records = this.#store.listInstancesForReconcile().filter((r) => r.actualState !== 'deleted');
    } catch (e) {
      report.errors.push({ driver: 'store', message: messageOf(e) });
      this.#log.error({ err: messageOf(e) }, 'reconcile: cannot read the store; pass skipped');
      report.durationMs = performance.now() - began;
      return report;
    }
    const listedLevels = new Set<string>(listings.flatMap((l) => (l ? [l.driver.level] : [])));
    report.skipped = records.filter((r) => !listedLevels.has(r.spec.level)).length;

    const pass: PassContext = { report, unlaunched: new Set() };
    for (const listing of listings) {
      if (listing) await this.#reconcileDriver(listing.driver, listing.observed, records, pass);
    }
    this.#unlaunched = pass.unlaunched;
    report.durationMs = performance.now() - began;
    const { errors, durationMs, unchanged, skipped, ...changes } = report;
    if (Object.values(changes).some((n) => n > 0) || errors.length > 0) {
      this.#log.info({ ...changes, unchanged, skipped, errors: errors.length, durationMs: Math.round(durationMs) }, 'reconcile pass');
    }
    return report;
  }

  async #reconcileDriver(driver: LevelDriver, observed: ObservedInstance[], records: ReconcileRecord[], pass: PassContext): Promise<void> {
    const { report } = pass;
    const adopting = !this.#listedDrivers.has(driver.id);
    const observedById = new Map(observed.map((o) => [o.id, o]));
    const recordById = new Map(records.filter((r) => r.spec.level === driver.level).map((r) => [r.spec.id, r]));
    for (const id of new Set([...recordById.keys(), ...observedById.keys()])) {
      const record = recordById.get(id) ?? null;
      if (record && !this.#needsWork(driver, record, observedById.get(id) ?? null, adopting)) {
        report.unchanged++;
        continue;
      }
      try {
        const changed = await this.#locks.run(id, () => this.#reconcileInstance(driver, id, adopting, pass));
        if (record && !changed) report.unchanged++;
      } catch (e) {
        // Only the store can throw here (driver failures are the instance's own); keep going with the rest.
        report.errors.push({ driver: driver.id, instanceId: id, message: messageOf(e) });
        this.#log.error({ driver: driver.id, instanceId: id, err: messageOf(e) }, 'reconcile: instance skipped');
      }
    }
    this.#listedDrivers.add(driver.id);
  }

  /** A cheap look at the listing, so instances already where they should be take no lock. */
  #needsWork(driver: LevelDriver, record: ReconcileRecord, observed: ObservedInstance | null, adopting: boolean): boolean {
    if (!observed || record.cloneFrom) return true;
    if (observed.state !== record.actualState) return true;
    if (adopting && isAlive(observed.state)) return true;
    return nextStep(observed.state, record.desiredState, driver.supports) !== null;
  }

  /** Under the instance's lock. Returns whether anything was recorded or done. */
  async #reconcileInstance(driver: LevelDriver, id: string, adopting: boolean, pass: PassContext): Promise<boolean> {
    const { report } = pass;
    const record = this.#lookup(id, driver.level);
    let observed: ObservedInstance | null;
    try {
      observed = await driver.inspect(id);
    } catch (e) {
      if (record) this.#fail(driver, record, record.actualState, e, report);
      else this.#orphanError(driver, id, e, report);
      return record !== null;
    }
    if (!record) {
      if (observed) await this.#removeOrphan(driver, observed, report);
      return false;
    }

    if (!observed && record.actualState === 'creating' && !adopting && !this.#unlaunched.has(id)) {
      pass.unlaunched.add(id);
      return false;
    }

    if (observed && record.cloneFrom) {
      // Under the lock a clone's source is still set only when its making was cut short: the driver's copy is not to be trusted.
      try {
        if (isAlive(observed.state)) await driver.stop(id, { graceMs: 0 });
        await driver.delete(id);
      } catch (e) {
        this.#fail(driver, record, record.actualState, e, report);
        return true;
      }
      this.#log.warn({ instanceId: id, from: record.cloneFrom }, 'reconcile: removed an unfinished clone; making it again');
      observed = null;
    }

    const { spec, desiredState } = record;
    let state = record.actualState;
    let changed = false;
    if (observed && observed.state !== state && !isReachable(state, observed.state)) {
      this.#log.warn({ instanceId: id, from: state, to: observed.state }, 'reconcile: observed state unreachable from recorded state; left as is');
      return false;
    }
    if (observed && (observed.state !== state || (adopting && isAlive(observed.state)))) {
      this.#store.setActualState(id, observed.state, this.#withRestarts(id, observed.info ?? {}));
      if (observed.state !== state) this.#emit({ type: 'instance.state', instanceId: id, tenantId: spec.tenantId, level: driver.level, from: state, to: observed.state });
      if (isAlive(observed.state)) {
        report.adopted++;
        this.#emit({ type: 'instance.adopted', instanceId: id, tenantId: spec.tenantId, level: driver.level, from: state, to: observed.state });
      }
      state = observed.state;
      changed = true;
    }
    if (observed && isAlive(observed.state)) this.#keptDown.delete(id);

    // A process that died while we watched (not while the daemon was down: that is recovery) meets its restart policy.
    const byPolicy = !adopting && observed !== null && !isAlive(observed.state) && desiredState !== 'stopped'
      && (isAlive(record.actualState) || this.#backoff.pending(id) || this.#keptDown.has(id));
    if (byPolicy && observed && isAlive(record.actualState)) {
      const policy = restartPolicyOf(spec.config);
      const exitCode = observed.info?.exitCode;
      const restart = shouldRestart(policy, exitCode);
      this.#emit({ type: 'instance.exited', instanceId: id, tenantId: spec.tenantId, level: driver.level, from: record.actualState, to: state, policy, restart });
      if (!restart) {
        this.#keepDown(id);
        return true;
      }
      this.#backoff.died(id, this.#now());
    }
    if (byPolicy) {
      if (this.#keptDown.has(id)) return changed;
      const wait = this.#backoff.waitMs(id, this.#now());
      if (wait > 0) {
        this.#wakeIn(wait);
        return changed;
      }
    }

    const before = state;
    let acted = false;
    let restarted = false;
    let current: InstanceState | 'missing' = observed ? state : 'missing';
    try {
      for (let step = nextStep(current, desiredState, driver.supports); step; step = nextStep(current, desiredState, driver.supports)) {
        const to = stepTarget(state, step);
        await this.#call(driver, record, step);
        this.#count(step, report);
        acted = true;
        if (step === 'start') restarted = true;
        this.#store.setActualState(id, to);
        if (to !== state) this.#emit({ type: 'instance.state', instanceId: id, tenantId: spec.tenantId, level: driver.level, from: state, to });
        state = to;
        current = to;
      }
      if (acted) {
        if (byPolicy && restarted) this.#backoff.restarted(id, this.#now());
        // Record fresh live facts (pid, address), which also clears an earlier error; restarts made by the policy are counted there.
        const fresh = await driver.inspect(id);
        this.#store.setActualState(id, state, this.#withRestarts(id, fresh?.info ?? {}));
        changed = true;
      }
    } catch (e) {
      this.#fail(driver, record, state, e, report);
      return true;
    }
    if (restarted) {
      this.#emit({
        type: 'instance.restarted', instanceId: id, tenantId: spec.tenantId, level: driver.level, from: before, to: state,
        ...(byPolicy ? { restarts: this.#backoff.total(id) } : {}),
      });
      this.#log.info({ instanceId: id, from: before, to: state }, 'reconcile: restarted an instance that should run');
    }
    return changed;
  }

  /** Live facts as recorded: with the restarts the policy made, once there are any. */
  #withRestarts(id: string, info: InstanceInfo): InstanceInfo {
    const restarts = this.#backoff.total(id);
    return restarts > 0 ? { ...info, restarts } : info;
  }

  /** An instance that died and whose policy leaves it dead: it is meant to be stopped from now on. */
  #keepDown(id: string): void {
    this.#backoff.forget(id);
    if (this.#setDesiredState) this.#setDesiredState(id, 'stopped');
    else this.#keptDown.add(id);
  }

  /** Asks for a pass when a back-off ends, so a restart is not late by a whole interval. */
  #wakeIn(ms: number): void {
    if (!this.#looping) return;
    const at = Date.now() + ms;
    if (this.#wake && this.#wake.at <= at) return;
    if (this.#wake) clearTimeout(this.#wake.timer);
    const timer = setTimeout(() => {
      this.#wake = null;
      if (this.#looping) void this.reconcileOnce();
    }, ms + 5);
    timer.unref();
    this.#wake = { timer, at };
  }

  #call(driver: LevelDriver, record: ReconcileRecord, step: Step): Promise<void> {
    const { spec } = record;
    switch (step) {
      case 'create': return record.cloneFrom ? this.#clone(driver, spec, record.cloneFrom) : driver.create(driverSpec(spec));
      case 'start': return driver.start(spec.id);
      case 'stop': return driver.stop(spec.id, { graceMs: this.#stopGraceMs });
      case 'pause': return driver.pause(spec.id);
      case 'resume': return driver.resume(spec.id);
    }
  }

  /** Makes a clone from its snapshot (never from its image: that would lose the snapshot's data without a word). */
  async #clone(driver: LevelDriver, spec: InstanceSpec, from: CloneSource): Promise<void> {
    if (!driver.clone || !driver.supports.has('clone')) {
      throw new Error(`unfinished clone of snapshot ${from.snapshotId}: the ${driver.level} driver cannot clone`);
    }
    try {
      await driver.clone(driverSpec(spec), from);
    } catch (e) {
      throw new Error(`unfinished clone of snapshot ${from.snapshotId} could not be made again: ${messageOf(e)}`, { cause: e });
    }
    this.#store.cloneMade?.(spec.id);
  }

  #count(step: Step, report: ReconcileReport): void {
    switch (step) {
      case 'create': report.created++; break;
      case 'start': report.started++; break;
      case 'stop': report.stopped++; break;
      case 'pause': report.paused++; break;
      case 'resume': report.resumed++; break;
    }
  }

  #fail(driver: LevelDriver, record: ReconcileRecord, state: InstanceState, e: unknown, report: ReconcileReport): void {
    const error = messageOf(e);
    const { id, tenantId } = record.spec;
    report.failed++;
    this.#log.warn({ instanceId: id, driver: driver.id, err: error }, 'reconcile: driver call failed; instance marked failed');
    if (state !== 'failed' && !canTransition(state, 'failed')) return;
    this.#store.setActualState(id, 'failed', { error });
    if (state !== 'failed') this.#emit({ type: 'instance.state', instanceId: id, tenantId, level: driver.level, from: state, to: 'failed', error });
  }

  async #removeOrphan(driver: LevelDriver, observed: ObservedInstance, report: ReconcileReport): Promise<void> {
    try {
      if (isAlive(observed.state)) await driver.stop(observed.id, { graceMs: this.#stopGraceMs });
      await driver.delete(observed.id);
    } catch (e) {
      this.#orphanError(driver, observed.id, e, report);
      return;
    }
    report.orphansRemoved++;
    this.#log.info({ instanceId: observed.id, driver: driver.id, state: observed.state }, 'reconcile: removed an orphan');
    this.#emit({ type: 'instance.orphan-removed', instanceId: observed.id, level: driver.level, from: observed.state, to: 'deleted' });
  }

  #orphanError(driver: LevelDriver, id: string, e: unknown, report: ReconcileReport): void {
    report.errors.push({ driver: driver.id, instanceId: id, message: messageOf(e) });
    this.#log.warn({ instanceId: id, driver: driver.id, err: messageOf(e) }, 'reconcile: could not remove an orphan');
  }

  /** The store's record for `id` as this driver's: null when unknown, deleted or of another level. */
  #lookup(id: string, level: LevelId): ReconcileRecord | null {
    const record = this.#store.getInstanceForReconcile
      ? this.#store.getInstanceForReconcile(id)
      : this.#store.listInstancesForReconcile().find((r) => r.spec.id === id) ?? null;
    return record && record.actualState !== 'deleted' && record.spec.level === level ? record : null;
  }

  #emit(e: ReconcileEvent): void {
    if (!this.#onEvent) return;
    try {
      this.#onEvent(e);
    } catch (err) {
      this.#log.warn({ err: messageOf(err), event: e.type }, 'reconcile: event listener threw');
    }
  }
}
