/**
 * The data model, typed. These are the shapes the store keeps and the API returns
 * (the API's zod schemas in `src/api/schemas.ts` describe the same objects).
 */
import type { InstanceInfo } from '../core/instance-facts.js';

/**
 * The id of the level an instance runs at: a level module's id (the modules
 * are listed in `src/levels/`). The store keeps the id it is given.
 */
export type LevelId = string;

/** An instance's lifecycle states; the transitions between them are in levels/lifecycle.ts. */
export const STATES = ['creating', 'stopped', 'running', 'paused', 'failed', 'deleted'] as const;
export type InstanceState = (typeof STATES)[number];

/** What a user may ask for; the reconciler drives the actual state toward it. */
export const DESIRED_STATES = ['running', 'stopped', 'paused'] as const;
export type DesiredState = (typeof DESIRED_STATES)[number];

export const ROLES = ['provider-admin', 'tenant-admin', 'tenant-member', 'auditor', 'metrics-reader'] as const;
export type Role = (typeof ROLES)[number];

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
  /** Bumped by every change of the quota: the ETag's version. */
  revision: number;
  createdAt: string;
}

export interface User {
  id: string;
  name: string;
  role: Role;
  /** Tenant id for tenant roles, null for provider-admin, auditor and metrics-reader. */
  tenantId: string | null;
  /** Bumped by every change of the role: the ETag's version. */
  revision: number;
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
  level: LevelId;
  source: string | null;
  limits: InstanceLimits;
  config: Record<string, unknown>;
  desiredState: DesiredState;
  actualState: InstanceState;
  /** Live facts from the driver (address, pid, console …) and its details for people, last observed. */
  info: InstanceInfo;
  /** A clone not yet made: the snapshot it is made from (cleared once the driver has made it). */
  cloneFrom?: CloneSource;
  /** Bumped by every change of source, limits or config (not of states or facts): the ETag's version. */
  revision: number;
  createdAt: string;
  updatedAt: string;
}

export interface CloneSource {
  instanceId: string;
  snapshotId: string;
}

export type SiteTarget =
  | { kind: 'instance'; instance: string; port: number }
  | { kind: 'static'; root: string }
  | { kind: 'redirect'; to: string; status: 301 | 302 | 307 | 308 };

export interface Site {
  id: string;
  tenantId: string;
  hostname: string;
  /** For an instance target, `instance` is the name it was given by; the site follows `instanceId`. */
  target: SiteTarget;
  /**
   * The instance an instance target resolved to when the site was made (it
   * may have been deleted since); null for other targets. A later instance of
   * the same name is a different one: the site does not follow it.
   */
  instanceId: string | null;
  /** The gateway listeners (by name) that serve it; null: all of them. */
  listeners: string[] | null;
  /** Bumped by every change of target or listeners: the ETag's version. */
  revision: number;
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
  /**
   * Taken by the platform (the guard's known-good and forensic snapshots), not
   * the tenant: absent from the tenant's lists and usage, listed for the provider.
   */
  system: boolean;
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

export const CERTIFICATE_SOURCES = ['upload', 'local-ca', 'acme'] as const;
export type CertificateSource = (typeof CERTIFICATE_SOURCES)[number];
export const ACME_CHALLENGES = ['http-01', 'tls-alpn-01'] as const;
export type AcmeChallenge = (typeof ACME_CHALLENGES)[number];

/**
 * A TLS certificate the gateway serves for some of a tenant's sites (tenantId
 * null: the platform's own). The chain is public and kept here; the private key
 * never is: it lives in `DATA/certs/<id>/key.pem` (0600).
 */
export interface Certificate {
  id: string;
  tenantId: string | null;
  /** Normalised names, each served by this certificate only. */
  hostnames: string[];
  source: CertificateSource;
  /** `pending`: an ACME order in progress (no chain yet); `failed`: see `error`. */
  status: 'pending' | 'active' | 'failed';
  /** ACME only: how the names are validated (and renewed). */
  challenge: AcmeChallenge | null;
  /** The certificate then its chain, PEM; null until issued. */
  certPem: string | null;
  /** SHA-256 of the leaf, hex with colons. */
  fingerprint: string | null;
  notBefore: string | null;
  notAfter: string | null;
  error: string | null;
  createdAt: string;
  updatedAt: string;
}

export interface CertificateIssued {
  certPem: string;
  fingerprint: string;
  notBefore: string;
  notAfter: string;
}

export const DOMAIN_SOURCES = ['assigned'] as const;
/**
 * A domain a tenant holds: the name and every name under it. Only its holder
 * adds sites (exact or wildcard) in it. `assigned`: by the provider.
 */
export interface Domain {
  id: string;
  tenantId: string;
  /** Normalised, no wildcard: 'example.com'. */
  name: string;
  source: (typeof DOMAIN_SOURCES)[number];
  createdAt: string;
}

/** A gateway listener added through the API (listeners given to `strata up --listen` are not stored). */
export interface StoredListener {
  id: string;
  name: string;
  address: string;
  port: number;
  protocol: 'http' | 'https' | 'tls-passthrough';
  defaultSite: string | null;
  strictSni: boolean;
  createdAt: string;
}

export interface InstanceLimits {
  vcpus: number;
  memoryMiB: number;
  diskMiB: number;
}

/** What a driver needs to create an instance. Typed inside; validated at the API edge. */
export interface InstanceSpec {
  id: string;
  tenantId: string;
  name: string;
  level: LevelId;
  /** Image, handler file, kernel … as the level understands it. */
  source: string | null;
  limits: InstanceLimits;
  /** Level-specific options, validated by the driver's own schema. */
  config: Record<string, unknown>;
}
