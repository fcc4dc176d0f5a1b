/**
 * `/v1/tenants/:tenant/domains`: the domains a tenant holds. A held domain is
 * the name and every name under it: only its holder adds sites there, exact or
 * wildcard (`control/front-door/hostnames.ts` has the rules). The provider
 * assigns them; a tenant lists its own.
 */
import { z } from 'zod';
import { checkDomainAssignment } from '../control/front-door/hostnames.js';
import { conflict, notFound } from '../core/errors.js';
import { tenantFor } from './lookup.js';
import { presentDomain } from './present.js';
import { defineRoute } from './route.js';
import { Domain, DomainCreate, DomainName, ErrorBody, Name, list } from './schemas.js';

const tag = 'domains';
const TenantParams = z.object({ tenant: Name }).strict();
const Params = z.object({ tenant: Name, name: DomainName }).strict();

export const domainRoutes = [
  defineRoute({
    method: 'POST', url: '/v1/tenants/:tenant/domains', tag, summary: 'Assign a domain to a tenant (provider)', params: TenantParams, body: DomainCreate,
    idempotent: true, auditAs: 'domain.create', responses: { 201: Domain, 409: ErrorBody },
    handler: ({ p, params, body, audit }, s) => {
      const tenant = tenantFor(s, p, params.tenant, 'domain.create');
      return s.store.transaction(() => {
        const existing = s.store.getDomain(body.name);
        if (existing?.tenantId === tenant.id) throw conflict(`'${tenant.name}' already holds the domain '${body.name}'`, { domain: body.name });
        checkDomainAssignment(tenant.id, body.name, s.store.listDomains(), s.store.listSites());
        const domain = s.store.createDomain({ tenantId: tenant.id, name: body.name, source: 'assigned' });
        audit({ action: 'domain.create', target: domain.name, tenantId: tenant.id, details: { source: domain.source } });
        return { status: 201, body: presentDomain(s, domain) };
      });
    },
  }),
  defineRoute({
    method: 'GET', url: '/v1/tenants/:tenant/domains', tag, summary: 'List the domains a tenant holds', params: TenantParams,
    responses: { 200: list(Domain) },
    handler: ({ p, params }, s) => {
      const tenant = tenantFor(s, p, params.tenant, 'domain.list');
      return { body: { items: s.store.listDomains({ tenantId: tenant.id }).map((d) => presentDomain(s, d)) } };
    },
  }),
  defineRoute({
    method: 'GET', url: '/v1/tenants/:tenant/domains/:name', tag, summary: 'Show a domain a tenant holds', params: Params,
    responses: { 200: Domain, 404: ErrorBody },
    handler: ({ p, params }, s) => {
      const tenant = tenantFor(s, p, params.tenant, 'domain.read');
      const domain = s.store.getDomain(params.name);
      if (!domain || domain.tenantId !== tenant.id) throw notFound('domain', params.name);
      return { body: presentDomain(s, domain) };
    },
  }),
  defineRoute({
    method: 'DELETE', url: '/v1/tenants/:tenant/domains/:name', tag, summary: "Take a domain back (the tenant's sites in it stay)", params: Params,
    auditAs: 'domain.delete', responses: { 204: null, 404: ErrorBody },
    handler: ({ p, params, audit }, s) => {
      const tenant = tenantFor(s, p, params.tenant, 'domain.delete');
      const domain = s.store.getDomain(params.name);
      if (!domain || domain.tenantId !== tenant.id) throw notFound('domain', params.name);
      s.store.transaction(() => {
        s.store.deleteDomain(domain.id);
        audit({ action: 'domain.delete', target: domain.name, tenantId: tenant.id });
      });
      return { status: 204, body: null };
    },
  }),
];
