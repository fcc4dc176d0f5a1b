/**
 * The data model, typed. These are the shapes the store keeps and the API returns
 * (the API's zod schemas in `src/api/schemas.ts` describe the same objects).
 */
import type { DesiredState, InstanceState } from '../levels/lifecycle.js';

export const LEVELS = ['env', 'os', 'vm', 'emu'] as const;
export type Level = (typeof LEVELS)[number];

export const ROLES = ['provider-admin', 'tenant-admin', 'tenant-member', 'auditor'] as const;
export type Role = (typeof ROLES)[number];
/** Roles that belong to one tenant; the others are provider-wide. */
export const TENANT_ROLES: readonly Role[] = ['tenant-admin', 'tenant-member'];

/** A tenant's share of the machine: its service level agreement. */
export interface Quota {
  instances: number;
  vcpus: number;
  memoryMiB: number;
  diskMiB: number;
  sites: number;
}
export type Usage = Quota;

export interface Tenant {
  id: string;
  name: string;
  quota: Quota;
  createdAt: string;
}

export interface User {
  id: string;
  name: string;
  role: Role;
  /** Tenant id for tenant roles, null for provider-admin and auditor. */
  tenantId: string | null;
  createdAt: string;
}

export interface Token {
  /** Public id, also embedded in the secret: `strata_<id>_<secret>`. */
  id: string;
  userId: string;
  name: string;
  createdAt: string;
  expiresAt: string | null;
  lastUsedAt: string | null;
}

export interface Instance {
  id: string;
  tenantId: string;
  name: string;
  level: Level;
  source: string | null;
  limits: { vcpus: number; memoryMiB: number; diskMiB: number };
  config: Record<string, unknown>;
  desiredState: DesiredState;
  actualState: InstanceState;
  /** Live facts from the driver (address, pid, accelerator …), last observed. */
  info: Record<string, unknown>;
  createdAt: string;
  updatedAt: string;
}

export type SiteTarget =
  | { kind: 'instance'; instance: string; port: number }
  | { kind: 'static'; root: string }
  | { kind: 'redirect'; to: string; status: 301 | 302 | 307 | 308 };

export interface Site {
  id: string;
  tenantId: string;
  hostname: string;
  target: SiteTarget;
  createdAt: string;
}

export interface Snapshot {
  id: string;
  tenantId: string;
  instanceId: string;
  name: string;
  status: 'pending' | 'ready' | 'failed';
  sizeBytes: number;
  digest: string | null;
  createdAt: string;
}

export const OPERATION_STATUSES = ['pending', 'running', 'succeeded', 'failed'] as const;
export type OperationStatus = (typeof OPERATION_STATUSES)[number];

/** Long work (instance lifecycle, snapshots) runs as an operation the caller can poll or wait on. */
export interface Operation {
  id: string;
  tenantId: string | null;
  kind: string;
  target: string;
  status: OperationStatus;
  /** 0..1 when the work can tell. */
  progress: number | null;
  error: { code: string; message: string } | null;
  result: Record<string, unknown> | null;
  createdAt: string;
  updatedAt: string;
}
