/**
 * The embedded `Store`: one SQLite file (better-sqlite3) in WAL mode.
 *
 * A transaction is in the WAL file when its commit returns, before the API
 * acknowledges it, so a SIGKILL of the daemon never loses acknowledged state.
 * `synchronous = NORMAL` fsyncs the WAL at checkpoints rather than every commit:
 * a power cut may lose the last commits, a process crash cannot. Set
 * `durability: 'full'` to fsync every commit (about half the write rate).
 * Rows hold JSON for the nested, schema-validated parts (quota, config, info, targets).
 */
import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { conflict, notFound } from '../core/errors.js';
import { MIGRATIONS } from './migrations.js';
import { SqliteOutputs } from './outputs.js';
import type { IdempotentRecord, InstancePatch, NewInstance, Store } from './store.js';
import type {
  Certificate, CertificateIssued, CloneSource, Domain, Instance, Operation, Quota, Role, Site, SiteTarget, Snapshot, StoredListener, Tenant, Token, Usage, User,
} from './types.js';
import type { ReconcileRecord } from './store.js';
import type { DesiredState, InstanceState } from './types.js';
import type { InstanceInfo } from '../core/instance-facts.js';

type Row = Record<string, unknown>;

/** Short random ids with a type prefix, e.g. `in_4fKq9x2LmP0a`. */
export const newId = (prefix: string): string => `${prefix}_${randomBytes(9).toString('base64url')}`;
const now = (): string => new Date().toISOString();
const json = (v: unknown): string => JSON.stringify(v);
const parse = <T>(v: unknown): T => JSON.parse(String(v)) as T;

const toTenant = (r: Row): Tenant => ({
  id: String(r.id),
  name: String(r.name),
  quota: parse<Quota>(r.quota),
  revision: Number(r.revision),
  createdAt: String(r.created_at),
});
const toUser = (r: Row): User => ({
  id: String(r.id),
  name: String(r.name),
  role: r.role as Role,
  tenantId: (r.tenant_id as string | null) ?? null,
  revision: Number(r.revision),
  createdAt: String(r.created_at),
});
const toToken = (r: Row): Token => ({
  id: String(r.id),
  userId: String(r.user_id),
  name: String(r.name),
  createdAt: String(r.created_at),
  expiresAt: (r.expires_at as string | null) ?? null,
  lastUsedAt: (r.last_used_at as string | null) ?? null,
});
const toInstance = (r: Row): Instance => ({
  id: String(r.id),
  tenantId: String(r.tenant_id),
  name: String(r.name),
  level: r.level as Instance['level'],
  source: (r.source as string | null) ?? null,
  limits: { vcpus: Number(r.vcpus), memoryMiB: Number(r.memory_mib), diskMiB: Number(r.disk_mib) },
  config: parse(r.config),
  desiredState: r.desired_state as DesiredState,
  actualState: r.actual_state as InstanceState,
  info: parse(r.info),
  ...(r.clone_from ? { cloneFrom: parse<CloneSource>(r.clone_from) } : {}),
  revision: Number(r.revision),
  createdAt: String(r.created_at),
  updatedAt: String(r.updated_at),
});
const toSite = (r: Row): Site => ({
  id: String(r.id),
  tenantId: String(r.tenant_id),
  hostname: String(r.hostname),
  target: parse<SiteTarget>(r.target),
  instanceId: (r.instance_id as string | null) ?? null,
  listeners: r.listeners ? parse<string[]>(r.listeners) : null,
  revision: Number(r.revision),
  createdAt: String(r.created_at),
});
const toDomain = (r: Row): Domain => ({
  id: String(r.id), tenantId: String(r.tenant_id), name: String(r.name), source: r.source as Domain['source'], createdAt: String(r.created_at),
});
const toSnapshot = (r: Row): Snapshot => ({
  id: String(r.id),
  tenantId: String(r.tenant_id),
  instanceId: String(r.instance_id),
  name: String(r.name),
  status: r.status as Snapshot['status'],
  sizeBytes: Number(r.size_bytes),
  digest: (r.digest as string | null) ?? null,
  system: Number(r.system) === 1,
  createdAt: String(r.created_at),
});
const toOperation = (r: Row): Operation => ({
  id: String(r.id),
  tenantId: (r.tenant_id as string | null) ?? null,
  kind: String(r.kind),
  target: String(r.target),
  status: r.status as Operation['status'],
  progress: r.progress === null ? null : Number(r.progress),
  error: r.error === null ? null : parse(r.error),
  result: r.result === null ? null : parse(r.result),
  createdAt: String(r.created_at),
  updatedAt: String(r.updated_at),
});

const toCertificate = (r: Row): Certificate => ({
  id: String(r.id),
  tenantId: (r.tenant_id as string | null) ?? null,
  hostnames: parse<string[]>(r.hostnames),
  source: r.source as Certificate['source'],
  status: r.status as Certificate['status'],
  challenge: (r.challenge as Certificate['challenge']) ?? null,
  certPem: (r.cert_pem as string | null) ?? null,
  fingerprint: (r.fingerprint as string | null) ?? null,
  notBefore: (r.not_before as string | null) ?? null,
  notAfter: (r.not_after as string | null) ?? null,
  error: (r.error as string | null) ?? null,
  createdAt: String(r.created_at),
  updatedAt: String(r.updated_at),
});
const toListener = (r: Row): StoredListener => ({
  id: String(r.id),
  name: String(r.name),
  address: String(r.address),
  port: Number(r.port),
  protocol: r.protocol as StoredListener['protocol'],
  defaultSite: (r.default_site as string | null) ?? null,
  strictSni: Number(r.strict_sni) === 1,
  createdAt: String(r.created_at),
});

const toReconcileRecord = (i: Instance): ReconcileRecord => ({
  spec: { id: i.id, tenantId: i.tenantId, name: i.name, level: i.level, source: i.source, limits: i.limits, config: i.config },
  desiredState: i.desiredState,
  actualState: i.actualState,
  ...(i.cloneFrom ? { cloneFrom: i.cloneFrom } : {}),
});

const isUniqueViolation = (e: unknown): boolean =>
  e instanceof Error && 'code' in e && String((e as { code: unknown }).code).startsWith('SQLITE_CONSTRAINT_UNIQUE');

export class SqliteStore implements Store {
  readonly db: Database.Database;
  readonly outputs: SqliteOutputs;

  constructor(path: string, opts: { readonly?: boolean; durability?: 'normal' | 'full' } = {}) {
    this.db = new Database(path, { readonly: opts.readonly ?? false });
    this.outputs = new SqliteOutputs(this.db);
    if (opts.readonly) return;
    this.db.pragma('journal_mode = WAL');
    this.db.pragma(`synchronous = ${opts.durability === 'full' ? 'FULL' : 'NORMAL'}`);
    this.db.pragma('foreign_keys = ON');
    this.db.pragma('busy_timeout = 5000');
    this.migrate();
  }

  /** Applies every migration newer than `user_version`, each in its own transaction. */
  private migrate(): void {
    const current = Number(this.db.pragma('user_version', { simple: true }));
    for (const m of MIGRATIONS) {
      if (m.version <= current) continue;
      this.db.transaction(() => {
        this.db.exec(m.sql);
        this.db.pragma(`user_version = ${m.version}`);
      }).immediate();
    }
  }

  schemaVersion(): number {
    return Number(this.db.pragma('user_version', { simple: true }));
  }

  transaction<T>(fn: () => T): T {
    if (this.db.inTransaction) return fn();
    return this.db.transaction(fn).immediate();
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  private get(sql: string, ...args: unknown[]): Row | undefined {
    return this.db.prepare(sql).get(...args) as Row | undefined;
  }
  private all(sql: string, ...args: unknown[]): Row[] {
    return this.db.prepare(sql).all(...args) as Row[];
  }
  private run(sql: string, ...args: unknown[]): Database.RunResult {
    return this.db.prepare(sql).run(...args);
  }
  /** Inserts, turning a UNIQUE violation into a 409 that names what clashed. */
  private insert(what: string, name: string, sql: string, ...args: unknown[]): void {
    try {
      this.run(sql, ...args);
    } catch (e) {
      if (isUniqueViolation(e)) throw conflict(`${what} '${name}' already exists`, { kind: what, name });
      throw e;
    }
  }

  // Tenants

  createTenant(t: { name: string; quota: Quota }): Tenant {
    const tenant: Tenant = { id: newId('tn'), name: t.name, quota: t.quota, revision: 1, createdAt: now() };
    this.insert('tenant', t.name, 'INSERT INTO tenants (id, name, quota, created_at) VALUES (?, ?, ?, ?)',
      tenant.id, tenant.name, json(tenant.quota), tenant.createdAt);
    return tenant;
  }
  getTenant(id: string): Tenant | null {
    const r = this.get('SELECT * FROM tenants WHERE id = ?', id);
    return r ? toTenant(r) : null;
  }
  getTenantByName(name: string): Tenant | null {
    const r = this.get('SELECT * FROM tenants WHERE name = ?', name);
    return r ? toTenant(r) : null;
  }
  listTenants(): Tenant[] {
    return this.all('SELECT * FROM tenants ORDER BY name').map(toTenant);
  }
  setTenantQuota(id: string, quota: Quota): Tenant {
    if (this.run('UPDATE tenants SET quota = ?, revision = revision + 1 WHERE id = ?', json(quota), id).changes === 0) throw notFound('tenant', id);
    return this.getTenant(id)!;
  }
  deleteTenant(id: string): void {
    this.transaction(() => {
      this.run('DELETE FROM operations WHERE tenant_id = ?', id);
      this.run('DELETE FROM tenants WHERE id = ?', id);
    });
  }
  usage(tenantId: string): Usage {
    const i = this.get(
      `SELECT COUNT(*) AS n, COALESCE(SUM(vcpus), 0) AS vcpus, COALESCE(SUM(memory_mib), 0) AS mem,
              COALESCE(SUM(disk_mib), 0) AS disk FROM instances WHERE tenant_id = ?`, tenantId)!;
    // The platform's own snapshots (the guard's) are not the tenant's to pay for.
    const snapBytes = Number(this.get('SELECT COALESCE(SUM(size_bytes), 0) AS b FROM snapshots WHERE tenant_id = ? AND system = 0', tenantId)!.b);
    const sites = Number(this.get('SELECT COUNT(*) AS n FROM sites WHERE tenant_id = ?', tenantId)!.n);
    return {
      instances: Number(i.n),
      vcpus: Number(i.vcpus),
      memoryMiB: Number(i.mem),
      diskMiB: Number(i.disk) + Math.ceil(snapBytes / (1024 * 1024)),
      sites,
    };
  }

  // Users and tokens

  createUser(u: { name: string; role: Role; tenantId: string | null }): User {
    const user: User = { id: newId('us'), name: u.name, role: u.role, tenantId: u.tenantId, revision: 1, createdAt: now() };
    this.insert('user', u.name, 'INSERT INTO users (id, name, role, tenant_id, created_at) VALUES (?, ?, ?, ?, ?)',
      user.id, user.name, user.role, user.tenantId, user.createdAt);
    return user;
  }
  getUser(id: string): User | null {
    const r = this.get('SELECT * FROM users WHERE id = ?', id);
    return r ? toUser(r) : null;
  }
  getUserByName(name: string): User | null {
    const r = this.get('SELECT * FROM users WHERE name = ?', name);
    return r ? toUser(r) : null;
  }
  listUsers(filter: { tenantId?: string } = {}): User[] {
    return filter.tenantId
      ? this.all('SELECT * FROM users WHERE tenant_id = ? ORDER BY name', filter.tenantId).map(toUser)
      : this.all('SELECT * FROM users ORDER BY name').map(toUser);
  }
  setUserRole(id: string, role: Role, tenantId: string | null): User {
    if (this.run('UPDATE users SET role = ?, tenant_id = ?, revision = revision + 1 WHERE id = ?', role, tenantId, id).changes === 0) throw notFound('user', id);
    return this.getUser(id)!;
  }
  deleteUser(id: string): void {
    this.run('DELETE FROM users WHERE id = ?', id);
  }
  countUsers(filter: { role?: Role; tenantId?: string }): number {
    const r = this.get(
      'SELECT COUNT(*) AS n FROM users WHERE (? IS NULL OR role = ?) AND (? IS NULL OR tenant_id = ?)',
      filter.role ?? null, filter.role ?? null, filter.tenantId ?? null, filter.tenantId ?? null);
    return Number(r!.n);
  }

  createToken(t: { userId: string; name: string; secretHash: string; expiresAt: string | null; id: string }): Token {
    const createdAt = now();
    this.insert('token', t.id,
      'INSERT INTO tokens (id, user_id, name, secret_hash, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)',
      t.id, t.userId, t.name, t.secretHash, createdAt, t.expiresAt);
    return { id: t.id, userId: t.userId, name: t.name, createdAt, expiresAt: t.expiresAt, lastUsedAt: null };
  }
  getTokenForAuth(id: string): { token: Token; secretHash: string } | null {
    const r = this.get('SELECT * FROM tokens WHERE id = ?', id);
    return r ? { token: toToken(r), secretHash: String(r.secret_hash) } : null;
  }
  getToken(id: string): Token | null {
    return this.getTokenForAuth(id)?.token ?? null;
  }
  listTokens(filter: { userId?: string; tenantId?: string } = {}): Token[] {
    return this.all(
      `SELECT t.* FROM tokens t JOIN users u ON u.id = t.user_id
       WHERE (? IS NULL OR t.user_id = ?) AND (? IS NULL OR u.tenant_id = ?) ORDER BY t.created_at`,
      filter.userId ?? null, filter.userId ?? null, filter.tenantId ?? null, filter.tenantId ?? null,
    ).map(toToken);
  }
  deleteToken(id: string): void {
    this.run('DELETE FROM tokens WHERE id = ?', id);
  }
  touchToken(id: string, at: string): void {
    this.run('UPDATE tokens SET last_used_at = ? WHERE id = ?', at, id);
  }

  // Instances

  createInstance(i: NewInstance): Instance {
    const t = now();
    const inst: Instance = {
      id: newId('in'), tenantId: i.tenantId, name: i.name, level: i.level, source: i.source, limits: i.limits,
      config: i.config, desiredState: i.desiredState, actualState: 'creating', info: {},
      ...(i.cloneFrom ? { cloneFrom: { instanceId: i.cloneFrom.instanceId, snapshotId: i.cloneFrom.snapshotId } } : {}), revision: 1, createdAt: t, updatedAt: t,
    };
    this.insert('instance', i.name,
      `INSERT INTO instances (id, tenant_id, name, level, source, vcpus, memory_mib, disk_mib, config,
         desired_state, actual_state, info, clone_from, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      inst.id, inst.tenantId, inst.name, inst.level, inst.source, inst.limits.vcpus, inst.limits.memoryMiB,
      inst.limits.diskMiB, json(inst.config), inst.desiredState, inst.actualState, json(inst.info),
      inst.cloneFrom ? json(inst.cloneFrom) : null, t, t);
    return inst;
  }
  getInstance(tenantId: string, name: string): Instance | null {
    const r = this.get('SELECT * FROM instances WHERE tenant_id = ? AND name = ?', tenantId, name);
    return r ? toInstance(r) : null;
  }
  getInstanceById(id: string): Instance | null {
    const r = this.get('SELECT * FROM instances WHERE id = ?', id);
    return r ? toInstance(r) : null;
  }
  listInstances(filter: { tenantId?: string } = {}): Instance[] {
    return filter.tenantId
      ? this.all('SELECT * FROM instances WHERE tenant_id = ? ORDER BY name', filter.tenantId).map(toInstance)
      : this.all('SELECT * FROM instances ORDER BY tenant_id, name').map(toInstance);
  }
  updateInstance(id: string, patch: InstancePatch): Instance {
    const cur = this.getInstanceById(id);
    if (!cur) throw notFound('instance', id);
    const cloneFrom = patch.cloneFrom === null ? null : cur.cloneFrom ? json(cur.cloneFrom) : null;
    const limits = patch.limits ?? cur.limits;
    const revised = patch.source !== undefined || patch.limits !== undefined || patch.config !== undefined;
    this.run(`UPDATE instances SET source = ?, vcpus = ?, memory_mib = ?, disk_mib = ?, config = ?, desired_state = ?, actual_state = ?, info = ?,
        clone_from = ?, revision = revision + ?, updated_at = ? WHERE id = ?`,
      patch.source === undefined ? cur.source : patch.source, limits.vcpus, limits.memoryMiB, limits.diskMiB, json(patch.config ?? cur.config),
      patch.desiredState ?? cur.desiredState, patch.actualState ?? cur.actualState, json(patch.info ?? cur.info), cloneFrom, revised ? 1 : 0, now(), id);
    return this.getInstanceById(id)!;
  }
  deleteInstance(id: string): void {
    this.transaction(() => {
      this.run('DELETE FROM snapshots WHERE instance_id = ?', id);
      this.run('DELETE FROM instances WHERE id = ?', id);
    });
  }

  listInstancesForReconcile(): ReconcileRecord[] {
    return this.listInstances().map(toReconcileRecord);
  }
  getInstanceForReconcile(id: string): ReconcileRecord | null {
    const i = this.getInstanceById(id);
    return i ? toReconcileRecord(i) : null;
  }
  cloneMade(id: string): void {
    this.run('UPDATE instances SET clone_from = NULL WHERE id = ?', id);
  }
  setActualState(id: string, state: InstanceState, info?: InstanceInfo): void {
    this.run('UPDATE instances SET actual_state = ?, info = COALESCE(?, info), updated_at = ? WHERE id = ?',
      state, info === undefined ? null : json(info), now(), id);
  }

  // Sites

  /** The id of the instance an instance target names in the tenant (none is a 404); null for other targets. */
  #targetInstance(tenantId: string, target: SiteTarget): string | null {
    if (target.kind !== 'instance') return null;
    const id = this.getInstance(tenantId, target.instance)?.id;
    if (id === undefined) throw notFound('instance', target.instance);
    return id;
  }
  createSite(s: { tenantId: string; hostname: string; target: SiteTarget; listeners?: string[] | null }): Site {
    const instanceId = this.#targetInstance(s.tenantId, s.target);
    const site: Site = {
      id: newId('si'), tenantId: s.tenantId, hostname: s.hostname, target: s.target, instanceId, listeners: s.listeners ?? null, revision: 1, createdAt: now(),
    };
    this.insert('site', s.hostname,
      'INSERT INTO sites (id, tenant_id, hostname, target, instance_name, instance_id, listeners, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
      site.id, site.tenantId, site.hostname, json(site.target),
      site.target.kind === 'instance' ? site.target.instance : null, instanceId, site.listeners === null ? null : json(site.listeners), site.createdAt);
    return site;
  }
  getSite(hostname: string): Site | null {
    const r = this.get('SELECT * FROM sites WHERE hostname = ?', hostname);
    return r ? toSite(r) : null;
  }
  listSites(filter: { tenantId?: string; instanceId?: string } = {}): Site[] {
    return this.all(
      `SELECT * FROM sites WHERE (? IS NULL OR tenant_id = ?) AND (? IS NULL OR instance_id = ?) ORDER BY hostname`,
      filter.tenantId ?? null, filter.tenantId ?? null, filter.instanceId ?? null, filter.instanceId ?? null,
    ).map(toSite);
  }
  updateSite(id: string, patch: { target?: SiteTarget; listeners?: string[] | null }): Site {
    const r = this.get('SELECT * FROM sites WHERE id = ?', id);
    if (!r) throw notFound('site', id);
    const cur = toSite(r);
    const target = patch.target ?? cur.target;
    // An unchanged instance target keeps following the instance it resolved to, even one deleted since (a site never follows a new namesake).
    const instanceId = patch.target === undefined ? cur.instanceId : this.#targetInstance(cur.tenantId, target);
    const listeners = patch.listeners === undefined ? cur.listeners : patch.listeners;
    this.run('UPDATE sites SET target = ?, instance_name = ?, instance_id = ?, listeners = ?, revision = revision + 1 WHERE id = ?',
      json(target), target.kind === 'instance' ? target.instance : null, instanceId, listeners === null ? null : json(listeners), id);
    return toSite(this.get('SELECT * FROM sites WHERE id = ?', id)!);
  }
  deleteSite(id: string): void {
    this.run('DELETE FROM sites WHERE id = ?', id);
  }

  // Domains

  createDomain(d: Pick<Domain, 'tenantId' | 'name' | 'source'>): Domain {
    const domain: Domain = { id: newId('dm'), ...d, createdAt: now() };
    this.insert('domain', d.name, 'INSERT INTO domains (id, tenant_id, name, source, created_at) VALUES (?, ?, ?, ?, ?)',
      domain.id, domain.tenantId, domain.name, domain.source, domain.createdAt);
    return domain;
  }
  getDomain(name: string): Domain | null {
    const r = this.get('SELECT * FROM domains WHERE name = ?', name);
    return r ? toDomain(r) : null;
  }
  listDomains(filter: { tenantId?: string } = {}): Domain[] {
    return this.all('SELECT * FROM domains WHERE (? IS NULL OR tenant_id = ?) ORDER BY name', filter.tenantId ?? null, filter.tenantId ?? null).map(toDomain);
  }
  deleteDomain(id: string): void {
    this.run('DELETE FROM domains WHERE id = ?', id);
  }

  // Snapshots

  createSnapshot(s: { tenantId: string; instanceId: string; name: string; system?: boolean }): Snapshot {
    const snap: Snapshot = {
      id: newId('sn'), tenantId: s.tenantId, instanceId: s.instanceId, name: s.name, status: 'pending',
      sizeBytes: 0, digest: null, system: s.system ?? false, createdAt: now(),
    };
    this.insert('snapshot', s.name,
      `INSERT INTO snapshots (id, tenant_id, instance_id, name, status, size_bytes, digest, system, created_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      snap.id, snap.tenantId, snap.instanceId, snap.name, snap.status, snap.sizeBytes, snap.digest, snap.system ? 1 : 0, snap.createdAt);
    return snap;
  }
  getSnapshot(instanceId: string, name: string): Snapshot | null {
    const r = this.get('SELECT * FROM snapshots WHERE instance_id = ? AND name = ?', instanceId, name);
    return r ? toSnapshot(r) : null;
  }
  getSnapshotById(id: string): Snapshot | null {
    const r = this.get('SELECT * FROM snapshots WHERE id = ?', id);
    return r ? toSnapshot(r) : null;
  }
  listSnapshots(filter: { tenantId?: string; instanceId?: string; system?: boolean }): Snapshot[] {
    const system = filter.system === undefined ? null : filter.system ? 1 : 0;
    return this.all(
      `SELECT * FROM snapshots WHERE (? IS NULL OR tenant_id = ?) AND (? IS NULL OR instance_id = ?) AND (? IS NULL OR system = ?)
       ORDER BY created_at`,
      filter.tenantId ?? null, filter.tenantId ?? null, filter.instanceId ?? null, filter.instanceId ?? null, system, system,
    ).map(toSnapshot);
  }
  updateSnapshot(id: string, patch: Partial<Pick<Snapshot, 'status' | 'sizeBytes' | 'digest'>>): Snapshot {
    const cur = this.getSnapshotById(id);
    if (!cur) throw notFound('snapshot', id);
    this.run('UPDATE snapshots SET status = ?, size_bytes = ?, digest = ? WHERE id = ?',
      patch.status ?? cur.status, patch.sizeBytes ?? cur.sizeBytes, patch.digest ?? cur.digest, id);
    return this.getSnapshotById(id)!;
  }
  deleteSnapshot(id: string): void {
    this.run('DELETE FROM snapshots WHERE id = ?', id);
  }

  // Operations

  createOperation(o: { tenantId: string | null; kind: string; target: string }): Operation {
    const t = now();
    const op: Operation = {
      id: newId('op'), tenantId: o.tenantId, kind: o.kind, target: o.target, status: 'pending', progress: null,
      error: null, result: null, createdAt: t, updatedAt: t,
    };
    this.run(
      `INSERT INTO operations (id, tenant_id, kind, target, status, progress, error, result, created_at, updated_at)
       VALUES (?, ?, ?, ?, ?, NULL, NULL, NULL, ?, ?)`,
      op.id, op.tenantId, op.kind, op.target, op.status, t, t);
    return op;
  }
  getOperation(id: string): Operation | null {
    const r = this.get('SELECT * FROM operations WHERE id = ?', id);
    return r ? toOperation(r) : null;
  }
  listOperations(filter: { tenantId?: string; status?: Operation['status']; limit?: number } = {}): Operation[] {
    return this.all(
      `SELECT * FROM operations WHERE (? IS NULL OR tenant_id = ?) AND (? IS NULL OR status = ?)
       ORDER BY created_at DESC LIMIT ?`,
      filter.tenantId ?? null, filter.tenantId ?? null, filter.status ?? null, filter.status ?? null, filter.limit ?? 100,
    ).map(toOperation);
  }
  updateOperation(id: string, patch: Partial<Pick<Operation, 'status' | 'progress' | 'error' | 'result'>>): Operation {
    const cur = this.getOperation(id);
    if (!cur) throw notFound('operation', id);
    const next = { ...cur, ...patch };
    this.run('UPDATE operations SET status = ?, progress = ?, error = ?, result = ?, updated_at = ? WHERE id = ?',
      next.status, next.progress, next.error ? json(next.error) : null, next.result ? json(next.result) : null, now(), id);
    return this.getOperation(id)!;
  }

  // Certificates

  createCertificate(c: Pick<Certificate, 'tenantId' | 'hostnames' | 'source' | 'status' | 'challenge'> & Partial<CertificateIssued>): Certificate {
    const t = now();
    const id = newId('ce');
    return this.transaction(() => {
      this.run(
        `INSERT INTO certificates (id, tenant_id, hostnames, source, status, challenge, cert_pem, fingerprint, not_before,
           not_after, error, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)`,
        id, c.tenantId, json(c.hostnames), c.source, c.status, c.challenge, c.certPem ?? null, c.fingerprint ?? null,
        c.notBefore ?? null, c.notAfter ?? null, t, t);
      for (const name of c.hostnames) {
        this.insert('certificate for', name, 'INSERT INTO certificate_names (hostname, certificate_id) VALUES (?, ?)', name, id);
      }
      return this.getCertificate(id)!;
    });
  }
  getCertificate(id: string): Certificate | null {
    const r = this.get('SELECT * FROM certificates WHERE id = ?', id);
    return r ? toCertificate(r) : null;
  }
  getCertificateByName(hostname: string): Certificate | null {
    const r = this.get('SELECT c.* FROM certificates c JOIN certificate_names n ON n.certificate_id = c.id WHERE n.hostname = ?', hostname);
    return r ? toCertificate(r) : null;
  }
  listCertificates(filter: { tenantId?: string; source?: Certificate['source'] } = {}): Certificate[] {
    return this.all(
      'SELECT * FROM certificates WHERE (? IS NULL OR tenant_id = ?) AND (? IS NULL OR source = ?) ORDER BY created_at, id',
      filter.tenantId ?? null, filter.tenantId ?? null, filter.source ?? null, filter.source ?? null,
    ).map(toCertificate);
  }
  updateCertificate(id: string, patch: Partial<CertificateIssued> & Partial<Pick<Certificate, 'status' | 'error'>>): Certificate {
    const cur = this.getCertificate(id);
    if (!cur) throw notFound('certificate', id);
    const issued = patch.certPem !== undefined;
    this.run(
      `UPDATE certificates SET status = ?, cert_pem = ?, fingerprint = ?, not_before = ?, not_after = ?, error = ?, updated_at = ?
       WHERE id = ?`,
      patch.status ?? (issued ? 'active' : cur.status), patch.certPem ?? cur.certPem, patch.fingerprint ?? cur.fingerprint,
      patch.notBefore ?? cur.notBefore, patch.notAfter ?? cur.notAfter,
      patch.error !== undefined ? patch.error : issued ? null : cur.error, now(), id);
    return this.getCertificate(id)!;
  }
  deleteCertificate(id: string): void {
    this.run('DELETE FROM certificates WHERE id = ?', id);
  }

  // Listeners

  createListener(l: Omit<StoredListener, 'id' | 'createdAt'>): StoredListener {
    const listener: StoredListener = { ...l, id: newId('li'), createdAt: now() };
    this.insert('listener', `${l.name} (${l.address}:${l.port})`,
      `INSERT INTO listeners (id, name, address, port, protocol, default_site, strict_sni, created_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      listener.id, l.name, l.address, l.port, l.protocol, l.defaultSite, l.strictSni ? 1 : 0, listener.createdAt);
    return listener;
  }
  getListener(name: string): StoredListener | null {
    const r = this.get('SELECT * FROM listeners WHERE name = ?', name);
    return r ? toListener(r) : null;
  }
  listListeners(): StoredListener[] {
    return this.all('SELECT * FROM listeners ORDER BY name').map(toListener);
  }
  deleteListener(id: string): void {
    this.run('DELETE FROM listeners WHERE id = ?', id);
  }

  // Idempotency keys

  getIdempotent(userId: string, key: string): IdempotentRecord | null {
    const r = this.get('SELECT * FROM idempotency WHERE user_id = ? AND key = ?', userId, key);
    return r ? { requestHash: String(r.request_hash), status: Number(r.status), body: String(r.body) } : null;
  }
  putIdempotent(userId: string, key: string, rec: IdempotentRecord): void {
    this.run('INSERT OR REPLACE INTO idempotency (user_id, key, request_hash, status, body, created_at) VALUES (?, ?, ?, ?, ?, ?)',
      userId, key, rec.requestHash, rec.status, rec.body, now());
  }
}
