/** Health, metrics, the OpenAPI document, `info` and `whoami`. */
import { createHash, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import type { Services } from './services.js';
import { authorize, isTenantRole } from '../auth/policy.js';
import { scrape } from './metrics.js';
import { ErrorBody } from './schemas.js';

const digest = (text: string): Buffer => createHash('sha256').update(text).digest();

/** Whether `header` carries the configured scrape token (compared in constant time). */
function isScrapeToken(s: Services, header: string | undefined): boolean {
  if (!s.scrapeToken || typeof header !== 'string' || !header.startsWith('Bearer ')) return false;
  return timingSafeEqual(digest(header.slice('Bearer '.length).trim()), digest(s.scrapeToken));
}
import { defineRoute } from './route.js';

export const systemRoutes = [
  defineRoute({
    method: 'GET', url: '/healthz', tag: 'system', summary: 'Liveness: 200 while the daemon serves', auth: false,
    responses: { 200: z.object({ status: z.literal('ok') }) },
    handler: () => ({ body: { status: 'ok' } }),
  }),
  defineRoute({
    method: 'GET', url: '/metrics', tag: 'system', raw: true, responses: { 200: null, 401: ErrorBody, 403: ErrorBody },
    summary: "Prometheus metrics: a provider-admin's or metrics-reader's token (or the configured scrape token) reads every series, a tenant role's only its own tenant's",
    // Authenticated here, not by the route layer: the configured scrape token is no token of the store.
    auth: 'handler',
    handler: async ({ req, reply }, s) => {
      let tenantId: string | null = null;
      if (!isScrapeToken(s, req.headers.authorization)) {
        const p = s.auth.authenticate(req);
        authorize(p, 'metrics.read');
        tenantId = isTenantRole(p.role) ? p.tenantId : null;
      }
      const text = await scrape(s, tenantId);
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
