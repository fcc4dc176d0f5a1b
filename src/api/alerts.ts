/** `/v1/alerts`: what the guard raised. Providers and auditors see all; a tenant sees its own. */
import { z } from 'zod';
import { authorize, isTenantRole } from '../auth/policy.js';
import { PRIORITIES } from '../core/guard-event.js';
import { tenantFor } from './lookup.js';
import { defineRoute } from './route.js';
import { Name } from './schemas.js';

export const alertRoutes = [
  defineRoute({
    method: 'GET', url: '/v1/alerts', tag: 'alerts', summary: 'Guard alerts, newest first (filter by tenant, priority and time)',
    query: z.object({
      tenant: Name.optional(),
      priority: z.enum(PRIORITIES).optional(),
      since: z.iso.datetime().optional(),
      limit: z.coerce.number().int().min(1).max(10_000).default(100),
    }).strict(),
    responses: { 200: z.object({ items: z.array(z.unknown()) }) },
    handler: ({ p, query }, s) => {
      authorize(p, 'alert.read');
      const tenantId = isTenantRole(p.role) ? p.tenantId! : query.tenant ? tenantFor(s, p, query.tenant, 'alert.read').id : undefined;
      if (isTenantRole(p.role) && query.tenant) tenantFor(s, p, query.tenant, 'alert.read');
      const items = s.guard.alerts({
        ...(tenantId ? { tenantId } : {}), ...(query.priority ? { priority: query.priority } : {}),
        ...(query.since ? { since: query.since } : {}), limit: query.limit,
      });
      return { body: { items } };
    },
  }),
];
