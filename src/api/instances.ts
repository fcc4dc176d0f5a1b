/** `/v1/tenants/:tenant/instances`: launch and drive instances at any level. */
import { z } from 'zod';
import { instanceFor, tenantFor } from './lookup.js';
import { presentInstance, presentOperation } from './present.js';
import { defineRoute } from './route.js';
import type { Services } from './services.js';
import { Applied, DEFAULT_LIMITS, ErrorBody, Instance, InstanceAction, InstanceActionBody, InstanceCreate, InstanceRedeploy, InstanceUpdate, Name, Operation as OperationSchema, WaitQuery, list } from './schemas.js';
import { ifMatchOf, withEtag } from './etag.js';

const tag = 'instances';
const TenantParams = z.object({ tenant: Name }).strict();
const Params = z.object({ tenant: Name, name: Name }).strict();
/** 202 while the work runs; 200 when `?wait` saw it finish. */
const Accepted = z.object({ operation: OperationSchema });
const Launched = z.object({ instance: Instance, operation: OperationSchema });

/** An answer naming an instance, with the instance as it is once its operation finished (launch, clone). */
export function refreshInstance(body: Record<string, unknown>, s: Services): Record<string, unknown> {
  const now = s.store.getInstanceById((body.instance as { id: string }).id);
  return now ? { ...body, instance: presentInstance(s, now) } : body;
}

export const instanceRoutes = [
  defineRoute({
    method: 'POST', url: '/v1/tenants/:tenant/instances', tag, summary: 'Launch an instance', params: TenantParams,
    query: WaitQuery, body: InstanceCreate, auditAs: 'instance.create', idempotent: true,
    responses: { 200: Launched, 202: Launched, 422: ErrorBody },
    operation: { refresh: refreshInstance },
    handler: ({ p, params, body, audit }, s) => {
      const tenant = tenantFor(s, p, params.tenant, 'instance.create');
      const { instance, operation } = s.instances.launch(p, tenant, {
        name: body.name, level: body.level, source: body.source ?? null, limits: { ...DEFAULT_LIMITS, ...body.limits },
        config: body.config ?? {}, desiredState: body.start ? 'running' : 'stopped',
      }, audit);
      return { status: 202, body: { instance: presentInstance(s, instance), operation: presentOperation(s, operation) } };
    },
  }),
  defineRoute({
    method: 'GET', url: '/v1/tenants/:tenant/instances', tag, summary: "List a tenant's instances", params: TenantParams,
    responses: { 200: list(Instance) },
    handler: ({ p, params }, s) => {
      const tenant = tenantFor(s, p, params.tenant, 'instance.list');
      return { body: { items: s.store.listInstances({ tenantId: tenant.id }).map((i) => presentInstance(s, i)) } };
    },
  }),
  defineRoute({
    method: 'GET', url: '/v1/tenants/:tenant/instances/:name', tag, summary: 'Show an instance', params: Params,
    responses: { 200: Instance, 404: ErrorBody },
    handler: ({ p, params, reply }, s) => ({ body: presentInstance(s, withEtag(reply, instanceFor(s, p, params.tenant, params.name, 'instance.read').instance)) }),
  }),
  defineRoute({
    method: 'PATCH', url: '/v1/tenants/:tenant/instances/:name', tag,
    summary: "Change an instance's limits and config: live where its level can, else from its next start (`applied` says which, per field). If-Match: its ETag, or 412",
    params: Params, body: InstanceUpdate, auditAs: 'instance.update',
    responses: { 200: z.object({ instance: Instance, applied: Applied }), 400: ErrorBody, 404: ErrorBody, 412: ErrorBody, 422: ErrorBody },
    handler: async ({ p, params, body, audit, req, reply }, s) => {
      const { tenant, instance } = instanceFor(s, p, params.tenant, params.name, 'instance.update');
      const r = await s.instances.change(tenant, instance, body, { ifMatch: ifMatchOf(req), audit });
      return { body: { instance: presentInstance(s, withEtag(reply, r.instance)), applied: r.applied } };
    },
  }),
  defineRoute({
    method: 'POST', url: '/v1/tenants/:tenant/instances/:name/:action', tag, summary: 'Start, stop, pause, resume or restart',
    params: Params.extend({ action: InstanceAction }).strict(), query: WaitQuery, body: InstanceActionBody.optional(),
    auditAs: 'instance.action', responses: { 200: Accepted, 202: Accepted, 409: ErrorBody }, operation: {},
    handler: ({ p, params, body, audit }, s) => {
      const { tenant, instance } = instanceFor(s, p, params.tenant, params.name, 'instance.action');
      const graceMs = body?.force ? 0 : body?.graceSeconds !== undefined ? body.graceSeconds * 1000 : undefined;
      const op = s.instances.act(p, tenant, instance, params.action, graceMs === undefined ? {} : { graceMs }, audit);
      return { status: 202, body: { operation: presentOperation(s, op) } };
    },
  }),
  defineRoute({
    method: 'POST', url: '/v1/tenants/:tenant/instances/:name/redeploy', tag,
    summary: 'New code for an instance without dropping requests in flight (env level)', params: Params, query: WaitQuery,
    body: InstanceRedeploy, auditAs: 'instance.redeploy', responses: { 200: Accepted, 202: Accepted, 422: ErrorBody }, operation: {},
    handler: ({ p, params, body, audit }, s) => {
      const { tenant, instance } = instanceFor(s, p, params.tenant, params.name, 'instance.deploy');
      const next = body.source !== undefined ? { source: body.source } : { code: body.code! };
      return { status: 202, body: { operation: presentOperation(s, s.instances.redeploy(p, tenant, instance, next, audit)) } };
    },
  }),
  defineRoute({
    method: 'DELETE', url: '/v1/tenants/:tenant/instances/:name', tag, summary: 'Delete an instance (stops it first)',
    params: Params, query: WaitQuery, auditAs: 'instance.delete', responses: { 200: Accepted, 202: Accepted, 404: ErrorBody },
    operation: {},
    handler: ({ p, params, audit }, s) => {
      const { tenant, instance } = instanceFor(s, p, params.tenant, params.name, 'instance.delete');
      return { status: 202, body: { operation: presentOperation(s, s.instances.remove(p, tenant, instance, audit)) } };
    },
  }),
];
