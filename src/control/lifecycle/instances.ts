/**
 * The instance lifecycle, executed. The API calls this; this calls the level's
 * driver. Each public method checks the action against the shared state machine
 * and records the change (and its audit entry) in one transaction, answers at
 * once with an operation, and does the driver work in the background under the
 * instance's lock — the same lock the reconciler takes.
 *
 * Deleting removes the row at once (so the quota is freed and the deletion is
 * durable); the driver then tears the instance down. If the daemon dies first,
 * the reconciler finds the instance as an orphan and removes it.
 */
import type { Principal } from '../../auth/policy.js';
import type { AuditLog } from '../../audit/log.js';
import { StrataError, isStrataError, messageOf } from '../../core/errors.js';
import type { InstanceSpec, LevelDriver } from '../../levels/driver.js';
import { ACTIONS, checkAction, type InstanceState, type LifecycleAction } from '../../levels/lifecycle.js';
import type { DriverRegistry } from '../../levels/registry.js';
import type { NewInstance, Store } from '../../store/store.js';
import type { Instance, Operation, Snapshot, Tenant } from '../../store/types.js';
import type { EventBus } from '../../core/events.js';
import type { KeyedMutex } from '../../core/keyed-mutex.js';
import type { OperationRunner } from './operations.js';
import { changeInstance, type InstanceChange, type InstanceChangeResult } from './change.js';
import { checkQuota } from './quotas.js';
import { driverSpec, levelConfig, parseRestartPolicy } from './restart-policy.js';

export type UserAction = 'start' | 'stop' | 'pause' | 'resume' | 'restart';

const DEFAULT_GRACE_MS = 10_000;

export interface InstanceServiceDeps {
  store: Store;
  audit: AuditLog;
  events: EventBus;
  operations: OperationRunner;
  registry: DriverRegistry;
  locks: KeyedMutex;
}

/** What the driver gets: the control plane's own config keys (the restart policy) taken out. */
const specOf = (i: Instance): InstanceSpec => driverSpec({
  id: i.id, tenantId: i.tenantId, name: i.name, level: i.level, source: i.source, limits: i.limits, config: i.config,
});

export class InstanceService {
  constructor(private readonly d: InstanceServiceDeps) {}

  /** Creates the instance (quota checked in the same transaction) and starts it unless asked not to. */
  launch(p: Principal, tenant: Tenant, input: Omit<NewInstance, 'tenantId'>, audit: AuditFn): { instance: Instance; operation: Operation } {
    const driver = this.d.registry.forLevel(input.level);
    parseRestartPolicy(input.config);
    this.d.registry.validate(input.level, { source: input.source, limits: input.limits, config: levelConfig(input.config) });
    const instance = this.d.store.transaction(() => {
      checkQuota(tenant.quota, this.d.store.usage(tenant.id), {
        instances: 1, vcpus: input.limits.vcpus, memoryMiB: input.limits.memoryMiB, diskMiB: input.limits.diskMiB,
      });
      const created = this.d.store.createInstance({ ...input, tenantId: tenant.id });
      audit({ action: 'instance.create', target: `${tenant.name}/${input.name}`, tenantId: tenant.id, details: { level: input.level, limits: input.limits } });
      return created;
    });
    const operation = this.#operation(p, tenant, 'instance.create', instance, async () => {
      await this.d.locks.run(instance.id, async () => {
        // The reconciler may have got here first (e.g. after a restart): then there is nothing to create.
        await this.#drive(driver, instance, 'stopped', () => driver.create(specOf(instance)).catch((e: unknown) => {
          if (!(isStrataError(e) && e.code === 'STRATA_ERR_CONFLICT')) throw e;
        }));
        const now = this.#current(instance.id);
        if (instance.desiredState === 'running' && now.actualState !== 'running') {
          await this.#drive(driver, now, checkAction(now.actualState, 'start'), () => driver.start(instance.id));
        }
      });
    });
    this.#stateEvent(instance, null, 'creating');
    return { instance, operation };
  }

  /**
   * A new instance `input.name` from snapshot `snapshot` of `source`, at the
   * source's level, with its image, limits and config (quota-checked as a launch);
   * the driver gives it the snapshot's state and a fresh identity. Started unless
   * asked not to. Refused at once where the level's driver cannot clone.
   */
  clone(p: Principal, tenant: Tenant, source: Instance, snapshot: Snapshot, input: { name: string; start: boolean }, audit: AuditFn): { instance: Instance; operation: Operation } {
    const driver = this.d.registry.forLevel(source.level);
    if (!driver.clone || !driver.supports.has('clone')) {
      throw new StrataError('STRATA_ERR_UNSUPPORTED', `the ${source.level} driver cannot clone`, { level: source.level, action: 'clone' });
    }
    if (snapshot.status !== 'ready') {
      throw new StrataError('STRATA_ERR_INVALID_STATE_TRANSITION', `snapshot '${snapshot.name}' is ${snapshot.status}, not ready`);
    }
    const clone = driver.clone.bind(driver);
    const instance = this.d.store.transaction(() => {
      checkQuota(tenant.quota, this.d.store.usage(tenant.id), {
        instances: 1, vcpus: source.limits.vcpus, memoryMiB: source.limits.memoryMiB, diskMiB: source.limits.diskMiB,
      });
      const created = this.d.store.createInstance({
        tenantId: tenant.id, name: input.name, level: source.level, source: source.source, limits: source.limits, config: source.config,
        desiredState: input.start ? 'running' : 'stopped', cloneFrom: { instanceId: source.id, snapshotId: snapshot.id },
      });
      audit({
        action: 'instance.clone', target: `${tenant.name}/${input.name}`, tenantId: tenant.id,
        details: { from: `${tenant.name}/${source.name}@${snapshot.name}`, level: source.level, limits: source.limits },
      });
      return created;
    });
    const operation = this.#operation(p, tenant, 'instance.clone', instance, async () => {
      await this.d.locks.run(instance.id, async () => {
        // The source stays recorded until the clone is made: a daemon that dies before makes it again (reconciler.ts).
        await this.#drive(driver, instance, 'stopped', async () => {
          await clone(specOf(instance), { instanceId: source.id, snapshotId: snapshot.id });
          this.d.store.cloneMade(instance.id);
        });
        const now = this.#current(instance.id);
        if (instance.desiredState === 'running' && now.actualState !== 'running') {
          await this.#drive(driver, now, checkAction(now.actualState, 'start'), () => driver.start(instance.id));
        }
      });
    });
    this.#stateEvent(instance, null, 'creating');
    return { instance, operation };
  }

  /** start, stop, pause, resume or restart. Refused at once when the state machine says no. */
  act(p: Principal, tenant: Tenant, instance: Instance, action: UserAction, opts: { graceMs?: number }, audit: AuditFn): Operation {
    const driver = this.d.registry.forLevel(instance.level);
    const steps: LifecycleAction[] = action === 'restart' ? (instance.actualState === 'running' || instance.actualState === 'paused' ? ['stop', 'start'] : ['start']) : [action];
    checkAction(instance.actualState, steps[0]!);
    if ((action === 'pause' || action === 'resume') && !driver.supports.has(action)) {
      throw new StrataError('STRATA_ERR_UNSUPPORTED', `the ${instance.level} driver cannot ${action}`, { level: instance.level, action });
    }
    const desired = action === 'pause' ? 'paused' : action === 'stop' ? 'stopped' : 'running';
    this.d.store.transaction(() => {
      // A pause or resume that meets a stop in flight would, once the stop is done, leave
      // "paused" as the goal and the reconciler would start the instance again to pause it.
      if ((action === 'pause' || action === 'resume') && this.#current(instance.id).desiredState === 'stopped') {
        throw new StrataError('STRATA_ERR_CONFLICT', `instance ${tenant.name}/${instance.name} is being stopped`, { action });
      }
      this.d.store.updateInstance(instance.id, { desiredState: desired });
      audit({ action: `instance.${action}`, target: `${tenant.name}/${instance.name}`, tenantId: tenant.id });
    });
    return this.#operation(p, tenant, `instance.${action}`, instance, () =>
      this.d.locks.run(instance.id, async () => {
        for (const step of steps) {
          const current = this.#current(instance.id);
          // Already there (the reconciler may have done it while we waited for the lock): nothing to do.
          if (action !== 'restart' && current.actualState === ACTIONS[step].to) continue;
          const to = checkAction(current.actualState, step);
          await this.#drive(driver, current, to, () => this.#call(driver, step, instance.id, opts.graceMs));
        }
      }),
    );
  }

  /**
   * New code for a running instance without dropping requests (drivers that can:
   * the env level). The store takes the new source once the driver has it.
   */
  redeploy(p: Principal, tenant: Tenant, instance: Instance, next: { source?: string; code?: string }, audit: AuditFn): Operation {
    const driver = this.d.registry.forLevel(instance.level);
    if (!driver.redeploy) throw new StrataError('STRATA_ERR_UNSUPPORTED', `the ${instance.level} level cannot redeploy; stop, delete and launch instead`, { level: instance.level });
    const redeploy = driver.redeploy.bind(driver);
    audit({ action: 'instance.redeploy', target: `${tenant.name}/${instance.name}`, tenantId: tenant.id, details: next.source ? { source: next.source } : { code: 'inline' } });
    return this.#operation(p, tenant, 'instance.redeploy', instance, () =>
      this.d.locks.run(instance.id, async () => {
        await redeploy(instance.id, next);
        const current = this.#current(instance.id);
        const config = { ...current.config };
        if (next.code !== undefined) config.code = next.code;
        else delete config.code;
        this.d.store.updateInstance(instance.id, { source: next.source ?? null, config });
      }),
    );
  }

  /** New limits and/or config (`change.ts`); the answer says per field whether it is live or waits for the next start. */
  change(tenant: Tenant, instance: Instance, change: InstanceChange, opts: { ifMatch?: string; audit: AuditFn }): Promise<InstanceChangeResult> {
    return changeInstance(this.d, tenant, instance, change, opts);
  }

  /** Removes the row now; the driver tears the instance down in the background. */
  remove(p: Principal, tenant: Tenant, instance: Instance, audit: AuditFn): Operation {
    const driver = this.d.registry.forLevel(instance.level);
    const snapshots = this.d.store.listSnapshots({ instanceId: instance.id });
    this.d.store.transaction(() => {
      this.d.store.deleteInstance(instance.id);
      audit({ action: 'instance.delete', target: `${tenant.name}/${instance.name}`, tenantId: tenant.id });
    });
    this.#stateEvent(instance, instance.actualState, 'deleted');
    return this.#operation(p, tenant, 'instance.delete', instance, () =>
      this.d.locks.run(instance.id, async () => {
        const seen = await driver.inspect(instance.id);
        if (seen && (seen.state === 'running' || seen.state === 'paused')) await driver.stop(instance.id, { graceMs: DEFAULT_GRACE_MS });
        await driver.delete(instance.id);
        for (const s of snapshots) await driver.deleteSnapshot?.(tenant.id, s.id);
      }),
    );
  }

  /**
   * A snapshot of the instance. `system` (the guard's known-good and forensic
   * snapshots) makes it the platform's: no quota check, and its record, operation
   * and audit entries stay out of the tenant's sight (provider-wide, tenant null).
   */
  snapshot(p: Principal, tenant: Tenant, instance: Instance, name: string, audit: AuditFn, opts: { system?: boolean } = {}): { snapshot: Snapshot; operation: Operation } {
    const driver = this.d.registry.forLevel(instance.level);
    const system = opts.system ?? false;
    checkAction(instance.actualState, 'snapshot');
    if (!driver.supports.has('snapshot')) throw new StrataError('STRATA_ERR_UNSUPPORTED', `the ${instance.level} driver cannot snapshot`);
    const snapshot = this.d.store.transaction(() => {
      if (!system) checkQuota(tenant.quota, this.d.store.usage(tenant.id), {});
      const s = this.d.store.createSnapshot({ tenantId: tenant.id, instanceId: instance.id, name, system });
      audit({
        action: 'snapshot.create', target: `${tenant.name}/${instance.name}@${name}`, tenantId: system ? null : tenant.id,
        ...(system ? { details: { system: true, snapshotId: s.id } } : {}),
      });
      return s;
    });
    const operation = this.#operation(p, tenant, 'snapshot.create', instance, () =>
      this.d.locks.run(instance.id, async () => {
        try {
          const r = await driver.snapshot(instance.id, snapshot.id);
          this.d.store.updateSnapshot(snapshot.id, { status: 'ready', sizeBytes: r.sizeBytes, digest: r.digest });
          return { snapshot: snapshot.name, sizeBytes: r.sizeBytes, digest: r.digest };
        } catch (e) {
          this.d.store.updateSnapshot(snapshot.id, { status: 'failed' });
          throw e;
        }
      }),
      { system },
    );
    return { snapshot, operation };
  }

  restore(p: Principal, tenant: Tenant, instance: Instance, snapshot: Snapshot, audit: AuditFn): Operation {
    const driver = this.d.registry.forLevel(instance.level);
    checkAction(instance.actualState, 'restore');
    if (!driver.supports.has('restore')) throw new StrataError('STRATA_ERR_UNSUPPORTED', `the ${instance.level} driver cannot restore`);
    if (snapshot.status !== 'ready') {
      throw new StrataError('STRATA_ERR_INVALID_STATE_TRANSITION', `snapshot '${snapshot.name}' is ${snapshot.status}, not ready`);
    }
    this.d.store.transaction(() => {
      this.d.store.updateInstance(instance.id, { desiredState: 'stopped' });
      audit({ action: 'snapshot.restore', target: `${tenant.name}/${instance.name}@${snapshot.name}`, tenantId: tenant.id });
    });
    return this.#operation(p, tenant, 'snapshot.restore', instance, () =>
      this.d.locks.run(instance.id, async () => {
        const current = this.#current(instance.id);
        const to = checkAction(current.actualState, 'restore');
        await this.#drive(driver, current, to, () => driver.restore(instance.id, snapshot.id));
      }),
    );
  }

  /** Removes a snapshot's record now and its data in the background. */
  deleteSnapshot(tenant: Tenant, instance: Instance, snapshot: Snapshot, audit: AuditFn): void {
    const driver = this.d.registry.forLevel(instance.level);
    this.d.store.transaction(() => {
      this.d.store.deleteSnapshot(snapshot.id);
      audit({ action: 'snapshot.delete', target: `${tenant.name}/${instance.name}@${snapshot.name}`, tenantId: tenant.id });
    });
    void this.d.locks.run(instance.id, async () => {
      await driver.deleteSnapshot?.(tenant.id, snapshot.id);
    }).catch(() => undefined); // the data is unreachable without its record; a later cleanup may collect it
  }

  #current(id: string): Instance {
    const i = this.d.store.getInstanceById(id);
    if (!i) throw new StrataError('STRATA_ERR_NOT_FOUND', `instance '${id}' was deleted`);
    return i;
  }

  #call(driver: LevelDriver, step: LifecycleAction, id: string, graceMs?: number): Promise<void> {
    switch (step) {
      case 'start': return driver.start(id);
      case 'stop': return driver.stop(id, { graceMs: graceMs ?? DEFAULT_GRACE_MS });
      case 'pause': return driver.pause(id);
      case 'resume': return driver.resume(id);
      default: throw new StrataError('STRATA_ERR_INTERNAL', `no driver call for ${step}`);
    }
  }

  /**
   * Runs one driver call and records the resulting state — with the driver's live
   * facts (address, pid …) when it now runs — or `failed` with the error.
   */
  async #drive(driver: LevelDriver, instance: Instance, to: InstanceState, call: () => Promise<void>): Promise<void> {
    const from = this.d.store.getInstanceById(instance.id)?.actualState ?? instance.actualState;
    try {
      await call();
    } catch (e) {
      const message = messageOf(e);
      if (this.d.store.getInstanceById(instance.id)) {
        this.d.store.setActualState(instance.id, 'failed', { error: message });
        this.#stateEvent(instance, from, 'failed');
      }
      throw isStrataError(e) ? e : new StrataError('STRATA_ERR_DRIVER', message, undefined, { cause: e });
    }
    // Live facts matter once it runs (the gateway routes by its address); other states keep what was known.
    const seen = to === 'running' ? await driver.inspect(instance.id) : null;
    const known = this.d.store.getInstanceById(instance.id);
    if (!known) return;
    // Restarts made by the restart policy stay counted across a user's start or restart.
    const restarts = known.info.restarts;
    this.d.store.setActualState(instance.id, to, seen ? { ...seen.info, ...(restarts !== undefined ? { restarts } : {}) } : undefined);
    this.#stateEvent(instance, from, to);
  }

  #stateEvent(i: Instance, from: InstanceState | null, to: InstanceState): void {
    this.d.events.publish('lifecycle', 'instance.state', i.tenantId, { instance: i.name, id: i.id, level: i.level, from, to });
  }

  /** Starts the operation and audits its outcome under the caller's name; a `system` one is the provider's, not the tenant's. */
  #operation(p: Principal, tenant: Tenant, kind: string, instance: Instance, work: () => Promise<Record<string, unknown> | void>, scope = { system: false }): Operation {
    const tenantId = scope.system ? null : tenant.id;
    const target = `${tenant.name}/${instance.name}`;
    return this.d.operations.start({ tenantId, kind, target }, async () => {
      const entry = (result: 'ok' | 'error', details?: Record<string, unknown>) =>
        this.d.audit.append({
          actor: { userId: p.userId, name: p.name, role: p.role }, tenantId, action: `${kind}.done`, target, result,
          ...(p.reason ? { reason: p.reason } : {}), ...(details ? { details } : {}),
        });
      try {
        const r = await work();
        entry('ok');
        return r;
      } catch (e) {
        entry('error', { error: messageOf(e) });
        throw e;
      }
    });
  }
}

export type AuditFn = (entry: { action: string; target: string; tenantId: string | null; details?: Record<string, unknown> }) => void;
