/**
 * Moving an instance between daemons (`src/control/move.ts`, `receive.ts`):
 * `POST …/instances/:name/move` on the daemon that runs it (an operation), and the
 * two calls that daemon makes on the target, `…/receive` and `…/receive/finish`.
 * All are the provider's: each daemon has its own tenants' quotas and data.
 */
import { z } from 'zod';
import { authorize } from '../auth/policy.js';
import { StrataError, notFound } from '../core/errors.js';
import { instanceFor, tenantFor, tenantName } from './lookup.js';
import { presentInstance, presentOperation } from './present.js';
import { defineRoute } from './route.js';
import { ErrorBody, Hostname, Instance, Level, Limits, Name, Operation as OperationSchema, WaitQuery, list } from './schemas.js';
import type { Services } from './services.js';

const tag = 'instances';
const Params = z.object({ tenant: Name, name: Name }).strict();

export const MoveBody = z.object({
  /** The receiving daemon's API and a provider-admin token of it (used for this move only, never stored). */
  target: z.object({ url: z.url({ protocol: /^https?$/ }), token: z.string().min(1).max(512) }).strict(),
  /** Its name there; default the same. */
  name: Name.optional(),
}).strict();

export const ReceiveBody = z.object({
  level: Level,
  source: z.string().min(1).max(4096).nullable(),
  limits: Limits,
  config: z.record(z.string(), z.unknown()),
  sites: z.array(z.object({ hostname: Hostname, port: z.number().int().min(1).max(65535) }).strict()).max(1000),
  from: z.string().min(1).max(600),
}).strict();

const FinishBody = z.object({ ok: z.boolean() }).strict();
const Address = z.object({ host: z.string(), port: z.number() });
const Accepted = z.object({ operation: OperationSchema });
const Receiving = z.object({ instance: Instance, socket: z.string() });
const Finished = z.object({ instance: Instance.nullable(), gateway: Address.nullable(), info: z.record(z.string(), z.unknown()) });

const Forward = z.object({
  hostname: z.string(), tenant: z.string(), to: Address, target: z.string(), instance: z.string(), movedAt: z.string(),
});

function moves(s: Services): NonNullable<Services['moves']> {
  if (!s.moves) throw new StrataError('STRATA_ERR_UNAVAILABLE', 'this daemon does not move instances');
  return s.moves;
}

export const moveRoutes = [
  defineRoute({
    method: 'POST', url: '/v1/tenants/:tenant/instances/:name/move', tag,
    summary: 'Move a running instance live to another Strata daemon on this machine (its sites follow; this gateway forwards them there)',
    params: Params, query: WaitQuery, body: MoveBody, auditAs: 'instance.move', idempotent: true, operation: {},
    responses: { 200: Accepted, 202: Accepted, 409: ErrorBody, 422: ErrorBody },
    handler: ({ p, params, body, audit }, s) => {
      const { tenant, instance } = instanceFor(s, p, params.tenant, params.name, 'instance.move');
      const op = moves(s).mover.move(p, tenant, instance, { ...body.target, ...(body.name ? { name: body.name } : {}) }, audit);
      return { status: 202, body: { operation: presentOperation(s, op) } };
    },
  }),
  defineRoute({
    method: 'POST', url: '/v1/tenants/:tenant/instances/:name/receive', tag,
    summary: 'Receive a moving instance (called by the sending daemon): records it and answers the socket to stream into',
    params: Params, body: ReceiveBody, auditAs: 'instance.move', responses: { 201: Receiving, 409: ErrorBody, 422: ErrorBody },
    handler: async ({ p, params, body, audit }, s) => {
      const tenant = tenantFor(s, p, params.tenant, 'instance.receive');
      const { instance, answer } = await moves(s).receiver.begin(p, tenant, params.name, body, audit);
      return { status: 201, body: { instance: presentInstance(s, instance), socket: answer.socket } };
    },
  }),
  defineRoute({
    method: 'POST', url: '/v1/tenants/:tenant/instances/:name/receive/finish', tag,
    summary: "The sender's word on a receive: ok (the guest runs here from now on) or not (it is undone)",
    params: Params, body: FinishBody, auditAs: 'instance.move', responses: { 200: Finished, 404: ErrorBody },
    handler: async ({ p, params, body }, s) => {
      const tenant = tenantFor(s, p, params.tenant, 'instance.receive');
      const { instance, answer } = await moves(s).receiver.finish(p, tenant, params.name, body.ok);
      return { body: { instance: instance ? presentInstance(s, instance) : null, ...answer } };
    },
  }),
  defineRoute({
    method: 'GET', url: '/v1/forwards', tag: 'sites', summary: "Sites that moved away with their instance, and where this gateway forwards them",
    responses: { 200: list(Forward) },
    handler: ({ p }, s) => {
      authorize(p, 'forward.list');
      const items = moves(s).forwards.list().map(({ tenantId, ...f }) => ({ ...f, tenant: tenantName(s, tenantId) ?? tenantId }));
      return { body: { items } };
    },
  }),
  defineRoute({
    method: 'DELETE', url: '/v1/forwards/:hostname', tag: 'sites', summary: 'Stop forwarding a moved site (once DNS points at its new daemon)',
    params: z.object({ hostname: Hostname }).strict(), auditAs: 'site.unforward', responses: { 204: null, 404: ErrorBody },
    handler: async ({ p, params, audit }, s) => {
      authorize(p, 'forward.delete');
      const { forwards, flushRoutes } = moves(s);
      const gone = forwards.list().find((f) => f.hostname === params.hostname);
      if (!gone) throw notFound('forward', params.hostname);
      forwards.remove(params.hostname);
      audit({ action: 'site.unforward', target: params.hostname, tenantId: gone.tenantId, details: { to: gone.to, target: gone.target } });
      await flushRoutes();
      return { status: 204, body: null };
    },
  }),
];
