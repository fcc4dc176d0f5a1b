/** `/v1/users`: people and robots, each with one role. */
import { z } from 'zod';
import { authorize, isTenantRole, type Principal } from '../auth/policy.js';
import { StrataError, notFound } from '../core/errors.js';
import { validationError } from '../core/validation.js';
import type { Role, User } from '../store/types.js';
import { tenantFor } from './lookup.js';
import { presentUser } from './present.js';
import { defineRoute, type AuditFn } from './route.js';
import type { Services } from './services.js';
import { ErrorBody, Name, User as UserSchema, UserCreate, UserName, UserUpdate, list } from './schemas.js';
import { changeUserRole } from '../control/tenants/user-change.js';
import { ifMatchOf, withEtag } from './etag.js';

const tag = 'users';
const Params = z.object({ user: UserName }).strict();

/** Whether `p` may manage `u`: providers anyone, tenant admins their own tenant, everyone themselves. */
export const managesUser = (p: Principal, u: User): boolean =>
  p.role === 'provider-admin' || u.id === p.userId || (p.role === 'tenant-admin' && u.tenantId !== null && u.tenantId === p.tenantId);

/** The user by name if `p` may manage it; otherwise the same 404 as for a missing user. */
export function userFor(s: Services, p: Principal, name: string): User {
  const u = s.store.getUserByName(name);
  if (!u || !managesUser(p, u)) throw notFound('user', name);
  return u;
}

/** Creates a user with one role (tenant roles in a tenant, given or the caller's). Also what `apply` creates users with. */
export function createUser(s: Services, p: Principal, body: { name: string; role: Role; tenant?: string | undefined }, audit: AuditFn): User {
  let tenantId: string | null = null;
  if (isTenantRole(body.role)) {
    const tenant = body.tenant ?? (p.tenantId ? s.store.getTenant(p.tenantId)?.name : undefined);
    if (!tenant) throw new StrataError('STRATA_ERR_VALIDATION', `body.tenant: required for role ${body.role}`, { issues: [{ field: 'body.tenant', message: 'required' }] });
    tenantId = tenantFor(s, p, tenant, 'user.create').id;
  } else {
    authorize(p, 'user.create');
    if (p.role !== 'provider-admin') throw new StrataError('STRATA_ERR_FORBIDDEN', `only a provider-admin may create a ${body.role}`);
    if (body.tenant) throw new StrataError('STRATA_ERR_VALIDATION', `body.tenant: role ${body.role} belongs to no tenant`, { issues: [{ field: 'body.tenant', message: 'not allowed for this role' }] });
  }
  return s.store.transaction(() => {
    const u = s.store.createUser({ name: body.name, role: body.role, tenantId });
    audit({ action: 'user.create', target: u.name, tenantId, details: { role: u.role } });
    return u;
  });
}

/** Deletes a user and its tokens; never the last provider-admin. Also what `apply --prune` deletes users with. */
export function deleteUser(s: Services, p: Principal, name: string, audit: AuditFn): void {
  authorize(p, 'user.delete');
  const u = userFor(s, p, name);
  s.store.transaction(() => {
    if (u.role === 'provider-admin' && s.store.countUsers({ role: 'provider-admin' }) <= 1) {
      throw new StrataError('STRATA_ERR_CONFLICT', 'cannot delete the last provider-admin');
    }
    s.store.deleteUser(u.id);
    audit({ action: 'user.delete', target: u.name, tenantId: u.tenantId });
  });
}

export const userRoutes = [
  defineRoute({
    method: 'POST', url: '/v1/users', tag, summary: 'Create a user', body: UserCreate, idempotent: true, auditAs: 'user.create',
    responses: { 201: UserSchema, 409: ErrorBody },
    handler: ({ p, body, audit }, s) => ({ status: 201, body: presentUser(s, createUser(s, p, body, audit)) }),
  }),
  defineRoute({
    method: 'GET', url: '/v1/users', tag, summary: 'List users the caller manages',
    query: z.object({ tenant: Name.optional() }).strict(), responses: { 200: list(UserSchema) },
    handler: ({ p, query }, s) => {
      if (!query.tenant) authorize(p, 'user.list');
      const tenantId = query.tenant ? tenantFor(s, p, query.tenant, 'user.list').id : p.role === 'provider-admin' ? undefined : p.tenantId!;
      return { body: { items: s.store.listUsers(tenantId ? { tenantId } : {}).map((u) => presentUser(s, u)) } };
    },
  }),
  defineRoute({
    method: 'GET', url: '/v1/users/:user', tag, summary: 'Show a user', params: Params, responses: { 200: UserSchema, 404: ErrorBody },
    handler: ({ p, params, reply }, s) => {
      const u = userFor(s, p, params.user);
      if (u.id !== p.userId) authorize(p, 'user.read');
      return { body: presentUser(s, withEtag(reply, u)) };
    },
  }),
  defineRoute({
    method: 'PATCH', url: '/v1/users/:user', tag,
    summary: "Change a user's role (a provider-admin's alone across the tenant/provider line or between tenants). If-Match: its ETag, or 412",
    params: Params, body: UserUpdate, auditAs: 'user.update', responses: { 200: UserSchema, 400: ErrorBody, 403: ErrorBody, 404: ErrorBody, 409: ErrorBody, 412: ErrorBody },
    handler: ({ p, params, body, audit, req, reply }, s) => {
      authorize(p, 'user.update');
      const u = userFor(s, p, params.user);
      let tenantId: string | null = null;
      if (isTenantRole(body.role)) {
        // A tenant role stays in the user's tenant unless another is named.
        if (body.tenant !== undefined) tenantId = tenantFor(s, p, body.tenant, 'user.update').id;
        else if (u.tenantId !== null) tenantId = u.tenantId;
        else throw validationError('body.tenant', `required to make a ${u.role} a ${body.role}`);
      } else if (body.tenant !== undefined) throw validationError('body.tenant', `role ${body.role} belongs to no tenant`);
      const next = changeUserRole(s.store, p, u, { role: body.role, tenantId }, { ifMatch: ifMatchOf(req), audit });
      return { body: presentUser(s, withEtag(reply, next)) };
    },
  }),
  defineRoute({
    method: 'DELETE', url: '/v1/users/:user', tag, summary: 'Delete a user and its tokens', params: Params, auditAs: 'user.delete',
    responses: { 204: null, 404: ErrorBody, 409: ErrorBody },
    handler: ({ p, params, audit }, s) => {
      deleteUser(s, p, params.user, audit);
      return { status: 204, body: null };
    },
  }),
];
