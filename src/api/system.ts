/** Health, metrics, the OpenAPI document, `info` and `whoami`. */
import { z } from 'zod';
import { authorize } from '../auth/policy.js';
import { defineRoute } from './route.js';

export const systemRoutes = [
  defineRoute({
    method: 'GET', url: '/healthz', tag: 'system', summary: 'Liveness: 200 while the daemon serves', auth: false,
    responses: { 200: z.object({ status: z.literal('ok') }) },
    handler: () => ({ body: { status: 'ok' } }),
  }),
  defineRoute({
    method: 'GET', url: '/metrics', tag: 'system', summary: 'Prometheus metrics', auth: false, raw: true, responses: { 200: null },
    handler: async ({ reply }, s) => {
      const own = await s.metrics.metrics();
      const gateway = s.gateway ? await (await s.gateway.metrics()).metrics() : '';
      reply.header('content-type', s.metrics.contentType).send(gateway ? `${own}\n${gateway}` : own);
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
