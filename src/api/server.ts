/**
 * The HTTP API: fastify with every route declared through `defineRoute`. Errors
 * leave as `{"error": {"code", "message", "details"}}`; client mistakes are 4xx,
 * never 500. Authenticated mutating calls that fail before their handler writes
 * an audit entry are audited here, as failures.
 */
import Fastify, { type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyReply } from 'fastify';
import { Counter, Histogram } from 'prom-client';
import { StrataError, isStrataError, type ErrorCode } from '../core/errors.js';
import { adminRoutes } from './admin.js';
import { alertRoutes } from './alerts.js';
import { applyRoutes } from './apply.js';
import { auditRoutes } from './audit.js';
import { certificateRoutes } from './certificates.js';
import { domainRoutes } from './domains.js';
import { eventRoutes } from './events.js';
import { fileRoutes } from './files.js';
import { MAX_COPY_BYTES } from '../control/files/tree.js';
import { instanceRoutes } from './instances.js';
import { moveRoutes } from './move.js';
import { listenerRoutes } from './listeners.js';
import { operationRoutes } from './operations.js';
import { outputRoutes } from './outputs.js';
import { defineRoute, openapiDocument, registerRoutes, type AnyRoute } from './route.js';
import type { Services } from './services.js';
import { siteRoutes } from './sites.js';
import { snapshotRoutes } from './snapshots.js';
import { statsRoutes } from './stats.js';
import { imageRoutes } from './images.js';
import { routeUpgrades, streamRoutes } from './streams.js';
import { systemRoutes } from './system.js';
import { tenantRoutes } from './tenants.js';
import { tokenRoutes } from './tokens.js';
import { userRoutes } from './users.js';

export const BODY_LIMIT = 1024 * 1024;

const MUTATING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

export const API_ROUTES: readonly AnyRoute[] = [
  ...systemRoutes,
  ...tenantRoutes,
  ...userRoutes,
  ...tokenRoutes,
  ...instanceRoutes,
  ...moveRoutes,
  ...streamRoutes,
  ...statsRoutes,
  ...fileRoutes,
  ...snapshotRoutes,
  ...imageRoutes,
  ...siteRoutes,
  ...domainRoutes,
  ...certificateRoutes,
  ...listenerRoutes,
  ...applyRoutes,
  ...operationRoutes,
  ...auditRoutes,
  ...alertRoutes,
  ...outputRoutes,
  ...eventRoutes,
  ...adminRoutes,
];

/** Fastify's own errors (body parsing, limits, bad URLs) → our codes. */
function fromFastifyError(e: FastifyError): StrataError {
  const status = e.statusCode ?? 500;
  const byStatus: Record<number, ErrorCode> = {
    413: 'STRATA_ERR_PAYLOAD_TOO_LARGE',
    415: 'STRATA_ERR_UNSUPPORTED_MEDIA_TYPE',
    404: 'STRATA_ERR_ROUTE_NOT_FOUND',
    405: 'STRATA_ERR_METHOD_NOT_ALLOWED',
  };
  if (byStatus[status]) return new StrataError(byStatus[status], e.message);
  if (status >= 400 && status < 500) {
    const json = e.code?.startsWith('FST_ERR_CTP') || e instanceof SyntaxError;
    return new StrataError(json ? 'STRATA_ERR_BAD_JSON' : 'STRATA_ERR_VALIDATION', e.message);
  }
  return new StrataError('STRATA_ERR_INTERNAL', 'internal error');
}

export async function buildApi(s: Services, opts: { logger?: FastifyBaseLogger } = {}): Promise<FastifyInstance> {
  const app = Fastify({
    ...(opts.logger ? { loggerInstance: opts.logger } : { logger: false }),
    bodyLimit: BODY_LIMIT,
    forceCloseConnections: true,
    return503OnClosing: true,
    routerOptions: { maxParamLength: 300 },
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    // Errors raised before routing (malformed URLs, bad content types) get our error shape too.
    frameworkErrors: (err, _req, reply: FastifyReply) => {
      const e = fromFastifyError(err);
      void reply.code(e.status).send(e.toJSON());
    },
  });

  // Binary bodies (tar archives for file copies) up to their own limit, as Buffers; other routes refuse them.
  for (const type of new Set(API_ROUTES.flatMap((r) => (r.binaryBody ? [r.binaryBody] : [])))) {
    app.addContentTypeParser(type, { parseAs: 'buffer', bodyLimit: MAX_COPY_BYTES }, (_req, body, done) => done(null, body));
  }

  const requests = new Counter({
    name: 'strata_api_requests_total', help: 'API requests by route, method and status',
    labelNames: ['method', 'route', 'status'] as const, registers: [s.metrics],
  });
  const latency = new Histogram({
    name: 'strata_api_request_duration_seconds', help: 'API request latency', labelNames: ['method', 'route'] as const,
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5], registers: [s.metrics],
  });

  app.setErrorHandler((err: FastifyError | StrataError, req, reply) => {
    const e = isStrataError(err) ? err : fromFastifyError(err as FastifyError);
    if (e.status >= 500) req.log.error({ err }, 'request failed');
    void reply.code(e.status).send(e.toJSON());
  });
  app.setNotFoundHandler((req, reply) => {
    const e = new StrataError('STRATA_ERR_ROUTE_NOT_FOUND', `no route ${req.method} ${req.url.split('?')[0]}`);
    void reply.code(404).send(e.toJSON());
  });

  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unmatched';
    requests.inc({ method: req.method, route, status: String(reply.statusCode) });
    latency.observe({ method: req.method, route }, reply.elapsedTime / 1000);
    const p = req.strataPrincipal;
    // Authentication failures feed the guard (brute force), after the answer went out.
    if (reply.statusCode === 401) s.guard.authFailed(req.ip, route);
    if (reply.statusCode < 400) {
      for (const e of req.strataAuditEvents ?? []) {
        s.events.publish('audit', 'audit.appended', e.tenantId, { action: e.action, target: e.target, actor: p?.name ?? null, result: 'ok' });
      }
    }
    if (p && MUTATING.has(req.method) && !req.strataAudited && reply.statusCode >= 400) {
      const def = API_ROUTES.find((r) => r.url === route && r.method === req.method);
      s.audit.append({
        actor: { userId: p.userId, name: p.name, role: p.role },
        tenantId: p.tenantId,
        action: def?.auditAs ?? `${req.method} ${route}`,
        target: req.url.split('?')[0]!.slice(0, 300),
        result: 'error',
        status: reply.statusCode,
        ...(p.reason ? { reason: p.reason } : {}),
      });
    }
  });

  const openapi = defineRoute({
    method: 'GET', url: '/v1/openapi.json', tag: 'system', summary: 'This document', auth: false, responses: { 200: null },
    handler: () => ({ body: document }),
  });
  const routes = [...API_ROUTES, openapi];
  const document = openapiDocument(routes, s.version);
  registerRoutes(app, routes, s);
  routeUpgrades(app, s);
  await app.ready();
  return app;
}
