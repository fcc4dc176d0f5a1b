/** `/v1/operations`: long work, polled or waited on. */
import { z } from 'zod';
import { authorize, isTenantRole } from '../auth/policy.js';
import { notFound } from '../core/errors.js';
import { OPERATION_STATUSES } from '../store/types.js';
import { presentOperation } from './present.js';
import { defineRoute } from './route.js';
import { ErrorBody, Operation, list } from './schemas.js';

const tag = 'operations';

export const operationRoutes = [
  defineRoute({
    method: 'GET', url: '/v1/operations', tag, summary: 'Recent operations the caller can see',
    query: z.object({ status: z.enum(OPERATION_STATUSES).optional(), limit: z.coerce.number().int().min(1).max(1000).default(100) }).strict(),
    responses: { 200: list(Operation) },
    handler: ({ p, query }, s) => {
      authorize(p, 'operation.read');
      const scope = isTenantRole(p.role) ? { tenantId: p.tenantId! } : {};
      return { body: { items: s.store.listOperations({ ...scope, ...(query.status ? { status: query.status } : {}), limit: query.limit }).map((o) => presentOperation(s, o)) } };
    },
  }),
  defineRoute({
    method: 'GET', url: '/v1/operations/:id', tag, summary: 'Show an operation; ?wait=SECONDS waits for it to finish',
    params: z.object({ id: z.string().min(1).max(64) }).strict(),
    query: z.object({ wait: z.coerce.number().min(0).max(3600).optional() }).strict(),
    responses: { 200: z.object({ operation: Operation }), 202: z.object({ operation: Operation }), 404: ErrorBody },
    operation: {},
    handler: ({ p, params }, s) => {
      authorize(p, 'operation.read');
      const op = s.store.getOperation(params.id);
      if (!op || (isTenantRole(p.role) && op.tenantId !== p.tenantId)) throw notFound('operation', params.id);
      return { status: 200, body: { operation: presentOperation(s, op) } };
    },
  }),
];
