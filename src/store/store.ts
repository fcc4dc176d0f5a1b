/**
 * `Store` is the one interface to Strata's state. SQLite (`sqlite.ts`) is the
 * embedded default; a clustered installation would put the same interface over
 * etcd. Calls are synchronous: SQLite answers in microseconds, and it lets a
 * caller wrap several calls — a quota check, an insert and its audit entry — in
 * one `transaction`, which is what makes quotas race-free and the audit log
 * complete after a crash.
 */
import type {
  Instance,
  Operation,
  Quota,
  Role,
  Site,
  SiteTarget,
  Snapshot,
  Tenant,
  Token,
  Usage,
  User,
} from './types.js';
import type { DesiredState, InstanceState } from '../levels/lifecycle.js';
import type { ReconcileStore } from '../control/reconciler.js';

export interface NewInstance {
  tenantId: string;
  name: string;
  level: Instance['level'];
  source: string | null;
  limits: Instance['limits'];
  config: Record<string, unknown>;
  desiredState: DesiredState;
}

export interface InstancePatch {
  source?: string | null;
  config?: Record<string, unknown>;
  desiredState?: DesiredState;
  actualState?: InstanceState;
  info?: Record<string, unknown>;
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
  /** What a tenant uses now: counted from its instances, snapshots and sites. */
  usage(tenantId: string): Usage;

  createUser(u: { name: string; role: Role; tenantId: string | null }): User;
  getUser(id: string): User | null;
  getUserByName(name: string): User | null;
  listUsers(filter?: { tenantId?: string }): User[];
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

  createSite(s: { tenantId: string; hostname: string; target: SiteTarget }): Site;
  getSite(hostname: string): Site | null;
  listSites(filter?: { tenantId?: string; instanceName?: string }): Site[];
  deleteSite(id: string): void;

  createSnapshot(s: { tenantId: string; instanceId: string; name: string }): Snapshot;
  getSnapshot(instanceId: string, name: string): Snapshot | null;
  getSnapshotById(id: string): Snapshot | null;
  listSnapshots(filter: { tenantId?: string; instanceId?: string }): Snapshot[];
  updateSnapshot(id: string, patch: Partial<Pick<Snapshot, 'status' | 'sizeBytes' | 'digest'>>): Snapshot;
  deleteSnapshot(id: string): void;

  createOperation(o: { tenantId: string | null; kind: string; target: string }): Operation;
  getOperation(id: string): Operation | null;
  listOperations(filter?: { tenantId?: string; status?: Operation['status']; limit?: number }): Operation[];
  updateOperation(id: string, patch: Partial<Pick<Operation, 'status' | 'progress' | 'error' | 'result'>>): Operation;

  getIdempotent(userId: string, key: string): IdempotentRecord | null;
  putIdempotent(userId: string, key: string, rec: IdempotentRecord): void;
}
