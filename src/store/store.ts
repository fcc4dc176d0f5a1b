/**
 * `Store` is the one interface to Strata's state. SQLite (`sqlite.ts`) is the
 * embedded default; a clustered installation would put the same interface over
 * etcd. Calls are synchronous: SQLite answers in microseconds, and it lets a
 * caller wrap several calls — a quota check, an insert and its audit entry — in
 * one `transaction`, which is what makes quotas race-free and the audit log
 * complete after a crash.
 */
import type {
  Certificate,
  Domain,
  CloneSource,
  DesiredState,
  InstanceSpec,
  InstanceState,
  CertificateIssued,
  Instance,
  Operation,
  Quota,
  Role,
  Site,
  SiteTarget,
  Snapshot,
  StoredListener,
  Tenant,
  Token,
  Usage,
  User,
} from './types.js';
import type { InstanceInfo } from '../core/instance-facts.js';
import type { OutputRecords } from './outputs.js';

/** What the reconciler knows of one instance from the store. */
export interface ReconcileRecord {
  spec: InstanceSpec;
  desiredState: DesiredState;
  actualState: InstanceState;
  /** A clone not yet made: the snapshot to make it from. */
  cloneFrom?: CloneSource;
}

export interface ReconcileStore {
  /** Every instance that is not deleted, with what the driver needs to (re)create it. */
  listInstancesForReconcile(): ReconcileRecord[];
  /**
   * One instance by id, null when unknown. Optional: without it the reconciler
   * finds the instance in `listInstancesForReconcile()`, which is correct but
   * costs a full listing for every instance that needs work.
   */
  getInstanceForReconcile?(id: string): ReconcileRecord | null;
  setActualState(id: string, state: InstanceState, info?: InstanceInfo): void;
  /** Forgets a clone's source once the driver has made the clone. */
  cloneMade?(id: string): void;
}

export interface NewInstance {
  tenantId: string;
  name: string;
  level: Instance['level'];
  source: string | null;
  limits: Instance['limits'];
  config: Record<string, unknown>;
  desiredState: DesiredState;
  /** A clone: the snapshot it is made from, kept with the instance until the clone is made. */
  cloneFrom?: CloneSource;
}

/** A change of `source`, `limits` or `config` bumps the instance's revision; the others (states, facts) do not. */
export interface InstancePatch {
  source?: string | null;
  limits?: Instance['limits'];
  config?: Record<string, unknown>;
  desiredState?: DesiredState;
  actualState?: InstanceState;
  info?: InstanceInfo;
  /** null: the clone is made. */
  cloneFrom?: null;
}

export interface IdempotentRecord {
  requestHash: string;
  status: number;
  body: string;
}

export interface Store extends ReconcileStore {
  /** Runs `fn` in one write transaction (BEGIN IMMEDIATE); nested calls join it. */
  transaction<T>(fn: () => T): T;
  close(): void;

  createTenant(t: { name: string; quota: Quota }): Tenant;
  getTenant(id: string): Tenant | null;
  getTenantByName(name: string): Tenant | null;
  listTenants(): Tenant[];
  setTenantQuota(id: string, quota: Quota): Tenant;
  deleteTenant(id: string): void;
  /** What a tenant uses now: counted from its instances, its own snapshots (not the system's) and sites. */
  usage(tenantId: string): Usage;

  createUser(u: { name: string; role: Role; tenantId: string | null }): User;
  getUser(id: string): User | null;
  getUserByName(name: string): User | null;
  listUsers(filter?: { tenantId?: string }): User[];
  /** A new role (and the tenant it goes with: null for provider roles). Bumps the revision. */
  setUserRole(id: string, role: Role, tenantId: string | null): User;
  deleteUser(id: string): void;
  countUsers(filter: { role?: Role; tenantId?: string }): number;

  createToken(t: { userId: string; name: string; secretHash: string; expiresAt: string | null; id: string }): Token;
  /** The token and the hash of its secret, for authentication. */
  getTokenForAuth(id: string): { token: Token; secretHash: string } | null;
  getToken(id: string): Token | null;
  listTokens(filter?: { userId?: string; tenantId?: string }): Token[];
  deleteToken(id: string): void;
  touchToken(id: string, at: string): void;

  createInstance(i: NewInstance): Instance;
  getInstance(tenantId: string, name: string): Instance | null;
  getInstanceById(id: string): Instance | null;
  listInstances(filter?: { tenantId?: string }): Instance[];
  updateInstance(id: string, patch: InstancePatch): Instance;
  deleteInstance(id: string): void;
  /** Forgets a clone's source once the driver has made the clone. */
  cloneMade(id: string): void;

  /** An instance target is resolved here, once, to the tenant's instance of that name (its id); none is a 404. */
  createSite(s: { tenantId: string; hostname: string; target: SiteTarget; listeners?: string[] | null }): Site;
  getSite(hostname: string): Site | null;
  /** A new instance target is resolved as at create (its instance's id; none is a 404). Bumps the revision. */
  updateSite(id: string, patch: { target?: SiteTarget; listeners?: string[] | null }): Site;
  listSites(filter?: { tenantId?: string; instanceId?: string }): Site[];
  deleteSite(id: string): void;

  createDomain(d: Pick<Domain, 'tenantId' | 'name' | 'source'>): Domain;
  getDomain(name: string): Domain | null;
  listDomains(filter?: { tenantId?: string }): Domain[];
  deleteDomain(id: string): void;

  createSnapshot(s: { tenantId: string; instanceId: string; name: string; system?: boolean }): Snapshot;
  getSnapshot(instanceId: string, name: string): Snapshot | null;
  getSnapshotById(id: string): Snapshot | null;
  /** `system`: only the platform's (true) or only the tenant's own (false); both when absent. */
  listSnapshots(filter: { tenantId?: string; instanceId?: string; system?: boolean }): Snapshot[];
  updateSnapshot(id: string, patch: Partial<Pick<Snapshot, 'status' | 'sizeBytes' | 'digest'>>): Snapshot;
  deleteSnapshot(id: string): void;

  createOperation(o: { tenantId: string | null; kind: string; target: string }): Operation;
  getOperation(id: string): Operation | null;
  listOperations(filter?: { tenantId?: string; status?: Operation['status']; limit?: number }): Operation[];
  updateOperation(id: string, patch: Partial<Pick<Operation, 'status' | 'progress' | 'error' | 'result'>>): Operation;

  /** Claims `hostnames` for a new certificate; a name another certificate holds is a 409. */
  createCertificate(c: Pick<Certificate, 'tenantId' | 'hostnames' | 'source' | 'status' | 'challenge'> & Partial<CertificateIssued>): Certificate;
  getCertificate(id: string): Certificate | null;
  /** The certificate holding `hostname`, if any. */
  getCertificateByName(hostname: string): Certificate | null;
  listCertificates(filter?: { tenantId?: string; source?: Certificate['source'] }): Certificate[];
  /** A new chain (issue, renewal) makes the certificate active; a failure keeps the chain it had. */
  updateCertificate(id: string, patch: Partial<CertificateIssued> & Partial<Pick<Certificate, 'status' | 'error'>>): Certificate;
  deleteCertificate(id: string): void;

  createListener(l: Omit<StoredListener, 'id' | 'createdAt'>): StoredListener;
  getListener(name: string): StoredListener | null;
  listListeners(): StoredListener[];
  deleteListener(id: string): void;

  /** The guard's alert outputs (`outputs.ts`). */
  readonly outputs: OutputRecords;

  getIdempotent(userId: string, key: string): IdempotentRecord | null;
  putIdempotent(userId: string, key: string, rec: IdempotentRecord): void;
}
