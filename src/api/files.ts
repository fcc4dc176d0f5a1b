/**
 * Files in and out (`strata cp`), as tar archives (`application/x-tar`,
 * uncompressed): `PUT …/files?path=DIR` unpacks the body into directory DIR
 * (made when missing); `GET …/files?path=PATH` answers PATH as an archive whose
 * top member is PATH's last component (named in `X-Strata-Copy-Name`; empty
 * when PATH is the root and the archive holds its contents).
 *
 * On a static site's docroot (`/v1/tenants/:tenant/sites/:hostname/files`) and
 * on an instance whose level can copy (`/v1/tenants/:tenant/instances/:name/files`;
 * os: a running container, by its own tar). The rules for what a copy may hold
 * are `checkTenantArchive`'s (core/tar.ts); the disk and guard sides are
 * `control/files/files.ts`'s. Every copy in is audited; a copy out is audited
 * when the provider reads a tenant's files (with its reason), as logs are.
 */
import { z } from 'zod';
import { StrataError } from '../core/errors.js';
import type { CopyOut, FileCopies } from '../control/files/files.js';
import type { Principal } from '../auth/policy.js';
import { instanceFor, tenantFor } from './lookup.js';
import { defineRoute } from './route.js';
import { ErrorBody, Hostname, Name } from './schemas.js';
import type { Services } from './services.js';
import type { Instance, Tenant } from '../store/types.js';
import type { FastifyReply } from 'fastify';
import { notFound } from '../core/errors.js';

export const TAR = 'application/x-tar';

const PathQuery = z.object({ path: z.string().min(1).max(4096) }).strict();
const InstanceParams = z.object({ tenant: Name, name: Name }).strict();
const SiteParams = z.object({ tenant: Name, hostname: Hostname }).strict();
const Copied = z.object({
  path: z.string(),
  entries: z.number().int(),
  bytes: z.number().int(),
  stripped: z.array(z.string()).describe('members whose setuid/setgid bits were dropped'),
});

function copies(s: Services): FileCopies {
  if (!s.files) throw new StrataError('STRATA_ERR_UNAVAILABLE', 'file copies need the daemon');
  return s.files;
}

function siteOf(s: Services, p: Principal, tenantName: string, hostname: string, action: 'site.files.read' | 'site.files.write') {
  const tenant = tenantFor(s, p, tenantName, action);
  const site = s.store.getSite(hostname);
  if (!site || site.tenantId !== tenant.id) throw notFound('site', hostname);
  return { tenant, site };
}

function sendArchive(reply: FastifyReply, out: CopyOut): void {
  void reply.code(200).header('content-type', TAR).header('x-strata-copy-name', encodeURIComponent(out.name)).header('cache-control', 'no-store').send(out.archive);
}

/** A process in the instance (its tar) is an operator session to the guard, as an exec is. */
async function asOperator<T>(s: Services, p: Principal, tenant: Tenant, instance: Instance, argv: string[], work: (mark: (m: { execId: number; runnerPid: number }) => void) => Promise<T>): Promise<T> {
  const operator = s.guard.sessions.open({ kind: 'exec', tenantId: tenant.id, instanceId: instance.id, level: instance.level, user: p.name, argv });
  try {
    return await work((m) => {
      operator.bind(m);
      operator.started();
    });
  } finally {
    operator.close();
  }
}

export const fileRoutes = [
  defineRoute({
    method: 'PUT', url: '/v1/tenants/:tenant/instances/:name/files', tag: 'instances', binaryBody: TAR, auditAs: 'instance.files.write',
    summary: 'Copy a tar archive into a directory of a running instance (made when missing); modes and symlinks kept, escapes refused',
    params: InstanceParams, query: PathQuery, responses: { 200: Copied, 404: ErrorBody, 409: ErrorBody, 422: ErrorBody },
    handler: async ({ p, params, query, body, audit }, s) => {
      const { tenant, instance } = instanceFor(s, p, params.tenant, params.name, 'instance.files.write');
      const done = await asOperator(s, p, tenant, instance, ['tar', '-x', '-C', query.path], (mark) => copies(s).toInstance(tenant, instance, query.path, body as unknown as Buffer, { mark }));
      audit({ action: 'instance.files.write', target: `${tenant.name}/${instance.name}`, tenantId: tenant.id, details: { ...done } });
      return { body: done };
    },
  }),
  defineRoute({
    method: 'GET', url: '/v1/tenants/:tenant/instances/:name/files', tag: 'instances', raw: true,
    summary: "A path of a running instance as a tar archive (top member: the path's last component)",
    params: InstanceParams, query: PathQuery, responses: { 200: null, 404: ErrorBody, 422: ErrorBody },
    handler: async ({ p, params, query, reply, audit }, s) => {
      const { tenant, instance } = instanceFor(s, p, params.tenant, params.name, 'instance.files.read');
      const out = await asOperator(s, p, tenant, instance, ['tar', '-c', query.path], (mark) => copies(s).fromInstance(tenant, instance, query.path, { mark }));
      if (p.role === 'provider-admin') audit({ action: 'instance.files.read', target: `${tenant.name}/${instance.name}`, tenantId: tenant.id, details: { path: query.path } });
      sendArchive(reply, out);
    },
  }),
  defineRoute({
    method: 'PUT', url: '/v1/tenants/:tenant/sites/:hostname/files', tag: 'sites', binaryBody: TAR, auditAs: 'site.files.write',
    summary: "Copy a tar archive into a directory of a static site's docroot (made when missing); the guard takes it as the new baseline",
    params: SiteParams, query: PathQuery, responses: { 200: Copied, 404: ErrorBody, 409: ErrorBody, 422: ErrorBody },
    handler: async ({ p, params, query, body, audit }, s) => {
      const { tenant, site } = siteOf(s, p, params.tenant, params.hostname, 'site.files.write');
      const done = await copies(s).toSite(tenant, site, query.path, body as unknown as Buffer);
      audit({ action: 'site.files.write', target: site.hostname, tenantId: tenant.id, details: { ...done } });
      return { body: done };
    },
  }),
  defineRoute({
    method: 'GET', url: '/v1/tenants/:tenant/sites/:hostname/files', tag: 'sites', raw: true,
    summary: "A path of a static site's docroot as a tar archive (top member: the path's last component)",
    params: SiteParams, query: PathQuery, responses: { 200: null, 404: ErrorBody, 422: ErrorBody },
    handler: async ({ p, params, query, reply, audit }, s) => {
      const { tenant, site } = siteOf(s, p, params.tenant, params.hostname, 'site.files.read');
      const out = await copies(s).fromSite(tenant, site, query.path);
      if (p.role === 'provider-admin') audit({ action: 'site.files.read', target: site.hostname, tenantId: tenant.id, details: { path: query.path } });
      sendArchive(reply, out);
    },
  }),
];
