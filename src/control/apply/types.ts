/**
 * Declarative apply, the control plane's side: what a file of documents asks
 * for, normalised (every default filled in, so the file and the store compare
 * field by field), and the plan that takes the daemon from what it holds to it.
 *
 * The API edge parses and validates the documents (`src/api/apply-documents.ts`)
 * and turns them into these specs; the store's objects become the same specs
 * (`state.ts`), which is also what `strata get TENANT -o yaml` exports.
 */
import type { RestartPolicy } from '../lifecycle/restart-policy.js';
import type { AcmeChallenge, CertificateSource, InstanceLimits, Quota, Role, SiteTarget, StoredListener } from '../../store/types.js';

export const KINDS = ['Tenant', 'User', 'Instance', 'Site', 'Certificate', 'Listener'] as const;
export type Kind = (typeof KINDS)[number];

export interface TenantSpec {
  kind: 'Tenant';
  name: string;
  quota: Quota;
}

export interface UserSpec {
  kind: 'User';
  name: string;
  role: Role;
  /** Tenant name; null for provider roles. */
  tenant: string | null;
}

/** The desired states a file may ask for: a pause is an operator's act, not a configuration. */
export type WantedState = 'running' | 'stopped';

export interface InstanceSpec {
  kind: 'Instance';
  tenant: string;
  name: string;
  level: string;
  source: string | null;
  limits: InstanceLimits;
  /** The level's config, without the control plane's `restart` key (that is `restart`). */
  config: Record<string, unknown>;
  restart: RestartPolicy;
  state: WantedState;
}

export interface SiteSpec {
  kind: 'Site';
  tenant: string;
  hostname: string;
  target: SiteTarget;
  listeners: string[] | null;
}

export interface CertificateSpec {
  kind: 'Certificate';
  tenant: string;
  /** Sorted: a certificate is known by the set of names it serves. */
  hostnames: string[];
  source: CertificateSource;
  /** ACME only. */
  challenge: AcmeChallenge | null;
  /** Uploads: the PEM chain (compared) and key (never stored where it can be read back, so never compared). */
  certificate?: string;
  key?: string;
}

export interface ListenerSpec {
  kind: 'Listener';
  name: string;
  address: string;
  port: number;
  protocol: StoredListener['protocol'];
  defaultSite: string | null;
  strictSni: boolean;
}

export type Spec = TenantSpec | UserSpec | InstanceSpec | SiteSpec | CertificateSpec | ListenerSpec;

/** An object the daemon holds: its spec and the ids the executor acts on. */
export interface Held<S extends Spec = Spec> {
  spec: S;
  id: string;
  /** Sites: the instance the site follows (null: none, or a deleted one). */
  instanceId?: string | null;
}

/** A document of the file, by its place in it (0-based, over every file the CLI sent). */
export interface Wanted<S extends Spec = Spec> {
  spec: S;
  document: number;
}

export type PlanAction = 'create' | 'change' | 'replace' | 'delete';

export interface FieldChange {
  /** Dotted path inside the document: `limits.memoryMiB`, `config.port`, `target.port`. */
  field: string;
  from: unknown;
  to: unknown;
}

/** When a change reaches a running instance. */
export type Takes = 'live' | 'restart';

export interface PlanEntry {
  action: PlanAction;
  kind: Kind;
  tenant: string | null;
  /** Name, hostname, or a certificate's names joined by commas. */
  name: string;
  /** The document asking for it; null for deletes and for objects replaced because one they follow is. */
  document: number | null;
  /** What differs (change, replace); empty for create and delete. */
  changes: FieldChange[];
  /** Why a change is a replace, or why an unchanged object is replaced. */
  reason?: string;
  /** Instances: whether the change reaches it live or at its next restart. */
  takes?: Takes;
  /** What the executor needs. */
  want?: Spec;
  held?: Held;
}

/** A key unique per kind: the object's identity across the file and the store. */
export function keyOf(s: Spec): string {
  switch (s.kind) {
    case 'Tenant': case 'User': case 'Listener': return `${s.kind}:${s.name}`;
    case 'Instance': return `Instance:${s.tenant}/${s.name}`;
    case 'Site': return `Site:${s.hostname}`;
    case 'Certificate': return `Certificate:${s.tenant}:${s.hostnames.join(',')}`;
  }
}

export const nameOf = (s: Spec): string =>
  s.kind === 'Site' ? s.hostname : s.kind === 'Certificate' ? s.hostnames.join(',') : s.name;

export const tenantOf = (s: Spec): string | null =>
  s.kind === 'Tenant' ? s.name : s.kind === 'Listener' ? null : s.kind === 'User' ? s.tenant : s.tenant;
