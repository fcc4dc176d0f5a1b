/**
 * `strata up`: wires the store, the audit log, the drivers, the reconciler and
 * the API together, and takes them down again in reverse order.
 *
 * First start creates the data dir (0700), the SQLite store, the audit signing
 * key (Ed25519, 0600) and the provider-admin user with its token in
 * `DIR/admin.token` (0600). Drivers are passed in: the product registers the real
 * ones, tests a double.
 */
import { FileCopies } from './control/files/files.js';
import { generateKeyPairSync, createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { accessSync, constants, existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { StrataError } from './core/errors.js';
import { writeSecret } from './core/secrets.js';
import type { FastifyInstance } from 'fastify';
import pino, { type Logger } from 'pino';
import { Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { AuditLog } from './audit/log.js';
import { Authenticator } from './auth/authenticate.js';
import { generateToken, parseBearer } from './auth/tokens.js';
import { EventBus } from './core/events.js';
import { InstanceService } from './control/lifecycle/instances.js';
import { Forwards } from './control/moves/forwards.js';
import { Mover } from './control/moves/move.js';
import { Receiver, gatewayAddress } from './control/moves/receive.js';
import { KeyedMutex } from './core/keyed-mutex.js';
import { OperationRunner } from './control/lifecycle/operations.js';
import { Reconciler } from './control/lifecycle/reconciler.js';
import { buildApi } from './api/server.js';
import { FrontDoor } from './control/front-door/front-door.js';
import { challengeDir, type AcmeOptions } from './control/certificates/acme.js';
import { CertificateManager } from './control/certificates/certificate-manager.js';
import { TenantData, migrateNameKeyedData, siteLogsDir } from './control/tenants/tenant-data.js';
import { SiteLogs } from './control/front-door/site-logs.js';
import { Backups } from './control/backup/backup.js';
import { GuardTarget } from './guard/wiring/guard-target.js';
import { Guard } from './guard/guard.js';
import { GuardIntake } from './guard/intake.js';
import { loadDefaultRuleset } from './guard/rules.js';
import { GuardWatch } from './guard/wiring/guard-watch.js';
import type { DispatcherOptions } from './guard/outputs/dispatcher.js';
import { registerOutputMetrics } from './guard/outputs/metrics.js';
import { AlertOutputs, loadOutputsKey } from './guard/outputs/service.js';
import { ChecksumDb } from './guard/checksums.js';
import { Hasher } from './guard/hasher.js';
import { IntegrityMonitor } from './guard/integrity.js';
import { KnownGoodStore } from './guard/recovery.js';
import { GatewayInterceptor } from './guard/interceptors/gateway.js';
import { BpfInterceptor, bpfAvailable, osLabels } from './levels/os/guard/interceptor.js';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { startGateway, type Gateway, type GatewayOptions, type ListenerConfig } from './gateway/index.js';
import type { Services } from './api/services.js';
import type { LevelDriver } from './levels/driver.js';
import { LEVEL_MODULES } from './levels/index.js';
import { osLevel } from './levels/os/module.js';
import { DriverRegistry } from './levels/registry.js';
import { UsageSampler } from './control/usage/sampler.js';
import { MetricsTally } from './api/metrics.js';
import { SqliteStore } from './store/sqlite.js';
import { VERSION } from './core/version.js';

export interface DaemonOptions {
  dataDir: string;
  host: string;
  /** 0 picks a free port (tests). */
  port: number;
  drivers?: LevelDriver[];
  /** pino logger; default JSON lines on stdout at info. */
  logger?: Logger;
  reconcileIntervalMs?: number;
  /** The front door: listeners the gateway opens, and its options. Off when absent (most tests). */
  gateway?: { listeners: ListenerConfig[]; options?: GatewayOptions };
  /** ACME for tenants' certificates (off without a directory); `renewCheckMs`: how often renewal looks (default 1 h). */
  acme?: AcmeOptions;
  renewCheckMs?: number;
  /**
   * The guard's integrity work: `selfCheck` baselines and watches Strata's own
   * installed files (`strata up` turns it on; `selfRoot` defaults to the
   * package root); `verifyIntervalMs` re-verifies every baseline (default 10
   * min); `knownGoodDelayMs` waits after an instance starts before its
   * known-good snapshot and baseline (default 1 s). `bpf` runs the os
   * interceptor (bpftrace) on the os driver's containers (`strata up` turns it on).
   */
  guard?: { selfCheck?: boolean; selfRoot?: string; verifyIntervalMs?: number; knownGoodDelayMs?: number; bpf?: boolean };
  /**
   * A configured scrape token (`strata up --metrics-token-file`): a bearer
   * secret that reads every series of /metrics, as a metrics-reader's token
   * does, without a user in the store. Nothing else accepts it.
   */
  metricsScrapeToken?: string;
  /** Alert outputs: see DispatcherOptions (`allowPrivateTargets` lets tenants' outputs reach loopback: tests only). */
  outputs?: Pick<DispatcherOptions, 'allowPrivateTargets' | 'backoffMs' | 'maxBackoffMs' | 'queueSize' | 'failureAlertIntervalMs'>;
}

export interface Daemon {
  url: string;
  dataDir: string;
  tokenPath: string;
  services: Services;
  api: FastifyInstance;
  /** The guard's integrity side: what it watches, and how it reacts. */
  integrity: { monitor: IntegrityMonitor; watch: GuardWatch; target: GuardTarget };
  /**
   * Re-reads the gateway's listeners, sites and certificates from the store and
   * the data dir (SIGHUP); null when the daemon runs no front door.
   */
  reload(): Promise<{ listeners: number; sites: number; certificates: number } | null>;
  close(): Promise<void>;
}

export const dataPaths = (dir: string) => ({
  db: join(dir, 'strata.db'),
  auditKey: join(dir, 'audit-key.pem'),
  adminToken: join(dir, 'admin.token'),
});

/**
 * Creates the data dir (0700) and any missing parents, one level at a time:
 * Node's recursive mkdir spins forever on some paths (e.g. under /proc).
 */
function ensureDataDir(dir: string): void {
  const missing: string[] = [];
  let at = resolve(dir);
  while (!existsSync(at)) {
    missing.unshift(at);
    const up = dirname(at);
    if (up === at) break;
    at = up;
  }
  try {
    for (const d of missing) mkdirSync(d, { mode: 0o700 });
    if (!statSync(dir).isDirectory()) throw new Error('not a directory');
    accessSync(dir, constants.W_OK);
  } catch (e) {
    throw new StrataError('STRATA_ERR_CONFIG', `cannot use data dir ${dir}: ${(e as Error).message}`);
  }
}

function loadOrCreateAuditKey(path: string): { privateKey: KeyObject; publicKey: KeyObject } {
  if (!existsSync(path)) {
    const { privateKey } = generateKeyPairSync('ed25519');
    writeSecret(path, privateKey.export({ type: 'pkcs8', format: 'pem' }).toString());
  }
  const privateKey = createPrivateKey(readFileSync(path));
  return { privateKey, publicKey: createPublicKey(privateKey) };
}

/**
 * Creates the provider-admin `admin` on first start, and a fresh token whenever
 * admin.token is missing or names a token this store does not have.
 */
function bootstrapAdmin(store: SqliteStore, audit: AuditLog, tokenPath: string): void {
  if (existsSync(tokenPath)) {
    const current = parseBearer(readFileSync(tokenPath, 'utf8').trim());
    if (current && store.getToken(current.id)) return;
  }
  const fresh = generateToken();
  store.transaction(() => {
    const admin = store.getUserByName('admin') ?? store.createUser({ name: 'admin', role: 'provider-admin', tenantId: null });
    store.createToken({ id: fresh.id, userId: admin.id, name: 'bootstrap', secretHash: fresh.secretHash, expiresAt: null });
    audit.append({
      actor: { userId: null, name: 'strata', role: 'system' }, tenantId: null, action: 'token.create',
      target: `admin/${fresh.id}`, result: 'ok', details: { bootstrap: true },
    });
  });
  writeSecret(tokenPath, `${fresh.bearer}\n`);
}

/** What was started, taken down in reverse order; each step runs even when one before it failed. */
class Teardown {
  readonly #steps: Array<() => unknown> = [];
  #done: Promise<void> | undefined;

  constructor(private readonly log: Logger) {}

  add(step: () => unknown): void {
    this.#steps.push(step);
  }

  /** Safe to call twice: the second call waits for the first. */
  close(): Promise<void> {
    this.#done ??= (async () => {
      for (const step of this.#steps.reverse()) {
        try {
          await step();
        } catch (e) {
          this.log.error({ err: e }, 'shutdown step failed');
        }
      }
    })();
    return this.#done;
  }
}

/** The drivers, provisioned, with every tenant's quota handed to those that enforce it. */
async function startLevels(drivers: readonly LevelDriver[], store: SqliteStore, log: Logger): Promise<DriverRegistry> {
  const registry = new DriverRegistry(LEVEL_MODULES);
  for (const d of drivers) registry.register(d);
  await registry.provisionAll();
  for (const t of store.listTenants()) {
    for (const f of await registry.applyTenantQuota(t.id, t.quota)) log.warn({ tenant: t.name, ...f }, 'driver could not enforce the tenant quota');
  }
  return registry;
}

function daemonMetrics(store: SqliteStore, audit: AuditLog): Registry {
  const metrics = new Registry();
  collectDefaultMetrics({ register: metrics });
  new Gauge({
    name: 'strata_instances', help: 'Instances by level and actual state', labelNames: ['level', 'state'] as const,
    registers: [metrics],
    collect() {
      this.reset();
      for (const i of store.listInstances()) this.inc({ level: i.level, state: i.actualState });
    },
  });
  new Gauge({
    name: 'strata_audit_entries', help: 'Entries in the audit log', registers: [metrics],
    collect() { this.set(audit.size()); },
  });
  return metrics;
}

/** The gateway, the front door that keeps its routes in step with the store, and the per-site access logs. */
async function startFrontDoor(
  opts: DaemonOptions & { gateway: NonNullable<DaemonOptions['gateway']> }, d: { store: SqliteStore; events: EventBus; certificates: CertificateManager; forwards: Forwards; log: Logger },
  teardown: Teardown,
): Promise<{ gateway: Gateway; frontDoor: FrontDoor }> {
  const accessLogPath = join(opts.dataDir, 'logs', 'access.log');
  const gateway = await startGateway({ listeners: opts.gateway.listeners, sites: [] }, {
    logger: d.log.child({ svc: 'gateway' }), accessLog: { path: accessLogPath }, acmeChallengeDir: challengeDir(opts.dataDir), ...opts.gateway.options,
  });
  const frontDoor = new FrontDoor(gateway, d.store, opts.gateway.listeners, opts.dataDir, d.log.child({ svc: 'front-door' }), d.certificates.files, () => d.forwards.routes());
  const siteLogs = new SiteLogs({ accessLogPath, dir: siteLogsDir(opts.dataDir), store: d.store, reopen: () => gateway.reopenAccessLog() });
  siteLogs.start();
  // The workers flush the shared access log as they stop; the site logs take in that last part as they stop.
  teardown.add(async () => {
    await frontDoor.close();
    siteLogs.stop();
  });
  await frontDoor.sync();
  frontDoor.watch(d.events);
  return { gateway, frontDoor };
}

/** The guard's checksum DB: in the store's SQLite file, signed with a key kept beside it (0600), not in it. */
function openChecksums(dataDir: string, store: SqliteStore, teardown: Teardown): ChecksumDb {
  const keyPath = join(dataDir, 'guard-key');
  if (!existsSync(keyPath)) writeSecret(keyPath, randomBytes(32).toString('hex'));
  const hasher = new Hasher();
  teardown.add(() => hasher.close());
  return new ChecksumDb(store.db, { key: Buffer.from(readFileSync(keyPath, 'utf8').trim(), 'hex'), hasher });
}

/**
 * The guard: its interceptors (every level's own, the gateway's refusals, the
 * os level's syscalls), the integrity monitor and what keeps it on what runs,
 * and the target its actuator acts on. Started; `watch` follows the event bus
 * once `startWatch` is called.
 */
async function startGuard(
  opts: DaemonOptions,
  d: {
    store: SqliteStore; audit: AuditLog; events: EventBus; registry: DriverRegistry; instances: InstanceService; operations: OperationRunner;
    checksums: ChecksumDb; gateway: Gateway | null; routes: FrontDoor | null; log: Logger;
  },
  teardown: Teardown,
): Promise<{ guard: Guard; monitor: IntegrityMonitor; watch: GuardWatch; target: GuardTarget; outputs: AlertOutputs }> {
  const log = d.log.child({ svc: 'guard' });
  let guardRef: Guard | undefined;
  const outputs = new AlertOutputs({
    records: d.store.outputs, key: loadOutputsKey(join(opts.dataDir, 'outputs-key')), fileRoot: join(opts.dataDir, 'alerts'),
    raise: (a) => { guardRef?.raise(a); }, ...opts.outputs,
  });
  outputs.sync();
  // A deleted tenant's outputs went with it in the store; the dispatcher follows.
  const unsubscribe = d.events.subscribe((e) => { if (e.type === 'audit.appended' && e.data.action === 'tenant.delete') outputs.sync(); });
  teardown.add(() => { unsubscribe(); return outputs.close(); });
  const checksums = d.checksums;
  const intake = new GuardIntake();
  const monitor = new IntegrityMonitor({
    guard: intake, checksums, knownGood: new KnownGoodStore(join(opts.dataDir, 'guard', 'known-good')),
    ...(opts.guard?.verifyIntervalMs !== undefined ? { verifyIntervalMs: opts.guard.verifyIntervalMs } : {}),
  });
  const target = new GuardTarget(d.store, d.instances, d.operations, d.audit, { registry: d.registry, monitor, alerts: outputs, ...(d.routes ? { routes: d.routes } : {}) });
  const guard = new Guard({ ruleset: await loadDefaultRuleset(), target, audit: d.audit, events: d.events, intake });
  guardRef = guard;
  teardown.add(() => guard.stop());
  const watch = new GuardWatch({
    store: d.store, registry: d.registry, monitor, target, dataDir: opts.dataDir, log, ingest: guard.ingest,
    ...(opts.guard?.knownGoodDelayMs !== undefined ? { knownGoodDelayMs: opts.guard.knownGoodDelayMs } : {}),
    ...(opts.guard?.selfCheck ? { selfRoot: opts.guard.selfRoot ?? fileURLToPath(new URL('../..', import.meta.url)) } : {}),
  });
  for (const interceptor of d.registry.interceptors({ store: d.store, log })) await guard.addInterceptor(interceptor);
  await guard.addInterceptor(new GatewayInterceptor(d.gateway));
  await guard.start();
  // The os level's syscalls through bpftrace: attached in the background (compiling takes seconds), never failing the start.
  const osDriver = d.registry.ownedDriver(osLevel);
  if (osDriver && opts.guard?.bpf) {
    const ready = bpfAvailable();
    if (!ready.available) log.warn({ reason: ready.reason }, 'the guard has no os interceptor');
    else {
      const bpf = new BpfInterceptor({ identities: osDriver.identities, labels: osLabels(d.store), sessions: guard.sessions, log: (message, details) => log.info(details ?? {}, message) });
      guard.addInterceptor(bpf).catch((e: Error) => log.error({ error: e.message }, 'the os interceptor did not start'));
    }
  }
  monitor.start();
  teardown.add(() => monitor.stop());
  teardown.add(() => watch.stop());
  return { guard, monitor, watch, target, outputs };
}

/**
 * Builds the daemon in dependency order — state, levels, lifecycle,
 * certificates, the front door, the guard, moves, the reconciler, the API —
 * each part handed what it needs when it is made; `close` takes down what was
 * started in reverse, and so does a failed start.
 */
export async function startDaemon(opts: DaemonOptions): Promise<Daemon> {
  const log = opts.logger ?? pino({ base: { svc: 'strata' } });
  const teardown = new Teardown(log);
  try {
    ensureDataDir(opts.dataDir);
    const paths = dataPaths(opts.dataDir);
    const store = new SqliteStore(paths.db);
    teardown.add(() => store.close());
    const audit = new AuditLog(store.db, loadOrCreateAuditKey(paths.auditKey));
    teardown.add(() => audit.close());
    bootstrapAdmin(store, audit, paths.adminToken);

    const events = new EventBus();
    const registry = await startLevels(opts.drivers ?? [], store, log);
    teardown.add(() => registry.cleanupAll());
    const locks = new KeyedMutex();
    const operations = new OperationRunner(store, events);
    teardown.add(() => operations.drain());
    const interrupted = operations.failInterrupted();
    if (interrupted) log.warn({ interrupted }, 'operations interrupted by the previous shutdown were marked failed');
    const instances = new InstanceService({ store, audit, events, operations, registry, locks });
    const checksums = openChecksums(opts.dataDir, store, teardown);
    // Data dirs of an earlier Strata keyed tenants' files by name: renamed to ids before anything serves or watches them.
    const migrated = migrateNameKeyedData(opts.dataDir, store, checksums);
    if (migrated.renamed.length + migrated.quarantined.length + migrated.forgotten.length > 0) log.info({ ...migrated }, 'tenant data keyed by name moved to tenant ids');
    const tenantData = new TenantData({ dataDir: opts.dataDir, store, registry, checksums, log: log.child({ svc: 'tenants' }) });

    const certificates = new CertificateManager({
      dataDir: opts.dataDir, store, audit, events, operations, log: log.child({ svc: 'certificates' }),
      ...(opts.acme ? { acme: opts.acme } : {}), ...(opts.renewCheckMs ? { renewCheckMs: opts.renewCheckMs } : {}),
    });
    certificates.start();
    teardown.add(() => certificates.stop());
    // Sites moved to another daemon are forwarded by this gateway (`control/moves/`).
    const forwards = new Forwards(opts.dataDir);
    const front = opts.gateway ? await startFrontDoor({ ...opts, gateway: opts.gateway }, { store, events, certificates, forwards, log }, teardown) : null;
    const guard = await startGuard(opts, { store, audit, events, registry, instances, operations, checksums, gateway: front?.gateway ?? null, routes: front?.frontDoor ?? null, log }, teardown);

    const flushRoutes = async (): Promise<void> => { await front?.frontDoor.flush(); };
    const receiver = new Receiver({ store, audit, events, registry, locks, flushRoutes, gatewayAddress: () => gatewayAddress({ gateway: front?.gateway, frontDoor: front?.frontDoor }) });
    teardown.add(() => receiver.close());
    const metrics = daemonMetrics(store, audit);
    const services: Services = {
      version: VERSION, startedAt: new Date(), store, audit, auth: new Authenticator(store), events, operations, registry,
      instances, usage: new UsageSampler(registry), metrics, tally: new MetricsTally(events, metrics), ...(opts.metricsScrapeToken ? { scrapeToken: opts.metricsScrapeToken } : {}), guard: guard.guard, outputs: guard.outputs, certificates, tenantData,
      backups: new Backups({ dataDir: opts.dataDir, db: store.db, audit, levelIds: LEVEL_MODULES.map((m) => m.id), log: log.child({ svc: 'backup' }) }),
      files: new FileCopies({ store, registry, operations, dataDir: opts.dataDir }),
      moves: { mover: new Mover({ store, audit, events, operations, registry, locks, forwards, flushRoutes }), receiver, forwards, flushRoutes },
      ...(front ? { gateway: front.gateway, frontDoor: front.frontDoor } : {}),
    };
    registerOutputMetrics(services.metrics, guard.outputs.dispatcher);
    const reconciler = new Reconciler({
      store, registry, locks, logger: log,
      ...(opts.reconcileIntervalMs ? { intervalMs: opts.reconcileIntervalMs } : {}),
      onEvent: (e) => events.publish('lifecycle', e.type, e.tenantId ?? null, { ...e }),
      // An instance whose restart policy leaves it dead is meant to be stopped from then on.
      setDesiredState: (id, desired) => { if (store.getInstanceById(id)) store.updateInstance(id, { desiredState: desired }); },
    });
    await reconciler.start();
    teardown.add(() => reconciler.stop());
    guard.watch.start(events);

    const api = await buildApi(services, { logger: log.child({ svc: 'api' }) });
    teardown.add(() => api.close());
    const url = await api.listen({ host: opts.host, port: opts.port }).catch((e: Error) => {
      throw new StrataError('STRATA_ERR_CONFIG', `cannot listen on ${opts.host}:${opts.port}: ${e.message}`, undefined, { cause: e });
    });
    const { monitor, watch, target } = guard;
    return { url, dataDir: opts.dataDir, tokenPath: paths.adminToken, services, api, integrity: { monitor, watch, target },
      reload: async () => (front ? front.frontDoor.reload() : null), close: () => teardown.close() };
  } catch (e) {
    await teardown.close();
    throw e;
  }
}
