/**
 * `/v1/audit`: the tamper-evident log. Providers and auditors read all of it;
 * tenant roles read, prove and export only their own tenant's entries — which
 * include what a provider-admin did inside their tenant, and why.
 */
import { z } from 'zod';
import { authorize, isTenantRole, type Principal } from '../auth/policy.js';
import { StrataError, notFound } from '../core/errors.js';
import { tenantFor } from './lookup.js';
import { defineRoute } from './route.js';
import type { Services } from './services.js';
import { ErrorBody, Name } from './schemas.js';

const tag = 'audit';
const Index = z.coerce.number().int().min(0);

/** Tenant id the caller is limited to, or undefined for all. */
function scope(s: Services, p: Principal, tenant?: string): string | undefined {
  authorize(p, 'audit.read');
  if (isTenantRole(p.role)) {
    if (tenant) tenantFor(s, p, tenant, 'audit.read');
    return p.tenantId!;
  }
  return tenant ? tenantFor(s, p, tenant, 'audit.read').id : undefined;
}

export const auditRoutes = [
  defineRoute({
    method: 'GET', url: '/v1/audit/head', tag, summary: 'The latest signed tree head and the public key',
    responses: { 200: z.object({ head: z.unknown(), publicKey: z.string(), size: z.number() }) },
    handler: ({ p }, s) => {
      authorize(p, 'audit.read');
      return { body: { head: s.audit.latestHead() ?? s.audit.signHead(), publicKey: s.audit.publicKeyPem(), size: s.audit.size() } };
    },
  }),
  defineRoute({
    method: 'GET', url: '/v1/audit/entries', tag, summary: 'Audit entries (a tenant sees its own)',
    query: z.object({ from: Index.default(0), limit: z.coerce.number().int().min(1).max(10_000).default(100), tenant: Name.optional() }).strict(),
    responses: { 200: z.object({ items: z.array(z.unknown()) }) },
    handler: ({ p, query }, s) => {
      const tenantId = scope(s, p, query.tenant);
      return { body: { items: s.audit.entries({ from: query.from, limit: query.limit, ...(tenantId ? { tenantId } : {}) }) } };
    },
  }),
  defineRoute({
    method: 'GET', url: '/v1/audit/proof/inclusion', tag, summary: 'Inclusion proof of entry `index` in the tree of `size`',
    query: z.object({ index: Index, size: Index.optional() }).strict(), responses: { 200: z.unknown(), 404: ErrorBody },
    handler: ({ p, query }, s) => {
      const tenantId = scope(s, p);
      const size = query.size ?? s.audit.size();
      if (query.index >= size || size > s.audit.size()) throw notFound('audit entry', String(query.index));
      if (tenantId) {
        const [entry] = s.audit.entries({ from: query.index, limit: 1 });
        if (!entry || entry.entry.tenantId !== tenantId) throw notFound('audit entry', String(query.index));
      }
      return { body: s.audit.inclusionProof(query.index, size) };
    },
  }),
  defineRoute({
    method: 'GET', url: '/v1/audit/proof/consistency', tag, summary: 'Consistency proof between two tree sizes',
    query: z.object({ from: Index, to: Index.optional() }).strict(), responses: { 200: z.unknown(), 400: ErrorBody },
    handler: ({ p, query }, s) => {
      authorize(p, 'audit.read');
      const to = query.to ?? s.audit.size();
      if (query.from < 1 || query.from > to || to > s.audit.size()) {
        throw new StrataError('STRATA_ERR_VALIDATION', `query.from: need 1 <= from <= to <= ${s.audit.size()}`, { issues: [{ field: 'query.from', message: 'out of range' }] });
      }
      return { body: s.audit.consistencyProof(query.from, to) };
    },
  }),
  defineRoute({
    method: 'GET', url: '/v1/audit/export', tag, summary: "A tenant's entries, each with an inclusion proof in the signed head",
    query: z.object({ tenant: Name.optional() }).strict(), responses: { 200: z.unknown(), 400: ErrorBody },
    handler: ({ p, query }, s) => {
      const tenantId = scope(s, p, query.tenant);
      if (!tenantId) throw new StrataError('STRATA_ERR_VALIDATION', 'query.tenant: required for provider roles', { issues: [{ field: 'query.tenant', message: 'required' }] });
      s.audit.signHead();
      return { body: s.audit.exportTenant(tenantId) };
    },
  }),
  defineRoute({
    method: 'GET', url: '/v1/audit/verify', tag, summary: 'Verify the whole log on the server', responses: { 200: z.unknown() },
    handler: async ({ p }, s) => {
      authorize(p, 'audit.read');
      if (isTenantRole(p.role)) throw new StrataError('STRATA_ERR_FORBIDDEN', 'tenants verify their export instead (strata audit export --verify)');
      return { body: await s.audit.verifyInBackground() };
    },
  }),
];
