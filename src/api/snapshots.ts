/**
 * Snapshots of an instance: create, list, restore, clone into a new instance, delete.
 *
 * The guard's own snapshots (known-good, forensic) are the system's: a tenant
 * never sees them — not listed, and by name a 404 like any other — while the
 * provider lists them with `?system=true` and can restore or clone from them.
 */
import { z } from 'zod';
import { isTenantRole, type Principal } from '../auth/policy.js';
import { StrataError, notFound } from '../core/errors.js';
import type { Instance as StoredInstance, Snapshot as StoredSnapshot } from '../store/types.js';
import type { Services } from './services.js';
import { refreshInstance } from './instances.js';
import { instanceFor, tenantFor } from './lookup.js';
import { presentInstance, presentOperation, presentSnapshot } from './present.js';
import { defineRoute } from './route.js';
import { ErrorBody, Instance, Name, Operation, Snapshot, SnapshotCreate, WaitQuery, list } from './schemas.js';

const tag = 'snapshots';
const InstanceParams = z.object({ tenant: Name, name: Name }).strict();
const Params = InstanceParams.extend({ snapshot: Name }).strict();
const Taken = z.object({ snapshot: Snapshot, operation: Operation });
const Accepted = z.object({ operation: Operation });
const CloneBody = z.object({
  /** The new instance's name. */
  name: Name,
  /** Start once cloned (default true). */
  start: z.boolean().default(true),
}).strict();
const Cloned = z.object({ instance: Instance, operation: Operation });
const ListQuery = z.object({
  /** Provider roles: `true` lists the system's (the guard's) snapshots instead of the tenant's. */
  system: z.enum(['true', 'false']).transform((v) => v === 'true').optional(),
}).strict();

/** Only provider roles may ask for the system's snapshots. */
function systemFilter(p: Principal, system: boolean | undefined): boolean {
  if (system && isTenantRole(p.role)) throw new StrataError('STRATA_ERR_FORBIDDEN', 'only provider roles list system snapshots');
  return system ?? false;
}

/** A snapshot of `instance` by name, as the caller may see it: a system snapshot is not found for a tenant role. */
function snapshotFor(s: Services, p: Principal, instance: StoredInstance, tenantName: string, name: string): StoredSnapshot {
  const snapshot = s.store.getSnapshot(instance.id, name);
  if (!snapshot || (snapshot.system && isTenantRole(p.role))) throw notFound('snapshot', `${tenantName}/${instance.name}@${name}`);
  return snapshot;
}

export const snapshotRoutes = [
  defineRoute({
    method: 'POST', url: '/v1/tenants/:tenant/instances/:name/snapshots', tag, summary: 'Snapshot an instance',
    params: InstanceParams, query: WaitQuery, body: SnapshotCreate, auditAs: 'snapshot.create', idempotent: true,
    responses: { 200: Taken, 202: Taken, 409: ErrorBody },
    operation: {
      refresh: (body, s) => {
        const shown = body.snapshot as { id: string };
        const now = s.store.getSnapshotById(shown.id);
        return now ? { ...body, snapshot: presentSnapshot(s, now) } : body;
      },
    },
    handler: ({ p, params, body, audit }, s) => {
      const { tenant, instance } = instanceFor(s, p, params.tenant, params.name, 'snapshot.create');
      const { snapshot, operation } = s.instances.snapshot(p, tenant, instance, body.name, audit);
      return { status: 202, body: { snapshot: presentSnapshot(s, snapshot), operation: presentOperation(s, operation) } };
    },
  }),
  defineRoute({
    method: 'GET', url: '/v1/tenants/:tenant/instances/:name/snapshots', tag, summary: "List an instance's snapshots",
    params: InstanceParams, query: ListQuery, responses: { 200: list(Snapshot), 403: ErrorBody },
    handler: ({ p, params, query }, s) => {
      const { instance } = instanceFor(s, p, params.tenant, params.name, 'snapshot.list');
      const system = systemFilter(p, query.system);
      return { body: { items: s.store.listSnapshots({ instanceId: instance.id, system }).map((x) => presentSnapshot(s, x)) } };
    },
  }),
  defineRoute({
    method: 'GET', url: '/v1/tenants/:tenant/snapshots', tag, summary: "List all of a tenant's snapshots",
    params: z.object({ tenant: Name }).strict(), query: ListQuery, responses: { 200: list(Snapshot), 403: ErrorBody },
    handler: ({ p, params, query }, s) => {
      const tenant = tenantFor(s, p, params.tenant, 'snapshot.list');
      const system = systemFilter(p, query.system);
      return { body: { items: s.store.listSnapshots({ tenantId: tenant.id, system }).map((x) => presentSnapshot(s, x)) } };
    },
  }),
  defineRoute({
    method: 'POST', url: '/v1/tenants/:tenant/instances/:name/snapshots/:snapshot/restore', tag,
    summary: 'Restore a stopped instance from a snapshot', params: Params, query: WaitQuery, auditAs: 'snapshot.restore',
    responses: { 200: Accepted, 202: Accepted, 409: ErrorBody }, operation: {},
    handler: ({ p, params, audit }, s) => {
      const { tenant, instance } = instanceFor(s, p, params.tenant, params.name, 'snapshot.restore');
      const snapshot = snapshotFor(s, p, instance, params.tenant, params.snapshot);
      return { status: 202, body: { operation: presentOperation(s, s.instances.restore(p, tenant, instance, snapshot, audit)) } };
    },
  }),
  defineRoute({
    method: 'POST', url: '/v1/tenants/:tenant/instances/:name/snapshots/:snapshot/clone', tag,
    summary: 'A new instance from a snapshot (same level, image, limits and config; fresh address and hostname)',
    params: Params, query: WaitQuery, body: CloneBody, auditAs: 'instance.clone', idempotent: true,
    responses: { 200: Cloned, 202: Cloned, 404: ErrorBody, 409: ErrorBody, 422: ErrorBody },
    operation: { refresh: refreshInstance },
    handler: ({ p, params, body, audit }, s) => {
      const { tenant, instance } = instanceFor(s, p, params.tenant, params.name, 'instance.clone');
      const snapshot = snapshotFor(s, p, instance, params.tenant, params.snapshot);
      const { instance: clone, operation } = s.instances.clone(p, tenant, instance, snapshot, { name: body.name, start: body.start }, audit);
      return { status: 202, body: { instance: presentInstance(s, clone), operation: presentOperation(s, operation) } };
    },
  }),
  defineRoute({
    method: 'DELETE', url: '/v1/tenants/:tenant/instances/:name/snapshots/:snapshot', tag, summary: 'Delete a snapshot',
    params: Params, auditAs: 'snapshot.delete', responses: { 204: null, 404: ErrorBody },
    handler: ({ p, params, audit }, s) => {
      const { tenant, instance } = instanceFor(s, p, params.tenant, params.name, 'snapshot.delete');
      const snapshot = snapshotFor(s, p, instance, params.tenant, params.snapshot);
      s.instances.deleteSnapshot(tenant, instance, snapshot, audit);
      return { status: 204, body: null };
    },
  }),
];
