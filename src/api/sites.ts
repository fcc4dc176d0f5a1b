/** `/v1/tenants/:tenant/sites`: hostnames and what they serve. The gateway reads these. */
import { z } from 'zod';
import { checkSiteName } from '../control/front-door/hostnames.js';
import { checkQuota } from '../control/lifecycle/quotas.js';
import { notFound } from '../core/errors.js';
import { changeSite, checkSiteListeners, checkSiteTarget } from '../control/front-door/site-change.js';
import { ifMatchOf, withEtag } from './etag.js';
import { tenantFor } from './lookup.js';
import { presentSite } from './present.js';
import { defineRoute, type AuditFn } from './route.js';
import { ErrorBody, Hostname, Name, Site, SiteCreate, SiteUpdate, list } from './schemas.js';
import type { Services } from './services.js';
import type { Site as StoredSite, SiteTarget, Tenant } from '../store/types.js';
import type { Principal } from '../auth/policy.js';

const tag = 'sites';
const TenantParams = z.object({ tenant: Name }).strict();
const Params = z.object({ tenant: Name, hostname: Hostname }).strict();

/** The front door's fixed listeners, for the listener checks. */
const fixedListeners = (s: Services) => s.frontDoor?.listeners ?? [];

/** The tenant's site of that hostname; the same 404 for another tenant's. */
function siteFor(s: Services, tenant: Tenant, hostname: string): StoredSite {
  const site = s.store.getSite(hostname);
  if (!site || site.tenantId !== tenant.id) throw notFound('site', hostname);
  return site;
}

/** The fields a site is made of, as its create call takes them. */
export interface SiteInput {
  hostname: string;
  target: SiteTarget;
  listeners?: string[] | undefined;
}

/** Adds a site (target, listeners, quota and hostname ownership checked). Also what `apply` creates sites with. */
export function createSite(s: Services, p: Principal, tenantName: string, body: SiteInput, audit: AuditFn): StoredSite {
  const tenant = tenantFor(s, p, tenantName, 'site.create');
  checkSiteTarget(s.store, tenant, body.target);
  if (body.listeners !== undefined) checkSiteListeners(s.store, fixedListeners(s), body.listeners, body.target);
  return s.store.transaction(() => {
    checkQuota(tenant.quota, s.store.usage(tenant.id), { sites: 1 });
    if (!s.store.getSite(body.hostname)) checkSiteName(s.store, tenant.id, body.hostname); // a taken name keeps its own 409
    const site = s.store.createSite({ tenantId: tenant.id, hostname: body.hostname, target: body.target, listeners: body.listeners ?? null });
    audit({ action: 'site.create', target: site.hostname, tenantId: tenant.id, details: { target: site.target, listeners: site.listeners } });
    return site;
  });
}

/** Removes a tenant's site. Also what `apply` deletes sites with. */
export function deleteSite(s: Services, p: Principal, tenantName: string, hostname: string, audit: AuditFn): void {
  const tenant = tenantFor(s, p, tenantName, 'site.delete');
  const site = siteFor(s, tenant, hostname);
  s.store.transaction(() => {
    s.store.deleteSite(site.id);
    audit({ action: 'site.delete', target: site.hostname, tenantId: tenant.id });
  });
}

export const siteRoutes = [
  defineRoute({
    method: 'POST', url: '/v1/tenants/:tenant/sites', tag, summary: 'Add a site', params: TenantParams, body: SiteCreate,
    idempotent: true, auditAs: 'site.create', responses: { 201: Site, 409: ErrorBody, 422: ErrorBody },
    handler: ({ p, params, body, audit, reply }, s) => ({ status: 201, body: presentSite(s, withEtag(reply, createSite(s, p, params.tenant, body, audit))) }),
  }),
  defineRoute({
    method: 'GET', url: '/v1/tenants/:tenant/sites', tag, summary: "List a tenant's sites", params: TenantParams,
    responses: { 200: list(Site) },
    handler: ({ p, params }, s) => {
      const tenant = tenantFor(s, p, params.tenant, 'site.list');
      return { body: { items: s.store.listSites({ tenantId: tenant.id }).map((x) => presentSite(s, x)) } };
    },
  }),
  defineRoute({
    method: 'GET', url: '/v1/tenants/:tenant/sites/:hostname', tag, summary: 'Show a site', params: Params,
    responses: { 200: Site, 404: ErrorBody },
    handler: ({ p, params, reply }, s) => {
      const tenant = tenantFor(s, p, params.tenant, 'site.read');
      return { body: presentSite(s, withEtag(reply, siteFor(s, tenant, params.hostname))) };
    },
  }),
  defineRoute({
    method: 'PATCH', url: '/v1/tenants/:tenant/sites/:hostname', tag,
    summary: "Change a site's target (an instance port, a static root, a redirect) and/or its listeners. If-Match: its ETag, or 412",
    params: Params, body: SiteUpdate, auditAs: 'site.update',
    responses: { 200: Site, 400: ErrorBody, 404: ErrorBody, 412: ErrorBody, 422: ErrorBody },
    handler: ({ p, params, body, audit, req, reply }, s) => {
      const tenant = tenantFor(s, p, params.tenant, 'site.update');
      const site = siteFor(s, tenant, params.hostname);
      const r = changeSite(s.store, fixedListeners(s), tenant, site, body, { ifMatch: ifMatchOf(req), audit });
      return { body: presentSite(s, withEtag(reply, r.site)) };
    },
  }),
  defineRoute({
    method: 'DELETE', url: '/v1/tenants/:tenant/sites/:hostname', tag, summary: 'Remove a site', params: Params,
    auditAs: 'site.delete', responses: { 204: null, 404: ErrorBody },
    handler: ({ p, params, audit }, s) => {
      deleteSite(s, p, params.tenant, params.hostname, audit);
      return { status: 204, body: null };
    },
  }),
];
