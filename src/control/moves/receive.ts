/**
 * The receiving side of a move between daemons (`move.ts` is the sending side).
 *
 * `begin` records the instance (quota-checked, with the sites that follow it,
 * audited `instance.move` direction in) and starts the driver's `moveIn` under
 * the instance's lock — the reconciler's lock, so it leaves the half-made
 * instance alone — and answers with the Unix socket the sender's QEMU streams
 * into. `finish` is the sender's word once its state is across: `ok` lets the
 * guest run here (the record becomes running, the sites route to it) and
 * answers where this daemon's gateway listens; not `ok`, or no word within
 * `RECEIVE_TIMEOUT_MS`, undoes it all: the driver removes its half, the records
 * go, the quota is free again.
 */
import type { AuditLog } from '../../audit/log.js';
import type { Principal } from '../../auth/policy.js';
import { StrataError, conflict, isStrataError, messageOf, notFound } from '../../core/errors.js';
import type { InstanceInfo } from '../../core/instance-facts.js';
import type { LevelDriver } from '../../levels/driver.js';
import type { DriverRegistry } from '../../levels/registry.js';
import type { Store } from '../../store/store.js';
import type { Instance, LevelId, Tenant } from '../../store/types.js';
import type { EventBus } from '../../core/events.js';
import type { AuditFn } from '../lifecycle/instances.js';
import type { KeyedMutex } from '../../core/keyed-mutex.js';
import type { Gateway } from '../../gateway/index.js';
import type { FrontDoor } from '../front-door/front-door.js';
import { checkSiteName } from '../front-door/hostnames.js';
import { checkQuota } from '../lifecycle/quotas.js';
import { driverSpec } from '../lifecycle/restart-policy.js';

/** How long a begun receive waits for the sender's `finish`. */
export const RECEIVE_TIMEOUT_MS = 10 * 60_000;

export interface ReceiveRequest {
  level: LevelId;
  source: string | null;
  limits: Instance['limits'];
  config: Record<string, unknown>;
  /** The sender's sites of this instance, re-created here. */
  sites: Array<{ hostname: string; port: number }>;
  /** Where it comes from, for the audit log: `URL tenant/name`. */
  from: string;
}

export interface ReceiveAnswer {
  socket: string;
}

export interface FinishAnswer {
  /** Where this daemon's gateway answers HTTP (null without one): the sender forwards the moved sites there. */
  gateway: { host: string; port: number } | null;
  /** The instance's live facts here (its address): where to send without a gateway. */
  info: InstanceInfo;
}

interface Pending {
  /** Who began it: the failure's audit entry is theirs. */
  p: Principal;
  instance: Instance;
  tenant: Tenant;
  release: { resolve(): void; reject(e: Error): void };
  /** Settles once the driver's moveIn has: the guest runs here, or its half is gone. */
  moved: Promise<void>;
  timer: NodeJS.Timeout;
}

export interface ReceiverDeps {
  store: Store;
  audit: AuditLog;
  events: EventBus;
  registry: DriverRegistry;
  locks: KeyedMutex;
  /** Resolves once the gateway routes what the store holds (none: no gateway). */
  flushRoutes(): Promise<void>;
  /** This daemon's HTTP gateway address, when it runs one. */
  gatewayAddress(): { host: string; port: number } | null;
}

export class Receiver {
  readonly #pending = new Map<string, Pending>();

  constructor(private readonly d: ReceiverDeps) {}

  async begin(p: Principal, tenant: Tenant, name: string, input: ReceiveRequest, audit: AuditFn): Promise<{ instance: Instance; answer: ReceiveAnswer }> {
    const driver = this.#mover(input.level);
    const instance = this.d.store.transaction(() => {
      checkQuota(tenant.quota, this.d.store.usage(tenant.id), {
        instances: 1, vcpus: input.limits.vcpus, memoryMiB: input.limits.memoryMiB, diskMiB: input.limits.diskMiB, sites: input.sites.length,
      });
      for (const s of input.sites) {
        if (this.d.store.getSite(s.hostname)) throw conflict(`site ${s.hostname} already exists here`, { hostname: s.hostname });
        checkSiteName(this.d.store, tenant.id, s.hostname);
      }
      const created = this.d.store.createInstance({
        tenantId: tenant.id, name, level: input.level, source: input.source, limits: input.limits, config: input.config, desiredState: 'running',
      });
      for (const s of input.sites) this.d.store.createSite({ tenantId: tenant.id, hostname: s.hostname, target: { kind: 'instance', instance: name, port: s.port } });
      audit({ action: 'instance.move', target: `${tenant.name}/${name}`, tenantId: tenant.id, details: { direction: 'in', from: input.from, level: input.level, limits: input.limits, sites: input.sites.map((s) => s.hostname) } });
      return created;
    });
    let socketReady!: (socket: string) => void;
    const socket = new Promise<string>((r) => (socketReady = r));
    let release!: Pending['release'];
    const released = new Promise<void>((resolve, reject) => (release = { resolve, reject }));
    released.catch(() => undefined); // observed by the driver; unhandled only when the driver failed before asking
    const spec = driverSpec({ id: instance.id, tenantId: tenant.id, name, level: input.level, source: input.source, limits: input.limits, config: input.config });
    const moved = this.d.locks.run(instance.id, () => driver.moveIn!(spec, (at) => { socketReady(at); return released; }));
    const timer = setTimeout(() => {
      const late = new Error(`no word from the sender within ${RECEIVE_TIMEOUT_MS} ms`);
      release.reject(late);
      void moved.catch(() => undefined).then(() => this.#undo(instance.id, p, late));
    }, RECEIVE_TIMEOUT_MS);
    timer.unref();
    this.#pending.set(instance.id, { p, instance, tenant, release, moved, timer });
    this.d.events.publish('lifecycle', 'instance.state', tenant.id, { instance: name, id: instance.id, level: input.level, from: null, to: 'creating' });
    // A driver that fails before it listens (no image, a bad config) ends the receive here.
    const first = await Promise.race([socket.then((at) => ({ at })), moved.then(() => ({ at: null }), (e: unknown) => ({ error: e }))]);
    if ('error' in first || first.at === null) {
      const cause = 'error' in first ? first.error : new Error('the driver did not ask for the state');
      await this.#undo(instance.id, p, cause);
      throw this.#failure(cause, 'the receiving driver could not start');
    }
    return { instance, answer: { socket: first.at } };
  }

  /** The sender's word: `ok` once its state is across (the guest then runs here), else the move is off. */
  async finish(p: Principal, tenant: Tenant, name: string, ok: boolean): Promise<{ instance: Instance | null; answer: FinishAnswer }> {
    const instance = this.d.store.getInstance(tenant.id, name);
    const pending = instance ? this.#pending.get(instance.id) : undefined;
    if (!instance || !pending) throw notFound('incoming move', `${tenant.name}/${name}`);
    // One word per move: a second finish finds none.
    this.#pending.delete(instance.id);
    clearTimeout(pending.timer);
    if (!ok) {
      pending.release.reject(new Error('the sender called the move off'));
      await pending.moved.catch(() => undefined);
      await this.#undo(instance.id, p, new Error('called off by the sender'));
      return { instance: null, answer: { gateway: null, info: {} } };
    }
    pending.release.resolve();
    try {
      await pending.moved;
    } catch (e) {
      await this.#undo(instance.id, p, e);
      throw this.#failure(e, 'the moved guest did not resume here');
    }
    const seen = await this.#mover(instance.level).inspect(instance.id);
    this.d.store.transaction(() => {
      this.d.store.setActualState(instance.id, 'running', seen?.info ?? {});
      this.d.audit.append({
        actor: { userId: p.userId, name: p.name, role: p.role }, tenantId: tenant.id, action: 'instance.move.done',
        target: `${tenant.name}/${name}`, result: 'ok', ...(p.reason ? { reason: p.reason } : {}), details: { direction: 'in' },
      });
    });
    this.d.events.publish('lifecycle', 'instance.state', tenant.id, { instance: name, id: instance.id, level: instance.level, from: 'creating', to: 'running' });
    await this.d.flushRoutes();
    return { instance: this.d.store.getInstanceById(instance.id), answer: { gateway: this.d.gatewayAddress(), info: seen?.info ?? {} } };
  }

  /** Abandons every receive still waiting (daemon shutdown), records too: the senders' guests run on where they are. */
  async close(): Promise<void> {
    for (const [id, pending] of [...this.#pending]) {
      clearTimeout(pending.timer);
      const why = new Error('the receiving daemon is shutting down');
      pending.release.reject(why);
      await pending.moved.catch(() => undefined);
      await this.#undo(id, pending.p, why);
    }
  }

  #mover(level: LevelId): LevelDriver {
    const driver = this.d.registry.forLevel(level);
    if (!driver.moveIn || !driver.moveOut || !driver.supports.has('move')) {
      throw new StrataError('STRATA_ERR_UNSUPPORTED', `the ${level} driver cannot move instances`, { level, action: 'move' });
    }
    return driver;
  }

  /** Removes the records a failed receive made (the driver removed its half itself), audited as the failure. */
  async #undo(id: string, p: Principal, cause: unknown): Promise<void> {
    const pending = this.#pending.get(id);
    this.#pending.delete(id);
    const instance = this.d.store.getInstanceById(id);
    if (!instance) return;
    const tenant = pending?.tenant ?? this.d.store.getTenant(instance.tenantId);
    // Whatever the driver still holds (a failure half-way through its own cleanup) goes too.
    await this.d.locks.run(id, () => this.d.registry.forLevel(instance.level).delete(id)).catch(() => undefined);
    this.d.store.transaction(() => {
      for (const s of this.d.store.listSites({ tenantId: instance.tenantId, instanceId: instance.id })) this.d.store.deleteSite(s.id);
      this.d.store.deleteInstance(id);
      this.d.audit.append({
        actor: { userId: p.userId, name: p.name, role: p.role }, tenantId: instance.tenantId, action: 'instance.move.done',
        target: `${tenant?.name ?? instance.tenantId}/${instance.name}`, result: 'error', ...(p.reason ? { reason: p.reason } : {}),
        details: { direction: 'in', error: messageOf(cause) },
      });
    });
    this.d.events.publish('lifecycle', 'instance.state', instance.tenantId, { instance: instance.name, id, level: instance.level, from: 'creating', to: 'deleted' });
  }

  #failure(e: unknown, what: string): StrataError {
    if (isStrataError(e) && e.status < 500) return e;
    return new StrataError('STRATA_ERR_DRIVER', `${what}: ${messageOf(e)}`, undefined, { cause: e });
  }
}

/**
 * Where this daemon's gateway answers plain HTTP, as another daemon on this
 * machine reaches it: its first `http` listener, with "all addresses" spelled as loopback.
 */
export function gatewayAddress(s: { gateway?: Pick<Gateway, 'addresses'> | undefined; frontDoor?: Pick<FrontDoor, 'listeners'> | undefined }): { host: string; port: number } | null {
  const http = new Set((s.frontDoor?.listeners ?? []).filter((l) => l.protocol === 'http').map((l) => l.id));
  const bound = s.gateway?.addresses().find((a) => http.has(a.id));
  if (!bound) return null;
  const host = bound.address === '0.0.0.0' ? '127.0.0.1' : bound.address === '::' ? '::1' : bound.address;
  return { host, port: bound.port };
}
