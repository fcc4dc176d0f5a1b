/**
 * Moving a running instance to another Strata daemon on this machine, live
 * (as `incus move` between remotes): the sending side. `receive.ts` is the other.
 *
 * 1. The target records the instance and its sites and starts its driver's
 *    `moveIn`, answering with the Unix socket to stream into (`receive`).
 * 2. This driver's `moveOut` streams memory (and disk) while the guest runs on;
 *    at the end the guest pauses here, and the target is told to run it
 *    (`receive/finish`), which answers once its gateway routes the sites.
 * 3. At once, with this QEMU still paused, the instance's record and its sites
 *    go from here (their quota is freed) and each site is forwarded to the
 *    target's gateway from then on (`forwards.ts`), so visitors who still come
 *    here keep being answered; then this QEMU ends.
 *
 * A failure before step 3 — the target refusing or unreachable, a wrong token,
 * the stream breaking, the guest not resuming there — leaves the instance
 * running here and nothing on the target. The whole move runs under the
 * instance's lock, so neither the reconciler nor another call acts on it meanwhile.
 */
import type { Principal } from '../../auth/policy.js';
import { InvalidStateTransition, StrataError, isStrataError, messageOf } from '../../core/errors.js';
import type { Instance, Operation, Tenant } from '../../store/types.js';
import { upstreamOf } from '../front-door/front-door.js';
import type { Forward, Forwards } from './forwards.js';
import type { AuditFn, InstanceServiceDeps } from '../lifecycle/instances.js';
import { callTarget, type MoveTarget } from './move-target.js';
import type { FinishAnswer, ReceiveAnswer, ReceiveRequest } from './receive.js';

/** The target starts a QEMU before it answers `receive`; it resumes and re-addresses the guest before it answers `finish`. */
const RECEIVE_CALL_MS = 120_000;
const FINISH_CALL_MS = 300_000;

/** The instance service's own, and: */
export interface MoverDeps extends InstanceServiceDeps {
  forwards: Forwards;
  /** Resolves once the gateway routes what the store (and the forwards) hold. */
  flushRoutes(): Promise<void>;
}

export class Mover {
  constructor(private readonly d: MoverDeps) {}

  /** Checks what can be checked at once, then moves in the background; `name`: the instance's name on the target (default its own). */
  move(p: Principal, tenant: Tenant, instance: Instance, to: MoveTarget & { name?: string }, audit: AuditFn): Operation {
    const driver = this.d.registry.forLevel(instance.level);
    if (!driver.moveOut || !driver.moveIn || !driver.supports.has('move')) {
      throw new StrataError('STRATA_ERR_UNSUPPORTED', `the ${instance.level} driver cannot move instances`, { level: instance.level, action: 'move' });
    }
    if (instance.actualState !== 'running') throw new InvalidStateTransition(instance.actualState, 'running', 'move');
    // The tenant's snapshots do not travel (yet): refused rather than lost. The guard's own are retaken there.
    const snapshots = this.d.store.listSnapshots({ instanceId: instance.id, system: false });
    if (snapshots.length > 0) {
      throw new StrataError('STRATA_ERR_NOT_EMPTY', `${tenant.name}/${instance.name} has ${snapshots.length} snapshot(s), which do not move: delete them first`, {
        snapshots: snapshots.map((x) => x.name),
      });
    }
    const moveOut = driver.moveOut.bind(driver);
    const name = to.name ?? instance.name;
    const target = `${tenant.name}/${instance.name}`;
    audit({ action: 'instance.move', target, tenantId: tenant.id, details: { direction: 'out', to: to.url, name } });
    return this.d.operations.start({ tenantId: tenant.id, kind: 'instance.move', target }, (progress) => this.#done(p, tenant, target, () =>
      this.d.locks.run(instance.id, async () => {
        const now = this.d.store.getInstanceById(instance.id);
        if (!now) throw new StrataError('STRATA_ERR_NOT_FOUND', `instance '${target}' was deleted`);
        if (now.actualState !== 'running') throw new InvalidStateTransition(now.actualState, 'running', 'move');
        const sites = this.d.store.listSites({ tenantId: tenant.id, instanceId: now.id })
          .flatMap((s) => (s.target.kind === 'instance' ? [{ hostname: s.hostname, port: s.target.port }] : []));
        const path = `/v1/tenants/${encodeURIComponent(tenant.name)}/instances/${encodeURIComponent(name)}/receive`;
        const call = { reason: p.reason, timeoutMs: RECEIVE_CALL_MS };
        const request: ReceiveRequest = { level: now.level, source: now.source, limits: now.limits, config: now.config, sites, from: target };
        const { socket } = await callTarget<ReceiveAnswer>(to, path, request, call);
        progress(0.1);
        const platformSnapshots = this.d.store.listSnapshots({ instanceId: now.id });
        let answer: FinishAnswer | null = null;
        /** From the guest's pause here (its state is across) until this gateway forwards its sites to the target. */
        let switchOverMs = 0;
        let handOverError: unknown = null;
        // Called with the guest paused here: the target runs it, then the sites switch over at once (before this QEMU is even gone).
        const confirm = async (): Promise<void> => {
          const paused = performance.now();
          answer = await callTarget<FinishAnswer>(to, `${path}/finish`, { ok: true }, { ...call, timeoutMs: FINISH_CALL_MS });
          // It runs there now: nothing from here on may make this side resume it.
          try {
            this.#handOver(p, tenant, now, sites, to.url, name, answer);
            await this.d.flushRoutes();
          } catch (e) {
            handOverError = e;
          }
          switchOverMs = Math.round(performance.now() - paused);
        };
        const broke = await moveOut(now.id, socket, confirm).then(() => null, (e: unknown) => e);
        const done = answer as FinishAnswer | null;
        // Once the target runs the guest the move is done, even if removing this side's leftovers failed (the reconciler removes orphans).
        if (broke && !done) {
          // Still running here: the target drops its half (a finish that failed there already has).
          await callTarget(to, `${path}/finish`, { ok: false }, call).catch(() => undefined);
          if (isStrataError(broke) && broke.code === 'STRATA_ERR_MOVE_TARGET') throw broke;
          throw new StrataError('STRATA_ERR_DRIVER', `the move broke off, ${target} runs on here: ${messageOf(broke)}`, undefined, { cause: broke });
        }
        if (!done) throw new StrataError('STRATA_ERR_INTERNAL', 'the driver moved the instance without confirming it');
        if (handOverError) {
          throw new StrataError('STRATA_ERR_INTERNAL', `${target} runs on ${to.url} now, but recording it here failed: ${messageOf(handOverError)}`);
        }
        for (const x of platformSnapshots) await driver.deleteSnapshot?.(tenant.id, x.id).catch(() => undefined);
        return { target: to.url, instance: `${tenant.name}/${name}`, sites: sites.map((s) => s.hostname), forwardedTo: done.gateway, switchOverMs };
      })));
  }

  /**
   * The instance now runs on the target: its record and sites go from here (the
   * driver already removed it), and the sites are forwarded to the target's gateway.
   */
  #handOver(p: Principal, tenant: Tenant, instance: Instance, sites: Array<{ hostname: string; port: number }>, url: string, name: string, answer: FinishAnswer): void {
    const forwards: Forward[] = [];
    for (const s of sites) {
      // Without a gateway there, straight to the guest's new address is the next best thing.
      const to = answer.gateway ?? upstreamOf(answer.info, s.port);
      if (to) forwards.push({ hostname: s.hostname, tenantId: tenant.id, to, target: url, instance: name, movedAt: new Date().toISOString() });
    }
    this.d.store.transaction(() => {
      for (const s of this.d.store.listSites({ tenantId: tenant.id, instanceId: instance.id })) this.d.store.deleteSite(s.id);
      this.d.store.deleteInstance(instance.id);
      this.d.forwards.add(forwards);
      this.d.audit.append({
        actor: { userId: p.userId, name: p.name, role: p.role }, tenantId: tenant.id, action: 'site.forward', target: `${tenant.name}/${instance.name}`,
        result: 'ok', ...(p.reason ? { reason: p.reason } : {}), details: { sites: forwards.map((f) => f.hostname), to: answer.gateway, target: url },
      });
    });
    this.d.events.publish('lifecycle', 'instance.state', tenant.id, { instance: instance.name, id: instance.id, level: instance.level, from: 'running', to: 'deleted' });
  }

  /** Audits the outcome of the background work as `instance.move.done`, as the instance service does for its operations. */
  async #done(p: Principal, tenant: Tenant, target: string, work: () => Promise<Record<string, unknown>>): Promise<Record<string, unknown>> {
    const entry = (result: 'ok' | 'error', details: Record<string, unknown>) => this.d.audit.append({
      actor: { userId: p.userId, name: p.name, role: p.role }, tenantId: tenant.id, action: 'instance.move.done', target, result,
      ...(p.reason ? { reason: p.reason } : {}), details: { direction: 'out', ...details },
    });
    try {
      const r = await work();
      entry('ok', r);
      return r;
    } catch (e) {
      entry('error', { error: messageOf(e) });
      throw e;
    }
  }
}

