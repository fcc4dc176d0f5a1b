/** Health, metrics, the OpenAPI document, `info` and `whoami`. */
import { z } from 'zod';
import { authorize, isTenantRole } from '../auth/policy.js';
import { scrape } from './metrics.js';
import { defineRoute } from './route.js';

export const systemRoutes = [
  defineRoute({
    method: 'GET', url: '/healthz', tag: 'system', summary: 'Liveness: 200 while the daemon serves', auth: false,
    responses: { 200: z.object({ status: z.literal('ok') }) },
    handler: () => ({ body: { status: 'ok' } }),
  }),
  defineRoute({
    method: 'GET', url: '/metrics', tag: 'system', raw: true, responses: { 200: null },
    summary: "Prometheus metrics: a provider-admin's or metrics-reader's token reads every series, a tenant role's only its own tenant's",
    handler: async ({ p, reply }, s) => {
      authorize(p, 'metrics.read');
      const text = await scrape(s, isTenantRole(p.role) ? p.tenantId : null);
      reply.header('content-type', s.metrics.contentType).send(text);
    },
  }),
  defineRoute({
    method: 'GET', url: '/v1/whoami', tag: 'system', summary: 'The caller: user, role, tenant',
    responses: { 200: z.object({ user: z.string(), role: z.string(), tenant: z.string().nullable(), token: z.string() }) },
    handler: ({ p }, s) => ({
      body: { user: p.name, role: p.role, tenant: p.tenantId ? (s.store.getTenant(p.tenantId)?.name ?? null) : null, token: p.tokenId },
    }),
  }),
  defineRoute({
    method: 'GET', url: '/v1/info', tag: 'system', summary: 'Version, levels and their drivers, audit size',
    responses: { 200: z.unknown() },
    handler: ({ p }, s) => {
      authorize(p, 'info.read');
      return {
        body: {
          version: s.version,
          startedAt: s.startedAt.toISOString(),
          levels: s.registry.describe(),
          audit: { size: s.audit.size() },
        },
      };
    },
  }),
];
