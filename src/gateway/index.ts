/**
 * The gateway supervisor: the front door every visitor comes through.
 *
 * The supervisor (inside the daemon) binds each listener's socket itself and
 * hands the same socket to one worker process per core; every worker accepts
 * on it, so the supervisor's event loop is never on the request path, and a
 * worker that dies is replaced without the socket ever closing (the kernel
 * queues new connections meanwhile). An update is validated here, new sockets
 * are bound (a bind error refuses the update whole), then every worker gets the
 * configuration and swaps its route table in one step; `update` resolves when
 * all have acknowledged.
 */
import { fork, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { getSystemErrorName } from 'node:util';
import pino, { type Logger } from 'pino';
import { AggregatorRegistry, type Registry } from 'prom-client';
import { StrataError } from '../core/errors.js';
import { resolveOptions, validateConfig, type ResolvedOptions } from './config.js';
import type { FromWorker, ToWorker } from './ipc.js';
import type { MetricJson } from './metrics.js';
import { sameCertificate } from './certificates.js';
import { sameRoute, siteKey } from './routes.js';
import type { CertificateConfig, Gateway, GatewayAddress, GatewayConfig, GatewayOptions, ListenerConfig, SiteRoute } from './types.js';
import type { SecurityCount } from './security.js';

export type * from './types.js';

const WORKER_SCRIPT = fileURLToPath(new URL('./worker.js', import.meta.url));
/** How long a worker may take to acknowledge a configuration before it is replaced. */
const APPLY_TIMEOUT_MS = 5_000;
const METRICS_TIMEOUT_MS = 2_000;
const CLOSE_GRACE_MS = 3_000;
const RESTART_BACKOFF_MS = [100, 500, 2_000, 5_000] as const;

/** A bound (not yet listening) TCP socket; Node's cluster module shares sockets the same way. */
interface ServerHandle {
  close(): void;
  getsockname(out: { address?: string; port?: number }): number;
}
const createServerHandle = (net as unknown as {
  _createServerHandle(address: string, port: number, addressType: number, fd?: number, flags?: number): ServerHandle | number;
})._createServerHandle;

interface ListenFailure {
  listener: string;
  error: string;
}

interface BoundListener {
  config: ListenerConfig;
  handle: ServerHandle;
  port: number;
}

function bind(l: ListenerConfig): BoundListener {
  const handle = createServerHandle(l.address, l.port, net.isIP(l.address));
  if (typeof handle === 'number') {
    const code = getSystemErrorName(handle);
    throw new StrataError('STRATA_ERR_CONFIG', `gateway: cannot bind ${l.address}:${l.port} (${code})`, { listener: l.id, code });
  }
  // libuv reports a failed bind (EADDRINUSE) only later; getsockname returns that delayed error now.
  // Never pass such a socket on: listen() on it would bind a random port on every interface.
  const out: { port?: number } = {};
  const err = handle.getsockname(out);
  if (err !== 0 || out.port === undefined) {
    handle.close();
    const code = err !== 0 ? getSystemErrorName(err) : 'EADDRNOTAVAIL';
    throw new StrataError('STRATA_ERR_CONFIG', `gateway: cannot bind ${l.address}:${l.port} (${code})`, { listener: l.id, code });
  }
  return { config: l, handle, port: out.port };
}

function listenError(f: ListenFailure, bound: Map<string, BoundListener>): StrataError {
  const l = bound.get(f.listener)?.config;
  return new StrataError('STRATA_ERR_CONFIG', `gateway: cannot listen on ${l?.address}:${l?.port} (${f.error})`, { listener: f.listener, code: f.error });
}

function sameListeners(a: readonly ListenerConfig[], b: readonly ListenerConfig[]): boolean {
  return a.length === b.length && a.every((l, i) => {
    const m = b[i]!;
    return l.id === m.id && l.defaultSite === m.defaultSite && l.protocol === m.protocol && sameSocket(l, m)
      && l.strictSni === m.strictSni && l.defaultCertificate === m.defaultCertificate;
  });
}

/** Routes that are new or changed, and keys of routes that are gone. */
function siteChanges(before: readonly SiteRoute[], after: readonly SiteRoute[]): { upsert: SiteRoute[]; remove: string[] } {
  const old = new Map(before.map((r) => [siteKey(r), r]));
  const upsert: SiteRoute[] = [];
  for (const r of after) {
    const key = siteKey(r);
    const was = old.get(key);
    old.delete(key);
    if (was === undefined || !sameRoute(was, r)) upsert.push(r);
  }
  return { upsert, remove: [...old.keys()] };
}

/** Certificates that are new or changed, and ids of those that are gone; null when nothing changed. */
function certificateChanges(before: readonly CertificateConfig[], after: readonly CertificateConfig[]): { upsert: CertificateConfig[]; remove: string[] } | null {
  const old = new Map(before.map((c) => [c.id, c]));
  const upsert: CertificateConfig[] = [];
  for (const c of after) {
    const was = old.get(c.id);
    old.delete(c.id);
    if (was === undefined || !sameCertificate(was, c)) upsert.push(c);
  }
  return upsert.length === 0 && old.size === 0 ? null : { upsert, remove: [...old.keys()] };
}

const sameSocket = (a: ListenerConfig, b: ListenerConfig): boolean => a.address === b.address && a.port === b.port;

/** One worker slot: its process, and the acknowledgements it owes. */
class WorkerSlot {
  child: ChildProcess | null = null;
  restarts = 0;
  private readonly waiting = new Map<number, (failed: ListenFailure[]) => void>();
  private readonly metricWaiters = new Map<number, (m: MetricJson[]) => void>();
  private readonly reopenWaiters = new Map<number, () => void>();

  constructor(readonly index: number) {}

  send(message: ToWorker, handle?: ServerHandle): void {
    if (this.child?.connected) this.child.send(message, handle as net.Server | undefined);
  }

  /**
   * Resolves with the listeners this worker failed to open once it has
   * applied `version` (or has died: its replacement starts from the latest).
   */
  applied(version: number): Promise<ListenFailure[]> {
    return new Promise((resolve) => this.waiting.set(version, resolve));
  }

  onMessage(message: FromWorker, log: Logger): void {
    if (message.type === 'applied') {
      for (const [version, resolve] of this.waiting) {
        if (version <= message.version) {
          this.waiting.delete(version);
          resolve(version === message.version ? message.failed : []);
        }
      }
    } else if (message.type === 'metrics') {
      this.metricWaiters.get(message.request)?.(message.metrics);
      this.metricWaiters.delete(message.request);
    } else if (message.type === 'reopened') {
      this.reopenWaiters.get(message.request)?.();
      this.reopenWaiters.delete(message.request);
    } else if (message.type === 'warning') {
      log.warn({ worker: this.index, ...message.details }, message.message);
    }
  }

  metrics(request: number): Promise<MetricJson[]> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.metricWaiters.delete(request);
        resolve([]);
      }, METRICS_TIMEOUT_MS);
      this.metricWaiters.set(request, (m) => {
        clearTimeout(timer);
        resolve(m);
      });
      this.send({ type: 'metrics', request });
    });
  }

  /** Resolves once this worker writes to the access log's path anew (or after METRICS_TIMEOUT_MS). */
  reopenLog(request: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.reopenWaiters.delete(request);
        resolve();
      }, METRICS_TIMEOUT_MS);
      this.reopenWaiters.set(request, () => {
        clearTimeout(timer);
        resolve();
      });
      this.send({ type: 'reopen-log', request });
    });
  }

  /** The process is gone: nothing it owed will come. */
  settleAll(): void {
    for (const resolve of this.waiting.values()) resolve([]);
    this.waiting.clear();
    for (const resolve of this.metricWaiters.values()) resolve([]);
    this.metricWaiters.clear();
    for (const resolve of this.reopenWaiters.values()) resolve();
    this.reopenWaiters.clear();
  }
}

class Supervisor implements Gateway {
  private readonly slots: WorkerSlot[];
  private readonly bound = new Map<string, BoundListener>();
  private config: GatewayConfig = { listeners: [], sites: [] };
  private version = 0;
  private closing = false;
  private queue: Promise<void> = Promise.resolve();
  /** Numbers requests to workers (metrics, log reopening) so answers find their caller. */
  private requests = 0;
  private securityListener: ((counts: SecurityCount[]) => void) | undefined;

  constructor(private readonly opts: ResolvedOptions, private readonly log: Logger) {
    this.slots = Array.from({ length: opts.workers }, (_, i) => new WorkerSlot(i));
  }

  onSecurity(listener: ((counts: SecurityCount[]) => void) | undefined): void {
    this.securityListener = listener;
  }

  async start(config: GatewayConfig): Promise<void> {
    validateConfig(config);
    this.bindNew(config);
    this.config = config;
    this.version = 1;
    const failed = (await Promise.all(this.slots.map((slot) => this.spawn(slot)))).flat();
    if (failed.length > 0) throw listenError(failed[0]!, this.bound);
  }

  /** Forks a worker and brings it to the current configuration. */
  private spawn(slot: WorkerSlot): Promise<ListenFailure[]> {
    const env = { ...process.env };
    delete env.NODE_UNIQUE_ID; // never let a worker mistake itself for a cluster worker
    const child = fork(WORKER_SCRIPT, [], { execArgv: ['--enable-source-maps'], env, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    slot.child = child;
    child.on('message', (m: FromWorker) => {
      if (m.type === 'security') this.securityListener?.(m.counts);
      else slot.onMessage(m, this.log);
    });
    // A message to a worker that is going away fails (EPIPE); its 'exit' is what counts, and it is handled below.
    child.on('error', (err) => this.log.warn({ worker: slot.index, err }, 'gateway worker channel error'));
    child.on('exit', (code, signal) => {
      if (slot.child !== child) return;
      slot.child = null;
      slot.settleAll();
      if (this.closing) return;
      const delay = RESTART_BACKOFF_MS[Math.min(slot.restarts, RESTART_BACKOFF_MS.length - 1)]!;
      slot.restarts++;
      this.log.error({ worker: slot.index, code, signal, restartInMs: delay }, 'gateway worker exited; restarting');
      setTimeout(() => {
        if (this.closing) return;
        void this.spawn(slot).then((failed) => {
          for (const f of failed) this.log.error({ worker: slot.index, ...f }, 'restarted gateway worker cannot listen');
          // A worker that stays up a while earns its backoff back.
          setTimeout(() => { if (slot.child !== null) slot.restarts = 0; }, 30_000).unref();
        });
      }, delay).unref();
    });
    slot.send({ type: 'init', opts: this.opts });
    for (const [id, b] of this.bound) slot.send({ type: 'handle', listener: id }, b.handle);
    const applied = slot.applied(this.version);
    slot.send({ type: 'config', version: this.version, config: this.config });
    return applied;
  }

  update(config: GatewayConfig): Promise<void> {
    const run = this.queue.then(() => this.apply(config));
    this.queue = run.catch(() => {});
    return run;
  }

  private async apply(config: GatewayConfig): Promise<void> {
    if (this.closing) throw new StrataError('STRATA_ERR_UNAVAILABLE', 'gateway: closing');
    validateConfig(config);
    const removed = [...this.bound.values()].filter((b) => {
      const next = config.listeners.find((l) => l.id === b.config.id);
      return next === undefined || !sameSocket(next, b.config);
    });
    // A listener with a new address or port gets a new socket under the same id.
    for (const b of removed) this.bound.delete(b.config.id);
    let added: BoundListener[];
    try {
      added = this.bindNew(config);
    } catch (err) {
      for (const b of removed) this.bound.set(b.config.id, b);
      throw err;
    }
    // A worker given a socket for a listener id it serves stops serving the old one and serves it anew
    // (a new socket, or the same socket under another protocol).
    const reprotocolled = [...this.bound.values()].filter((b) => config.listeners.some((l) => l.id === b.config.id && l.protocol !== b.config.protocol));
    for (const b of [...added, ...reprotocolled]) for (const slot of this.slots) slot.send({ type: 'handle', listener: b.config.id }, b.handle);
    const previous = this.config;
    this.config = config;
    const failed = await this.broadcast(config, previous);
    if (failed.length > 0) {
      // Some sockets bound but cannot listen (the address is taken): back to the previous configuration.
      const error = listenError(failed[0]!, this.bound);
      for (const b of added) this.bound.delete(b.config.id);
      for (const b of removed) {
        this.bound.set(b.config.id, b);
        for (const slot of this.slots) slot.send({ type: 'handle', listener: b.config.id }, b.handle);
      }
      this.config = previous;
      await this.broadcast(previous);
      for (const b of added) b.handle.close();
      throw error;
    }
    for (const b of removed) b.handle.close();
    for (const [id, b] of this.bound) b.config = config.listeners.find((l) => l.id === id) ?? b.config;
  }

  /**
   * Sends a configuration to every worker — only the changed sites when the
   * listeners are as in `previous` — and resolves when each has applied it (a
   * stuck worker is replaced), with the listeners any of them could not open.
   */
  private async broadcast(config: GatewayConfig, previous?: GatewayConfig): Promise<ListenFailure[]> {
    const version = ++this.version;
    const message: ToWorker = previous !== undefined && sameListeners(previous.listeners, config.listeners)
      ? {
        type: 'sites', version, ...siteChanges(previous.sites, config.sites), trustedProxies: config.trustedProxies ?? [],
        certificates: certificateChanges(previous.certificates ?? [], config.certificates ?? []),
      }
      : { type: 'config', version, config };
    const perWorker = await Promise.all(this.slots.map(async (slot) => {
      if (slot.child === null) return []; // restarting: it will start from the latest configuration
      const applied = slot.applied(version);
      slot.send(message);
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<'timeout'>((resolve) => { timer = setTimeout(() => resolve('timeout'), APPLY_TIMEOUT_MS); });
      const result = await Promise.race([applied, timedOut]);
      clearTimeout(timer);
      if (result !== 'timeout') return result;
      this.log.error({ worker: slot.index }, 'gateway worker did not apply the configuration; replacing it');
      slot.child?.kill('SIGKILL');
      return [];
    }));
    return perWorker.flat();
  }

  /** Binds sockets for listeners not bound yet; on failure unbinds what this call bound. */
  private bindNew(config: GatewayConfig): BoundListener[] {
    const added: BoundListener[] = [];
    try {
      for (const l of config.listeners) {
        if (this.bound.has(l.id)) continue;
        const b = bind(l);
        added.push(b);
        this.bound.set(l.id, b);
      }
    } catch (err) {
      for (const b of added) {
        b.handle.close();
        this.bound.delete(b.config.id);
      }
      throw err;
    }
    return added;
  }

  addresses(): GatewayAddress[] {
    return [...this.bound.values()].map((b) => ({ id: b.config.id, address: b.config.address, port: b.port }));
  }

  async metrics(): Promise<Registry> {
    const request = ++this.requests;
    const perWorker = await Promise.all(this.slots.map((slot) => (slot.child === null ? [] : slot.metrics(request))));
    return AggregatorRegistry.aggregate(perWorker.filter((m) => m.length > 0));
  }

  async reopenAccessLog(): Promise<void> {
    const request = ++this.requests;
    await Promise.all(this.slots.map((slot) => (slot.child === null ? undefined : slot.reopenLog(request))));
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    await this.queue;
    await Promise.all(this.slots.map((slot) => new Promise<void>((resolve) => {
      const child = slot.child;
      if (child === null || child.exitCode !== null) {
        resolve();
        return;
      }
      const killer = setTimeout(() => child.kill('SIGKILL'), CLOSE_GRACE_MS + 2_000);
      child.once('exit', () => {
        clearTimeout(killer);
        resolve();
      });
      slot.send({ type: 'close', graceMs: CLOSE_GRACE_MS });
    })));
    for (const b of this.bound.values()) b.handle.close();
    this.bound.clear();
  }
}

/**
 * Starts the gateway: binds every listener, forks the workers (default one
 * per core) and resolves once all of them serve `config`.
 */
export async function startGateway(config: GatewayConfig, opts: GatewayOptions = {}): Promise<Gateway> {
  const workers = opts.workers ?? availableParallelism();
  if (!Number.isInteger(workers) || workers < 1) throw new StrataError('STRATA_ERR_CONFIG', 'gateway: workers must be a positive integer', { workers });
  const supervisor = new Supervisor(resolveOptions(opts, workers), opts.logger ?? pino({ level: 'silent' }));
  try {
    await supervisor.start(config);
  } catch (err) {
    await supervisor.close();
    throw err;
  }
  return supervisor;
}
