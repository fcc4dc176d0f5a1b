/**
 * `GET /v1/events`: a server-sent event stream. Each caller sees only events of
 * what it may see: providers everything, auditors audit and alert events, tenant
 * roles their own tenant's events.
 */
import { z } from 'zod';
import { authorize, isTenantRole, type Principal } from '../auth/policy.js';
import { EVENT_CATEGORIES, type StrataEvent } from '../core/events.js';
import { defineRoute } from './route.js';

const visible = (p: Principal, e: StrataEvent): boolean => {
  if (p.role === 'provider-admin') return true;
  if (p.role === 'auditor') return e.category === 'audit' || e.category === 'alert';
  return isTenantRole(p.role) && e.tenantId !== null && e.tenantId === p.tenantId;
};

const HEARTBEAT_MS = 15_000;

export const eventRoutes = [
  defineRoute({
    method: 'GET', url: '/v1/events', tag: 'events', summary: 'Server-sent events: lifecycle, operations, audit, alerts', raw: true,
    query: z.object({ category: z.string().optional() }).strict().transform((q, ctx) => {
      const cats = q.category ? q.category.split(',') : [...EVENT_CATEGORIES];
      const bad = cats.find((c) => !(EVENT_CATEGORIES as readonly string[]).includes(c));
      if (bad) {
        ctx.addIssue({ code: 'custom', path: ['category'], message: `one or more of ${EVENT_CATEGORIES.join(', ')}` });
        return z.NEVER;
      }
      return { categories: new Set(cats) };
    }),
    responses: { 200: null },
    handler: ({ p, query, req, reply }, s) => {
      authorize(p, 'event.read');
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive', 'x-accel-buffering': 'no' });
      res.write(': strata events\n\n');
      const unsubscribe = s.events.subscribe((e) => {
        if (!query.categories.has(e.category) || !visible(p, e)) return;
        res.write(`id: ${e.seq}\nevent: ${e.type}\ndata: ${JSON.stringify({ ...e, tenantId: undefined })}\n\n`);
      });
      const heartbeat = setInterval(() => res.write(': ping\n\n'), HEARTBEAT_MS);
      heartbeat.unref();
      req.raw.on('close', () => {
        clearInterval(heartbeat);
        unsubscribe();
      });
    },
  }),
];
