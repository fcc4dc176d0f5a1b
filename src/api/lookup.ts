/**
 * Finding a tenant's objects by name for a caller. Every lookup authorises first
 * and answers "not found" the same way for what does not exist and for what
 * belongs to another tenant, so a tenant cannot probe for other tenants' names.
 */
import { authorize, isTenantRole, type Action, type Principal } from '../auth/policy.js';
import { notFound } from '../core/errors.js';
import type { Services } from './services.js';
import type { Instance, Tenant } from '../store/types.js';

export function tenantFor(s: Services, p: Principal, name: string, action: Action): Tenant {
  const tenant = s.store.getTenantByName(name);
  if (!tenant) {
    // A tenant role gets the 404 it gets for another tenant's name; provider roles learn 403 first when they may never act.
    if (!isTenantRole(p.role)) authorize(p, action);
    throw notFound('tenant', name);
  }
  authorize(p, action, { id: tenant.id, hidden: { kind: 'tenant', name } });
  return tenant;
}

export function instanceFor(s: Services, p: Principal, tenantName: string, name: string, action: Action): { tenant: Tenant; instance: Instance } {
  const tenant = tenantFor(s, p, tenantName, action);
  const instance = s.store.getInstance(tenant.id, name);
  if (!instance) throw notFound('instance', `${tenantName}/${name}`);
  return { tenant, instance };
}

/** Tenant id → name, for presenting objects. */
export const tenantName = (s: Services, id: string | null): string | null => (id ? (s.store.getTenant(id)?.name ?? null) : null);
