/**
 * `strata up`: wires the store, the audit log, the drivers, the reconciler and
 * the API together, and takes them down again in reverse order.
 *
 * First start creates the data dir (0700), the SQLite store, the audit signing
 * key (Ed25519, 0600) and the provider-admin user with its token in
 * `DIR/admin.token` (0600). Drivers are passed in: the product registers the real
 * ones, tests a double.
 */
import { generateKeyPairSync, createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { accessSync, constants, existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
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
import { GuardTarget } from './guard/wiring/guard-target.js';
import { Guard } from './guard/guard.js';
import { loadDefaultRuleset } from './guard/rules.js';
import { GuardWatch } from './guard/wiring/guard-watch.js';
import { ChecksumDb } from './guard/checksums.js';
import { Hasher } from './guard/hasher.js';
import { IntegrityMonitor } from './guard/integrity.js';
import { KnownGoodStore } from './guard/recovery.js';
import { IsolateInterceptor, type BoundarySource } from './levels/env/interceptor.js';
import { QmpInterceptor } from './levels/vm/guard/qmp.js';
import { VmNetworkInterceptor } from './levels/vm/guard/network.js';
import { VmResourceInterceptor } from './levels/vm/guard/resources.js';
import { cachedTargets, vmTargets } from './levels/vm/guard/targets.js';
import { GatewayInterceptor } from './guard/interceptors/gateway.js';
import { tapQmpEvents } from './levels/vm/qmp.js';
import { BpfInterceptor, bpfAvailable, osTargets } from './guard/interceptors/bpf.js';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { startGateway, type GatewayOptions, type ListenerConfig } from './gateway/index.js';
import type { Services } from './api/services.js';
import type { LevelDriver } from './levels/driver.js';
import { LEVEL_MODULES } from './levels/index.js';
import { DriverRegistry } from './levels/registry.js';
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
}

export interface Daemon {
  url: string;
  dataDir: string;
  tokenPath: string;
  services: Services;
  api: FastifyInstance;
  /** The guard's integrity side: what it watches, and how it reacts. */
  integrity: { monitor: IntegrityMonitor; watch: GuardWatch; target: GuardTarget };
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

const isBoundarySource = (d: object): d is BoundarySource => typeof (d as Partial<BoundarySource>).observe === 'function';

export async function startDaemon(opts: DaemonOptions): Promise<Daemon> {
  const log = opts.logger ?? pino({ base: { svc: 'strata' } });
  ensureDataDir(opts.dataDir);
  const paths = dataPaths(opts.dataDir);
  const store = new SqliteStore(paths.db);
  const audit = new AuditLog(store.db, loadOrCreateAuditKey(paths.auditKey));
  bootstrapAdmin(store, audit, paths.adminToken);

  const events = new EventBus();
  const registry = new DriverRegistry(LEVEL_MODULES);
  for (const d of opts.drivers ?? []) registry.register(d);
  await registry.provisionAll();
  for (const t of store.listTenants()) {
    for (const f of await registry.applyTenantQuota(t.id, t.quota)) log.warn({ tenant: t.name, ...f }, 'driver could not enforce the tenant quota');
  }
  const locks = new KeyedMutex();
  const operations = new OperationRunner(store, events);
  const interrupted = operations.failInterrupted();
  if (interrupted) log.warn({ interrupted }, 'operations interrupted by the previous shutdown were marked failed');

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

  const instances = new InstanceService({ store, audit, events, operations, registry, locks });
  // The guard's checksum DB lives in the store's SQLite file, signed with a key kept beside it (0600), not in it.
  const guardKeyPath = join(opts.dataDir, 'guard-key');
  if (!existsSync(guardKeyPath)) writeSecret(guardKeyPath, randomBytes(32).toString('hex'));
  const hasher = new Hasher();
  const checksums = new ChecksumDb(store.db, { key: Buffer.from(readFileSync(guardKeyPath, 'utf8').trim(), 'hex'), hasher });
  // Data dirs of an earlier Strata keyed tenants' files by name: renamed to ids before anything serves or watches them.
  const migrated = migrateNameKeyedData(opts.dataDir, store, checksums);
  if (migrated.renamed.length + migrated.quarantined.length + migrated.forgotten.length > 0) log.info({ ...migrated }, 'tenant data keyed by name moved to tenant ids');
  const tenantData = new TenantData({ dataDir: opts.dataDir, store, registry, checksums, log: log.child({ svc: 'tenants' }) });
  const guardTarget = new GuardTarget(store, instances, operations, audit, { registry });
  const guard = new Guard({ ruleset: await loadDefaultRuleset(), target: guardTarget, audit, events });
  const integrity = new IntegrityMonitor({
    guard, checksums, knownGood: new KnownGoodStore(join(opts.dataDir, 'guard', 'known-good')),
    ...(opts.guard?.verifyIntervalMs !== undefined ? { verifyIntervalMs: opts.guard.verifyIntervalMs } : {}),
  });
  guardTarget.monitor = integrity;
  const guardWatch = new GuardWatch({
    store, registry, monitor: integrity, target: guardTarget, dataDir: opts.dataDir, log: log.child({ svc: 'guard' }), ingest: guard.ingest,
    ...(opts.guard?.knownGoodDelayMs !== undefined ? { knownGoodDelayMs: opts.guard.knownGoodDelayMs } : {}),
    ...(opts.guard?.selfCheck ? { selfRoot: opts.guard.selfRoot ?? fileURLToPath(new URL('../..', import.meta.url)) } : {}),
  });
  // The isolate boundary: drivers that report it (env) get the guard's interceptor.
  for (const d of registry.availableDrivers()) {
    if (isBoundarySource(d)) await guard.addInterceptor(new IsolateInterceptor(d, `${d.id}:boundary`));
  }
  const gatewayRefusals = new GatewayInterceptor();
  await guard.addInterceptor(gatewayRefusals);
  // QMP events of every VM, by the instance whose run dir holds the monitor socket (…/<id>/run/qmp.sock).
  await guard.addInterceptor(new QmpInterceptor(tapQmpEvents, (path) => {
    const i = store.getInstanceById(basename(dirname(dirname(path))));
    return i && (i.level === 'vm' || i.level === 'emu') ? { tenantId: i.tenantId, instanceId: i.id, level: i.level } : null;
  }));
  // VMs from outside: what their tenant bridge's firewall refuses, QEMU's CPU and its cgroup's memory.
  const vmDrivers = registry.availableDrivers().filter((d) => d.level === 'vm' || d.level === 'emu');
  if (vmDrivers.length > 0) {
    const targets = cachedTargets(() => vmTargets(store, vmDrivers), 5_000);
    const guardLog = log.child({ svc: 'guard' });
    await guard.addInterceptor(new VmNetworkInterceptor({ targets, log: (message, details) => guardLog.warn(details ?? {}, message) }));
    await guard.addInterceptor(new VmResourceInterceptor({ targets }));
  }
  await guard.start();
  // The os level's syscalls through bpftrace: attached in the background (compiling takes seconds), never failing the start.
  const osDriver = registry.availableDrivers().find((d) => d.level === 'os');
  if (osDriver && opts.guard?.bpf) {
    const guardLog = log.child({ svc: 'guard' });
    const ready = bpfAvailable();
    if (!ready.available) guardLog.warn({ reason: ready.reason }, 'the guard has no os interceptor');
    else {
      const bpf = new BpfInterceptor({ targets: () => osTargets(store, osDriver), log: (message, details) => guardLog.info(details ?? {}, message) });
      guard.addInterceptor(bpf).catch((e: Error) => guardLog.error({ error: e.message }, 'the os interceptor did not start'));
    }
  }
  integrity.start();
  const certificates = new CertificateManager({
    dataDir: opts.dataDir, store, audit, events, operations, log: log.child({ svc: 'certificates' }),
    ...(opts.acme ? { acme: opts.acme } : {}), ...(opts.renewCheckMs ? { renewCheckMs: opts.renewCheckMs } : {}),
  });
  certificates.start();
  const services: Services = {
    version: VERSION, startedAt: new Date(), store, audit, auth: new Authenticator(store), events, operations, registry,
    instances, metrics, guard, certificates, tenantData,
  };
  // Moves between daemons: both sides; moved sites are forwarded by this gateway (`control/move.ts`).
  const forwards = new Forwards(opts.dataDir);
  const flushRoutes = async (): Promise<void> => { await services.frontDoor?.flush(); };
  services.moves = {
    mover: new Mover({ store, audit, events, operations, registry, locks, forwards, flushRoutes }),
    receiver: new Receiver({ store, audit, events, registry, locks, flushRoutes, gatewayAddress: () => gatewayAddress(services) }),
    forwards, flushRoutes,
  };
  const reconciler = new Reconciler({
    store, registry, locks, logger: log,
    ...(opts.reconcileIntervalMs ? { intervalMs: opts.reconcileIntervalMs } : {}),
    onEvent: (e) => events.publish('lifecycle', e.type, e.tenantId ?? null, { ...e }),
    // An instance whose restart policy leaves it dead is meant to be stopped from then on.
    setDesiredState: (id, desired) => { if (store.getInstanceById(id)) store.updateInstance(id, { desiredState: desired }); },
  });
  await reconciler.start();
  guardWatch.start(events);

  const api = await buildApi(services, { logger: log.child({ svc: 'api' }) });
  let frontDoor: FrontDoor | undefined;
  let siteLogs: SiteLogs | undefined;
  let closed = false;
  /** Takes everything down in reverse order of start; safe to call twice. */
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    await frontDoor?.close();
    siteLogs?.stop();
    await api.close();
    await services.moves?.receiver.close();
    await guardWatch.stop();
    await integrity.stop();
    await guard.stop();
    await hasher.close();
    await reconciler.stop();
    await certificates.stop();
    await operations.drain();
    audit.close();
    await registry.cleanupAll();
    store.close();
  };
  let address: string;
  try {
    address = await api.listen({ host: opts.host, port: opts.port });
  } catch (e) {
    await close();
    throw new StrataError('STRATA_ERR_CONFIG', `cannot listen on ${opts.host}:${opts.port}: ${(e as Error).message}`, undefined, { cause: e });
  }
  if (opts.gateway) {
    try {
      const accessLogPath = join(opts.dataDir, 'logs', 'access.log');
      const gateway = await startGateway({ listeners: opts.gateway.listeners, sites: [] }, {
        logger: log.child({ svc: 'gateway' }), accessLog: { path: accessLogPath }, acmeChallengeDir: challengeDir(opts.dataDir), ...opts.gateway.options,
      });
      frontDoor = new FrontDoor(gateway, store, opts.gateway.listeners, opts.dataDir, log.child({ svc: 'front-door' }), certificates.files);
      services.gateway = gateway;
      services.frontDoor = frontDoor;
      siteLogs = new SiteLogs({ accessLogPath, dir: siteLogsDir(opts.dataDir), store, reopen: () => gateway.reopenAccessLog() });
      siteLogs.start();
      await frontDoor.sync();
      frontDoor.watch(events);
      guardTarget.routes = frontDoor;
      frontDoor.forwards = () => forwards.routes();
      gatewayRefusals.attach(gateway);
    } catch (e) {
      await close();
      throw e;
    }
  }
  return { url: address, dataDir: opts.dataDir, tokenPath: paths.adminToken, services, api, integrity: { monitor: integrity, watch: guardWatch, target: guardTarget }, close };
}
