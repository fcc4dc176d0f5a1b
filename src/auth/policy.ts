/**
 * Who may do what: one table, one function.
 *
 * Tenant segregation comes first: a tenant role asking about another tenant's
 * object gets the same 404 as for an object that does not exist, so nothing leaks
 * existence. Then the role table. A provider-admin may do everything, but acting
 * inside a tenant's instances (lifecycle, snapshots, sites, and later logs and
 * exec) needs a stated reason, which lands in the audit log where that tenant can
 * read it — a check on malicious insiders.
 */
import { StrataError, notFound } from '../core/errors.js';
import type { Role } from '../store/types.js';

export interface Principal {
  userId: string;
  name: string;
  role: Role;
  tenantId: string | null;
  tokenId: string;
  /** From the `X-Strata-Reason` header; required for provider-admin acting inside a tenant. */
  reason: string | null;
}

interface Rule {
  roles: readonly Role[];
  /** The action touches a tenant's instance data: a provider-admin must give a reason. */
  reason?: true;
}

const TENANT_STAFF = ['provider-admin', 'tenant-admin', 'tenant-member'] as const;
const TENANT_ADMINS = ['provider-admin', 'tenant-admin'] as const;
const READERS = ['provider-admin', 'auditor', 'tenant-admin', 'tenant-member'] as const;

export const POLICY = {
  'info.read': { roles: TENANT_STAFF },
  'tenant.create': { roles: ['provider-admin'] },
  'tenant.list': { roles: TENANT_STAFF },
  'tenant.read': { roles: TENANT_STAFF },
  'tenant.update': { roles: ['provider-admin'] },
  'tenant.delete': { roles: ['provider-admin'] },
  'user.create': { roles: TENANT_ADMINS },
  'user.list': { roles: TENANT_ADMINS },
  'user.read': { roles: TENANT_ADMINS },
  'user.update': { roles: TENANT_ADMINS },
  'user.delete': { roles: TENANT_ADMINS },
  'token.create': { roles: READERS },
  'token.list': { roles: READERS },
  'token.delete': { roles: READERS },
  'instance.create': { roles: TENANT_ADMINS, reason: true },
  'instance.list': { roles: TENANT_STAFF },
  'instance.read': { roles: TENANT_STAFF },
  'instance.action': { roles: TENANT_STAFF, reason: true },
  'instance.delete': { roles: TENANT_ADMINS, reason: true },
  'instance.deploy': { roles: TENANT_ADMINS, reason: true },
  'instance.update': { roles: TENANT_ADMINS, reason: true },
  // As Incus's `can_view` reads an instance's logs and `can_exec`/`can_access_console` are granted apart:
  // a member (who may already start and stop) reads output; running code inside is an admin's, like deploying it.
  'instance.logs': { roles: TENANT_STAFF, reason: true },
  'instance.exec': { roles: TENANT_ADMINS, reason: true },
  'instance.console': { roles: TENANT_ADMINS, reason: true },
  'instance.files.read': { roles: TENANT_ADMINS, reason: true },
  'instance.files.write': { roles: TENANT_ADMINS, reason: true },
  'instance.clone': { roles: TENANT_ADMINS, reason: true },
  // A move crosses daemons (each with its own quotas and data): the provider's, as `incus move` between remotes is the admin's.
  'instance.move': { roles: ['provider-admin'], reason: true },
  'instance.receive': { roles: ['provider-admin'], reason: true },
  'forward.list': { roles: ['provider-admin'] },
  'forward.delete': { roles: ['provider-admin'] },
  'image.list': { roles: TENANT_STAFF },
  'image.import': { roles: ['provider-admin'] },
  'site.create': { roles: TENANT_ADMINS, reason: true },
  'site.list': { roles: TENANT_STAFF },
  'site.read': { roles: TENANT_STAFF },
  'site.update': { roles: TENANT_ADMINS, reason: true },
  'site.delete': { roles: TENANT_ADMINS, reason: true },
  'site.files.read': { roles: TENANT_STAFF, reason: true },
  'site.files.write': { roles: TENANT_ADMINS, reason: true },
  'snapshot.create': { roles: TENANT_STAFF, reason: true },
  'snapshot.list': { roles: TENANT_STAFF },
  'snapshot.restore': { roles: TENANT_ADMINS, reason: true },
  'snapshot.delete': { roles: TENANT_ADMINS, reason: true },
  'certificate.create': { roles: TENANT_ADMINS, reason: true },
  'certificate.issue': { roles: TENANT_ADMINS, reason: true },
  'certificate.list': { roles: TENANT_STAFF },
  'certificate.read': { roles: TENANT_STAFF },
  'certificate.delete': { roles: TENANT_ADMINS, reason: true },
  'ca.read': { roles: TENANT_STAFF },
  // Domains are the provider's to hand out (as a registrar's delegation is); a tenant sees those it holds.
  'domain.create': { roles: ['provider-admin'] },
  'domain.list': { roles: TENANT_STAFF },
  'domain.read': { roles: TENANT_STAFF },
  'domain.delete': { roles: ['provider-admin'] },
  'listener.create': { roles: ['provider-admin'] },
  'listener.list': { roles: ['provider-admin'] },
  'listener.delete': { roles: ['provider-admin'] },
  // A backup holds every key and secret of the daemon: the provider's alone.
  'backup.create': { roles: ['provider-admin'] },
  'operation.read': { roles: TENANT_STAFF },
  'audit.read': { roles: READERS },
  'alert.read': { roles: READERS },
  'event.read': { roles: READERS },
  // Where alerts go: a tenant-admin sets its tenant's (its alerts only), the provider its own; an auditor reads them.
  'output.create': { roles: TENANT_ADMINS },
  'output.read': { roles: ['provider-admin', 'auditor', 'tenant-admin'] },
  'output.delete': { roles: TENANT_ADMINS },
  // A scraper's token (Prometheus) reads every series and nothing else; tenant staff read their own tenant's series.
  'metrics.read': { roles: ['provider-admin', 'metrics-reader', 'tenant-admin', 'tenant-member'] },
} as const satisfies Record<string, Rule>;

export type Action = keyof typeof POLICY;
export const ACTIONS = Object.keys(POLICY) as Action[];

/** Roles bound to one tenant; they never see past it. */
export const isTenantRole = (role: Role): boolean => role === 'tenant-admin' || role === 'tenant-member';

/**
 * Throws unless `p` may do `action`. `tenant` is the tenant that owns the object
 * (omit for provider-wide actions); `hidden` describes the object for the 404
 * shown to callers of other tenants.
 */
export function authorize(
  p: Principal,
  action: Action,
  tenant?: { id: string; hidden: { kind: string; name: string } },
): void {
  if (tenant && isTenantRole(p.role) && p.tenantId !== tenant.id) {
    throw notFound(tenant.hidden.kind, tenant.hidden.name);
  }
  const rule: Rule = POLICY[action];
  if (!rule.roles.includes(p.role)) {
    throw new StrataError('STRATA_ERR_FORBIDDEN', `role ${p.role} may not ${action}`, { action, role: p.role });
  }
  if (p.role === 'provider-admin' && tenant && rule.reason && !p.reason) {
    throw new StrataError(
      'STRATA_ERR_REASON_REQUIRED',
      `${action} inside a tenant needs a reason (X-Strata-Reason header, --reason flag); it is recorded in the tenant's audit log`,
      { action },
    );
  }
}
