/** `/v1/tenants`: the provider's customers and their quotas. */
import type { FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Quota, Tenant as StoredTenant } from '../store/types.js';
import type { Services } from './services.js';
import { authorize, type Principal } from '../auth/policy.js';
import { DEFAULT_QUOTA, checkQuotaCoversUsage } from '../control/lifecycle/quotas.js';
import { StrataError } from '../core/errors.js';
import { checkIfMatch } from '../core/revision.js';
import { ifMatchOf, withEtag } from './etag.js';
import { tenantFor } from './lookup.js';
import { presentTenant } from './present.js';
import { defineRoute, type AuditFn } from './route.js';
import { ErrorBody, Name, Tenant, TenantCreate, TenantUpdate, list } from './schemas.js';

const Params = z.object({ tenant: Name }).strict();
/** quarantine=true keeps what the tenant held, moved to DATA/quarantine/<tenant id>-<time>/ (the provider's alone: deleting a tenant is). */
const DeleteQuery = z.object({ quarantine: z.enum(['true', 'false']).transform((v) => v === 'true').default(false) }).strict();

/** Drivers that can enforce the quota on real usage get it after the change commits (failures are logged). */
function enforceQuota(s: Services, t: { id: string; name: string; quota: Quota }, req: FastifyRequest): void {
  void s.registry.applyTenantQuota(t.id, t.quota).then((failures) => {
    for (const f of failures) req.log.warn({ tenant: t.name, ...f }, 'driver could not enforce the tenant quota');
  });
}
const tag = 'tenants';

/** Creates a tenant (the quota fields not given take the defaults). Also what `apply` creates tenants with. */
export function createTenant(s: Services, p: Principal, body: { name: string; quota?: Partial<Quota> | undefined }, audit: AuditFn, req: FastifyRequest): StoredTenant {
  authorize(p, 'tenant.create');
  const t = s.store.transaction(() => {
    const created = s.store.createTenant({ name: body.name, quota: { ...DEFAULT_QUOTA, ...body.quota } });
    audit({ action: 'tenant.create', target: created.name, tenantId: created.id, details: { quota: created.quota } });
    return created;
  });
  enforceQuota(s, t, req);
  return t;
}

/** Changes the quota fields given; refused below what the tenant uses. Also what `apply` changes quotas with. */
export function updateTenantQuota(s: Services, p: Principal, name: string, quota: Partial<Quota>, audit: AuditFn, req: FastifyRequest, ifMatch?: string): StoredTenant {
  const tenant = tenantFor(s, p, name, 'tenant.update');
  const t = s.store.transaction(() => {
    const current = s.store.getTenant(tenant.id)!;
    checkIfMatch(ifMatch, current, `tenant ${current.name}`);
    const next = { ...current.quota, ...quota };
    checkQuotaCoversUsage(next, s.store.usage(tenant.id));
    const updated = s.store.setTenantQuota(tenant.id, next);
    audit({ action: 'tenant.update', target: updated.name, tenantId: updated.id, details: { quota: next } });
    return updated;
  });
  enforceQuota(s, t, req);
  return t;
}

export const tenantRoutes = [
  defineRoute({
    method: 'POST', url: '/v1/tenants', tag, summary: 'Create a tenant', body: TenantCreate, idempotent: true,
    auditAs: 'tenant.create', responses: { 201: Tenant, 409: ErrorBody },
    handler: ({ p, body, audit, req }, s) => ({ status: 201, body: presentTenant(s, createTenant(s, p, body, audit, req)) }),
  }),
  defineRoute({
    method: 'GET', url: '/v1/tenants', tag, summary: 'List the tenants the caller can see', responses: { 200: list(Tenant) },
    handler: ({ p }, s) => {
      authorize(p, 'tenant.list');
      const all = p.role === 'provider-admin' ? s.store.listTenants() : [s.store.getTenant(p.tenantId ?? '')].filter((t) => t !== null);
      return { body: { items: all.map((t) => presentTenant(s, t)) } };
    },
  }),
  defineRoute({
    method: 'GET', url: '/v1/tenants/:tenant', tag, summary: 'Show a tenant with its quota and usage', params: Params,
    responses: { 200: Tenant, 404: ErrorBody },
    handler: ({ p, params, reply }, s) => ({ body: presentTenant(s, withEtag(reply, tenantFor(s, p, params.tenant, 'tenant.read'))) }),
  }),
  defineRoute({
    method: 'PATCH', url: '/v1/tenants/:tenant', tag, summary: "Change a tenant's quota. If-Match: its ETag, or 412", params: Params, body: TenantUpdate,
    auditAs: 'tenant.update', responses: { 200: Tenant, 412: ErrorBody, 422: ErrorBody },
    handler: ({ p, params, body, audit, req, reply }, s) =>
      ({ body: presentTenant(s, withEtag(reply, updateTenantQuota(s, p, params.tenant, body.quota, audit, req, ifMatchOf(req)))) }),
  }),
  defineRoute({
    method: 'DELETE', url: '/v1/tenants/:tenant', tag,
    summary: "Delete an empty tenant: its users and tokens go with it, and everything it held outside the store (docroots, site logs, KV, snapshot store, certificates, guard baselines) is removed — or, with quarantine=true, moved aside for the provider",
    params: Params, query: DeleteQuery, auditAs: 'tenant.delete', responses: { 204: null, 409: ErrorBody },
    handler: async ({ p, params, query, audit }, s) => {
      const tenant = tenantFor(s, p, params.tenant, 'tenant.delete');
      s.store.transaction(() => {
        const u = s.store.usage(tenant.id);
        const snapshots = s.store.listSnapshots({ tenantId: tenant.id }).length;
        if (u.instances > 0 || u.sites > 0 || snapshots > 0) {
          throw new StrataError('STRATA_ERR_NOT_EMPTY', `tenant '${tenant.name}' still has instances, sites or snapshots`, {
            instances: u.instances, sites: u.sites, snapshots,
          });
        }
        for (const user of s.store.listUsers({ tenantId: tenant.id })) s.store.deleteUser(user.id);
        s.store.deleteTenant(tenant.id);
        audit({ action: 'tenant.delete', target: tenant.name, tenantId: tenant.id, ...(query.quarantine ? { details: { quarantine: true } } : {}) });
      });
      // Its certificates went with the row; their key files go now. The name is free at once: whoever takes it gets a new id, so nothing below is ever theirs.
      s.certificates?.files.sweepOrphans();
      await s.tenantData?.purge(tenant, { quarantine: query.quarantine });
      return { status: 204, body: null };
    },
  }),
];
