/** Snapshots of an instance: create, list, restore, delete. */
import { z } from 'zod';
import { notFound } from '../errors.js';
import { instanceFor, tenantFor } from './lookup.js';
import { presentOperation, presentSnapshot } from './present.js';
import { defineRoute } from './route.js';
import { ErrorBody, Name, Operation, Snapshot, SnapshotCreate, WaitQuery, list } from './schemas.js';

const tag = 'snapshots';
const InstanceParams = z.object({ tenant: Name, name: Name }).strict();
const Params = InstanceParams.extend({ snapshot: Name }).strict();
const Taken = z.object({ snapshot: Snapshot, operation: Operation });
const Accepted = z.object({ operation: Operation });

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
    params: InstanceParams, responses: { 200: list(Snapshot) },
    handler: ({ p, params }, s) => {
      const { instance } = instanceFor(s, p, params.tenant, params.name, 'snapshot.list');
      return { body: { items: s.store.listSnapshots({ instanceId: instance.id }).map((x) => presentSnapshot(s, x)) } };
    },
  }),
  defineRoute({
    method: 'GET', url: '/v1/tenants/:tenant/snapshots', tag, summary: "List all of a tenant's snapshots",
    params: z.object({ tenant: Name }).strict(), responses: { 200: list(Snapshot) },
    handler: ({ p, params }, s) => {
      const tenant = tenantFor(s, p, params.tenant, 'snapshot.list');
      return { body: { items: s.store.listSnapshots({ tenantId: tenant.id }).map((x) => presentSnapshot(s, x)) } };
    },
  }),
  defineRoute({
    method: 'POST', url: '/v1/tenants/:tenant/instances/:name/snapshots/:snapshot/restore', tag,
    summary: 'Restore a stopped instance from a snapshot', params: Params, query: WaitQuery, auditAs: 'snapshot.restore',
    responses: { 200: Accepted, 202: Accepted, 409: ErrorBody }, operation: {},
    handler: ({ p, params, audit }, s) => {
      const { tenant, instance } = instanceFor(s, p, params.tenant, params.name, 'snapshot.restore');
      const snapshot = s.store.getSnapshot(instance.id, params.snapshot);
      if (!snapshot) throw notFound('snapshot', `${params.tenant}/${params.name}@${params.snapshot}`);
      return { status: 202, body: { operation: presentOperation(s, s.instances.restore(p, tenant, instance, snapshot, audit)) } };
    },
  }),
  defineRoute({
    method: 'DELETE', url: '/v1/tenants/:tenant/instances/:name/snapshots/:snapshot', tag, summary: 'Delete a snapshot',
    params: Params, auditAs: 'snapshot.delete', responses: { 204: null, 404: ErrorBody },
    handler: ({ p, params, audit }, s) => {
      const { tenant, instance } = instanceFor(s, p, params.tenant, params.name, 'snapshot.delete');
      const snapshot = s.store.getSnapshot(instance.id, params.snapshot);
      if (!snapshot) throw notFound('snapshot', `${params.tenant}/${params.name}@${params.snapshot}`);
      s.instances.deleteSnapshot(tenant, instance, snapshot, audit);
      return { status: 204, body: null };
    },
  }),
];
