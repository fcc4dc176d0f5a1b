/**
 * How the guard's actuator acts on instances: through the same lifecycle
 * service as the API, as the system principal `guard`, so every reaction is
 * checked against the state machine, serialised with other work on the
 * instance, and recorded in the tenant's audit log with the rule as its reason.
 *
 * Throttle and network cut pull the levers of the instance's level module. Hot
 * recovery of an instance makes a replacement from the instance's last
 * known-good snapshot (taken by the guard when it baselined the instance: its
 * files, or a VM's kernel text) — a clone where the level clones (os, vm, emu:
 * one step, a fresh identity), else a launch the snapshot is restored into —
 * starts it, moves the instance's sites to it and waits until the gateway has
 * swapped its routes, and only then freezes the compromised instance, which is
 * kept for forensics — visitors never see a gap. A static docroot is recovered
 * by copying its known-good files back.
 */
import type { Principal } from '../../auth/policy.js';
import type { AuditLog } from '../../audit/log.js';
import type { ActionOutcome, ActuatorTarget, Alert, RecoverySubject } from '../actuator.js';
import type { IntegrityMonitor } from '../integrity.js';
import type { InstanceLevers } from '../../levels/module.js';
import type { DriverRegistry } from '../../levels/registry.js';
import type { Store } from '../../store/store.js';
import type { Instance, Snapshot, Tenant } from '../../store/types.js';
import type { AuditFn, InstanceService, UserAction } from '../../control/lifecycle/instances.js';
import type { OperationRunner } from '../../control/lifecycle/operations.js';

export const GUARD_PRINCIPAL: Principal = { userId: 'guard', name: 'guard', role: 'provider-admin', tenantId: null, tokenId: 'guard', reason: 'guard reaction' };

export interface GuardTargetDeps {
  store: Store;
  instances: InstanceService;
  operations: OperationRunner;
  audit: AuditLog;
  registry?: DriverRegistry;
  /** The front door, where there is one: recovery waits for its route swap. */
  routes?: RouteSync;
  /** Restores docroots and trees kept as known-good copies. */
  monitor?: Pick<IntegrityMonitor, 'restore' | 'tree'>;
  /** Where alerts go beyond the log and the event stream (the alert outputs). */
  alerts?: { deliver(alert: Alert): void };
  /** CPUs a throttled instance keeps; default 0.1. */
  throttleVcpus?: number;
}

/** Something that makes the gateway's routes follow the store now (the front door). */
export interface RouteSync {
  sync(): Promise<void>;
}

export class GuardTarget implements ActuatorTarget {
  readonly #d: GuardTargetDeps;
  /** instance id → id of its last known-good snapshot. */
  readonly knownGood = new Map<string, string>();
  /** Replacements made by hot recovery, to be baselined the moment they run. */
  readonly replacements = new Set<string>();
  /** instance id → its recovery in progress or done, so a burst of alerts recovers it once. */
  readonly #recoveries = new Map<string, Promise<ActionOutcome>>();

  constructor(store: Store, instances: InstanceService, operations: OperationRunner, audit: AuditLog, more: Partial<GuardTargetDeps> = {}) {
    this.#d = { store, instances, operations, audit, ...more };
  }

  /** Hands the alert to the outputs (queued there: never waits). */
  alert(alert: Alert): void {
    this.#d.alerts?.deliver(alert);
  }

  async freeze(id: string): Promise<ActionOutcome> {
    if ((await this.#afterRecovery(id)) && this.#find(id)?.instance.actualState === 'paused') return { frozenBy: 'recovery' };
    return this.#act(id, 'pause');
  }
  /** A recovered instance stays frozen (for forensics): undoing an earlier freeze does not wake it. */
  async resume(id: string): Promise<ActionOutcome> {
    if (await this.#afterRecovery(id)) return { kept: 'frozen after hot recovery' };
    return this.#act(id, 'resume');
  }
  /** The instance's current start, from its level's levers; undefined for levels whose events name none. */
  async generation(id: string): Promise<string | null | undefined> {
    const instance = this.#d.store.getInstanceById(id);
    if (!instance) return null;
    const levers = this.#d.registry?.levers(instance.level);
    return levers?.generation ? levers.generation(instance) : undefined;
  }

  async stop(id: string): Promise<ActionOutcome> {
    await this.#afterRecovery(id);
    return this.#act(id, 'stop');
  }

  /**
   * Waits for the instance's hot recovery, if one is under way or done, and
   * says whether it was replaced: the compromised instance serves until its
   * replacement does and is then frozen by the recovery, so a freeze, stop or
   * network cut meanwhile (an escalation of the alerts it keeps raising) would
   * open the very gap recovery avoids.
   */
  async #afterRecovery(id: string): Promise<boolean> {
    const recovery = this.#recoveries.get(id);
    return recovery ? recovery.then(() => true, () => false) : false;
  }

  /** A forensic snapshot through the lifecycle service: the filesystem, and memory where the level keeps it (vm, emu). */
  async snapshot(id: string): Promise<ActionOutcome> {
    const found = this.#find(id);
    if (!found) return;
    const taken = await this.takeSnapshot(found.tenant, found.instance, 'guard-forensic');
    return { snapshot: taken.name, snapshotId: taken.id, memory: this.#d.registry?.levers(found.instance.level)?.snapshotsMemory ?? false };
  }

  /**
   * Takes a snapshot named `<prefix>-<time>` as the guard and waits for it. It is
   * the system's (transparency): the tenant neither lists it nor pays for it.
   */
  async takeSnapshot(tenant: Tenant, instance: Instance, prefix: string): Promise<{ id: string; name: string }> {
    const name = `${prefix}-${Date.now().toString(36)}${Math.floor(Math.random() * 1296).toString(36)}`;
    const { snapshot, operation } = this.#d.instances.snapshot(GUARD_PRINCIPAL, tenant, instance, name, this.#auditFn, { system: true });
    await this.#finished(operation.id);
    return { id: snapshot.id, name };
  }

  async throttle(id: string): Promise<ActionOutcome> {
    await this.#afterRecovery(id);
    const { instance, levers } = this.#levers(id, 'throttle');
    const vcpus = this.#d.throttleVcpus ?? 0.1;
    const before = await levers.cpu(instance);
    await levers.setCpu(instance, vcpus);
    return { vcpus, before };
  }

  async unthrottle(id: string): Promise<ActionOutcome> {
    const { instance, levers } = this.#levers(id, 'unthrottle');
    await levers.setCpu(instance, instance.limits.vcpus);
    return { vcpus: instance.limits.vcpus };
  }

  async cut(id: string): Promise<ActionOutcome> {
    await this.#afterRecovery(id);
    const { instance, levers } = this.#levers(id, 'cut');
    await levers.setNetwork(instance, false);
    return { network: 'down' };
  }

  async reconnect(id: string): Promise<ActionOutcome> {
    const { instance, levers } = this.#levers(id, 'reconnect');
    await levers.setNetwork(instance, true);
    return { network: 'up' };
  }

  recover(subject: RecoverySubject): Promise<ActionOutcome> {
    if (subject.instanceId === null) {
      if (!subject.scope?.startsWith('docroot:') || !this.#d.monitor) return Promise.reject(new Error(`nothing to recover '${subject.scope}' from`));
      return this.#d.monitor.restore(subject.scope).then((r) => ({ scope: r.scope, restored: r.restored, removed: r.removed, missing: r.missing }));
    }
    const id = subject.instanceId;
    // Trees kept as known-good copies (an env handler) are recovered in place, like a docroot.
    const scope = subject.scope ?? `instance:${id}`;
    if (this.#d.monitor?.tree(scope)?.keepCopies) {
      return this.#d.monitor.restore(scope).then((r) => ({ scope: r.scope, restored: r.restored, removed: r.removed, missing: r.missing }));
    }
    let recovery = this.#recoveries.get(id);
    if (recovery) return recovery.then((done) => ({ ...done, already: true }));
    recovery = this.#replace(id);
    this.#recoveries.set(id, recovery);
    recovery.catch(() => this.#recoveries.delete(id)); // a failed recovery may be tried again
    return recovery;
  }

  /** Replaces the instance by one restored from its known-good snapshot; see the module comment. */
  async #replace(id: string): Promise<ActionOutcome> {
    const found = this.#find(id);
    if (!found) throw new Error(`instance ${id} no longer exists`);
    const { tenant, instance: old } = found;
    const snapshotId = this.knownGood.get(id);
    const snapshot = snapshotId ? this.#d.store.getSnapshotById(snapshotId) : null;
    if (!snapshot || snapshot.status !== 'ready') throw new Error(`${tenant.name}/${old.name} has no known-good snapshot`);
    const name = this.#replacementName(old);
    const fresh = this.#canClone(old) ? await this.#cloneGood(tenant, old, snapshot, name) : await this.#launchGood(tenant, old, snapshot, name);
    const sites = this.#moveSites(tenant, old, fresh);
    await this.#d.routes?.sync();
    const before = this.#current(old.id);
    if (before.actualState === 'running') await this.#act(old.id, 'pause');
    return {
      replacement: `${tenant.name}/${name}`, replacementId: fresh.id, knownGoodSnapshot: snapshot.name, knownGoodSnapshotId: snapshot.id,
      frozen: `${tenant.name}/${old.name}`, sites,
    };
  }

  /** Whether the level's driver makes a new instance from another's snapshot in one step (vm, emu, os). */
  #canClone(instance: Instance): boolean {
    const driver = this.#d.registry?.forLevel(instance.level);
    return !!driver?.clone && driver.supports.has('clone');
  }

  /**
   * The replacement as a clone of the known-good snapshot, started: one
   * operation, and a fresh identity (a VM resumes the snapshot's memory with its
   * own address, MAC and seed) — the only way at the vm and emu levels, whose
   * drivers restore only an instance's own snapshots.
   */
  async #cloneGood(tenant: Tenant, old: Instance, snapshot: Snapshot, name: string): Promise<Instance> {
    const { instance: fresh, operation } = this.#d.instances.clone(GUARD_PRINCIPAL, tenant, old, snapshot, { name, start: true }, this.#auditFn);
    // Marked before the operation reaches `running` (it runs on after this call returns): baselined at once, with a known-good snapshot of its own.
    this.replacements.add(fresh.id);
    await this.#finished(operation.id);
    return fresh;
  }

  /** The replacement launched stopped, the known-good snapshot restored into it, started (levels that restore but cannot clone). */
  async #launchGood(tenant: Tenant, old: Instance, snapshot: Snapshot, name: string): Promise<Instance> {
    const { instance: fresh, operation } = this.#d.instances.launch(GUARD_PRINCIPAL, tenant, {
      name, level: old.level, source: old.source, limits: old.limits, config: old.config, desiredState: 'stopped',
    }, this.#auditFn);
    await this.#finished(operation.id);
    // Baselined (with a known-good snapshot of its own: the old one goes with the old instance) as soon as it runs.
    this.replacements.add(fresh.id);
    await this.#finished(this.#d.instances.restore(GUARD_PRINCIPAL, tenant, this.#current(fresh.id), snapshot, this.#auditFn).id);
    await this.#finished(this.#d.instances.act(GUARD_PRINCIPAL, tenant, this.#current(fresh.id), 'start', {}, this.#auditFn).id);
    return fresh;
  }

  /** Points every site of `from` at `to`, in one transaction; returns their hostnames. */
  #moveSites(tenant: Tenant, from: Instance, to: Instance): string[] {
    const store = this.#d.store;
    return store.transaction(() => {
      const moved: string[] = [];
      for (const site of store.listSites({ tenantId: tenant.id, instanceId: from.id })) {
        if (site.target.kind !== 'instance') continue;
        store.deleteSite(site.id);
        store.createSite({ tenantId: tenant.id, hostname: site.hostname, target: { ...site.target, instance: to.name }, listeners: site.listeners });
        this.#auditFn({ action: 'site.update', target: `${tenant.name}/${site.hostname}`, tenantId: tenant.id, details: { from: from.name, to: to.name, reason: 'hot recovery' } });
        moved.push(site.hostname);
      }
      return moved;
    });
  }

  /** `web` → `web-r1`, `web-r1` → `web-r2`, … the first name the tenant does not use. */
  #replacementName(old: Instance): string {
    const base = old.name.replace(/-r\d+$/, '').slice(0, 56);
    const taken = new Set(this.#d.store.listInstances().filter((i) => i.tenantId === old.tenantId).map((i) => i.name));
    for (let n = 1; ; n++) if (!taken.has(`${base}-r${n}`)) return `${base}-r${n}`;
  }

  async #act(id: string, action: UserAction): Promise<ActionOutcome> {
    const found = this.#find(id);
    if (!found) return;
    const op = this.#d.instances.act(GUARD_PRINCIPAL, found.tenant, found.instance, action, { graceMs: 0 }, this.#auditFn);
    await this.#finished(op.id);
  }

  #levers(id: string, action: string): { instance: Instance; levers: InstanceLevers } {
    const found = this.#find(id);
    if (!found) throw new Error(`instance ${id} no longer exists`);
    const levers = this.#d.registry?.levers(found.instance.level) ?? null;
    if (!levers) throw new Error(`the ${found.instance.level} level has no lever to ${action} with`);
    return { instance: found.instance, levers };
  }

  async #finished(operationId: string): Promise<void> {
    const op = await this.#d.operations.wait(operationId, 120);
    if (op.status === 'failed') throw new Error(op.error?.message ?? 'operation failed');
  }

  #current(id: string): Instance {
    const i = this.#d.store.getInstanceById(id);
    if (!i) throw new Error(`instance ${id} was deleted`);
    return i;
  }

  #find(id: string) {
    const instance = this.#d.store.getInstanceById(id);
    const tenant = instance ? this.#d.store.getTenant(instance.tenantId) : null;
    return instance && tenant ? { instance, tenant } : null;
  }

  readonly #auditFn: AuditFn = (entry) => {
    this.#d.audit.append({ actor: { userId: null, name: 'guard', role: 'system' }, result: 'ok', reason: GUARD_PRINCIPAL.reason!, ...entry });
  };
}
