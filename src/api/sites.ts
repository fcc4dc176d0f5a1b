/** `/v1/tenants/:tenant/sites`: hostnames and what they serve. The gateway reads these. */
import { z } from 'zod';
import { checkSiteName } from '../control/front-door/hostnames.js';
import { checkQuota } from '../control/lifecycle/quotas.js';
import { StrataError, notFound } from '../core/errors.js';
import { tenantFor } from './lookup.js';
import { presentSite } from './present.js';
import { defineRoute } from './route.js';
import { ErrorBody, Hostname, Name, Site, SiteCreate, list } from './schemas.js';
import type { Services } from './services.js';
import type { SiteTarget } from '../store/types.js';

const tag = 'sites';
const TenantParams = z.object({ tenant: Name }).strict();
const Params = z.object({ tenant: Name, hostname: Hostname }).strict();

/**
 * A site bound to listeners (IP- or port-based virtual hosting) names
 * existing ones, and a static or redirect site (which answers HTTP) no
 * tls-passthrough listener.
 */
function checkListeners(s: Services, names: readonly string[], target: SiteTarget): void {
  const known = new Map<string, string>([
    ...(s.frontDoor?.listeners ?? []).map((l) => [l.id, l.protocol] as const),
    ...s.store.listListeners().map((l) => [l.name, l.protocol] as const),
  ]);
  for (const name of names) {
    const protocol = known.get(name);
    const problem = protocol === undefined ? `no gateway listener is named '${name}'`
      : protocol === 'tls-passthrough' && target.kind !== 'instance' ? `a ${target.kind} site cannot be served on the tls-passthrough listener '${name}'` : null;
    if (problem !== null) throw new StrataError('STRATA_ERR_SITE_LISTENER', `body.listeners: ${problem}`, { listener: name });
  }
}

/** A static root is a path inside the tenant's own docroot area: relative, no `..`. */
const safeRelativePath = (p: string): boolean =>
  !p.startsWith('/') && !p.includes('\0') && p.split(/[\\/]/).every((seg) => seg !== '..');

export const siteRoutes = [
  defineRoute({
    method: 'POST', url: '/v1/tenants/:tenant/sites', tag, summary: 'Add a site', params: TenantParams, body: SiteCreate,
    idempotent: true, auditAs: 'site.create', responses: { 201: Site, 409: ErrorBody, 422: ErrorBody },
    handler: ({ p, params, body, audit }, s) => {
      const tenant = tenantFor(s, p, params.tenant, 'site.create');
      if (body.target.kind === 'static' && !safeRelativePath(body.target.root)) {
        throw new StrataError('STRATA_ERR_VALIDATION', 'body.target.root: a relative path inside the tenant docroot, without ..', {
          issues: [{ field: 'body.target.root', message: 'must be relative, without ..' }],
        });
      }
      if (body.target.kind === 'instance' && !s.store.getInstance(tenant.id, body.target.instance)) {
        throw notFound('instance', `${tenant.name}/${body.target.instance}`);
      }
      if (body.listeners !== undefined) checkListeners(s, body.listeners, body.target);
      return s.store.transaction(() => {
        checkQuota(tenant.quota, s.store.usage(tenant.id), { sites: 1 });
        if (!s.store.getSite(body.hostname)) checkSiteName(s.store, tenant.id, body.hostname); // a taken name keeps its own 409

        const site = s.store.createSite({ tenantId: tenant.id, hostname: body.hostname, target: body.target, listeners: body.listeners ?? null });
        audit({ action: 'site.create', target: site.hostname, tenantId: tenant.id, details: { target: site.target, listeners: site.listeners } });
        return { status: 201, body: presentSite(s, site) };
      });
    },
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
    handler: ({ p, params }, s) => {
      const tenant = tenantFor(s, p, params.tenant, 'site.read');
      const site = s.store.getSite(params.hostname);
      if (!site || site.tenantId !== tenant.id) throw notFound('site', params.hostname);
      return { body: presentSite(s, site) };
    },
  }),
  defineRoute({
    method: 'DELETE', url: '/v1/tenants/:tenant/sites/:hostname', tag, summary: 'Remove a site', params: Params,
    auditAs: 'site.delete', responses: { 204: null, 404: ErrorBody },
    handler: ({ p, params, audit }, s) => {
      const tenant = tenantFor(s, p, params.tenant, 'site.delete');
      const site = s.store.getSite(params.hostname);
      if (!site || site.tenantId !== tenant.id) throw notFound('site', params.hostname);
      s.store.transaction(() => {
        s.store.deleteSite(site.id);
        audit({ action: 'site.delete', target: site.hostname, tenantId: tenant.id });
      });
      return { status: 204, body: null };
    },
  }),
];
