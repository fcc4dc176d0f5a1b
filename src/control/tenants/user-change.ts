/**
 * A user's role, changed: within a tenant (member ⇄ admin) by that tenant's
 * admins, across the tenant/provider line (or between tenants) by a
 * provider-admin only. The last provider-admin keeps its role, as it cannot be
 * deleted. The user's tokens act with the new role from their next request
 * (authentication reads the role from the user, not from the token).
 */
import { isTenantRole, type Principal } from '../../auth/policy.js';
import { StrataError, notFound } from '../../core/errors.js';
import { checkIfMatch } from '../../core/revision.js';
import type { Store } from '../../store/store.js';
import type { Role, User } from '../../store/types.js';

type AuditFn = (entry: { action: string; target: string; tenantId: string | null; details?: Record<string, unknown> }) => void;

export interface UserChange {
  role: Role;
  /** The tenant (id) a tenant role belongs to; null for provider roles. The caller resolves (and authorises) it. */
  tenantId: string | null;
}

/** Changes `user`'s role as `p`; `ifMatch` as the If-Match header gave it. Nothing changed: no revision, no audit entry. */
export function changeUserRole(store: Store, p: Principal, user: User, change: UserChange, opts: { ifMatch?: string; audit: AuditFn }): User {
  if (isTenantRole(change.role) !== (change.tenantId !== null)) {
    throw new StrataError('STRATA_ERR_INTERNAL', `role ${change.role} given ${change.tenantId === null ? 'no tenant' : 'a tenant'}`);
  }
  return store.transaction(() => {
    const cur = store.getUser(user.id);
    if (!cur) throw notFound('user', user.name);
    checkIfMatch(opts.ifMatch, cur, `user ${cur.name}`);
    if (cur.role === change.role && cur.tenantId === change.tenantId) return cur;
    const crossing = !isTenantRole(cur.role) || !isTenantRole(change.role) || cur.tenantId !== change.tenantId;
    if (crossing && p.role !== 'provider-admin') {
      throw new StrataError('STRATA_ERR_FORBIDDEN', `only a provider-admin may make ${cur.name} a ${change.role}${isTenantRole(change.role) ? ' of another tenant' : ''}`);
    }
    if (cur.role === 'provider-admin' && store.countUsers({ role: 'provider-admin' }) <= 1) {
      throw new StrataError('STRATA_ERR_CONFLICT', 'cannot change the role of the last provider-admin');
    }
    const next = store.setUserRole(cur.id, change.role, change.tenantId);
    opts.audit({ action: 'user.update', target: cur.name, tenantId: cur.tenantId ?? next.tenantId, details: { role: next.role, from: cur.role } });
    return next;
  });
}
