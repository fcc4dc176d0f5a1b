/**
 * `/v1/tenants/:tenant/certificates`: TLS certificates for a tenant's sites —
 * uploaded PEM, issued by the local CA, or ordered over ACME (an operation).
 * Every name must be one of the tenant's configured sites. Keys go in, never
 * out: no answer carries one. `GET /v1/certificates/ca` gives the local CA's
 * certificate for clients to trust.
 */
import { z } from 'zod';
import { authorize, type Principal } from '../auth/policy.js';
import type { CertificateManager } from '../control/certificates/certificate-manager.js';
import { StrataError, notFound } from '../core/errors.js';
import { ACME_CHALLENGES, CERTIFICATE_SOURCES, type AcmeChallenge, type Certificate as StoredCertificate, type Operation as StoredOperation } from '../store/types.js';
import { tenantFor, tenantName } from './lookup.js';
import { presentOperation } from './present.js';
import { defineRoute, type AuditFn } from './route.js';
import type { Services } from './services.js';
import { ErrorBody, Hostname, Name, Operation, WaitQuery, list } from './schemas.js';

const tag = 'certificates';
const TenantParams = z.object({ tenant: Name }).strict();
const Params = z.object({ tenant: Name, id: z.string().regex(/^ce_[A-Za-z0-9_-]{1,32}$/, 'a certificate id (ce_…)') }).strict();
export const Pem = z.string().min(1).max(64 * 1024);
export const Names = z.array(Hostname).min(1).max(100)
  .refine((names) => new Set(names).size === names.length, 'names must be distinct');

export const Certificate = z.object({
  id: z.string(),
  tenant: z.string().nullable(),
  hostnames: z.array(z.string()),
  source: z.enum(CERTIFICATE_SOURCES),
  status: z.enum(['pending', 'active', 'failed']),
  challenge: z.enum(ACME_CHALLENGES).nullable(),
  /** The certificate then its chain, PEM (null until issued). */
  certificate: z.string().nullable(),
  fingerprint: z.string().nullable(),
  notBefore: z.string().nullable(),
  notAfter: z.string().nullable(),
  error: z.string().nullable(),
  createdAt: z.string(),
  updatedAt: z.string(),
});
const Upload = z.object({ certificate: Pem, key: Pem }).strict();
const LocalIssue = z.object({ hostnames: Names }).strict();
const AcmeOrder = z.object({ hostnames: Names, challenge: z.enum(ACME_CHALLENGES).default('http-01') }).strict();
const Ordered = z.object({ certificate: Certificate, operation: Operation });
const CaCertificate = z.object({ certificate: z.string() });

export const presentCertificate = (s: Services, c: StoredCertificate) => ({
  id: c.id, tenant: tenantName(s, c.tenantId), hostnames: c.hostnames, source: c.source, status: c.status, challenge: c.challenge,
  certificate: c.certPem, fingerprint: c.fingerprint, notBefore: c.notBefore, notAfter: c.notAfter, error: c.error,
  createdAt: c.createdAt, updatedAt: c.updatedAt,
});

function manager(s: Services): CertificateManager {
  if (!s.certificates) throw new StrataError('STRATA_ERR_UNAVAILABLE', 'certificates are not managed by this API instance');
  return s.certificates;
}

function certificateFor(s: Services, tenantId: string, id: string): StoredCertificate {
  const c = s.store.getCertificate(id);
  if (!c || c.tenantId !== tenantId) throw notFound('certificate', id);
  return c;
}

// What the routes below do, shared with `apply`.

export function uploadCertificate(s: Services, p: Principal, tenantName: string, body: { certificate: string; key: string }, audit: AuditFn): StoredCertificate {
  const tenant = tenantFor(s, p, tenantName, 'certificate.create');
  return s.store.transaction(() => {
    const c = manager(s).upload(tenant, body.certificate, body.key);
    audit({ action: 'certificate.create', target: c.hostnames.join(','), tenantId: tenant.id, details: { certificate: c.id, source: 'upload', fingerprint: c.fingerprint } });
    return c;
  });
}

export async function issueLocalCertificate(s: Services, p: Principal, tenantName: string, hostnames: string[], audit: AuditFn): Promise<StoredCertificate> {
  const tenant = tenantFor(s, p, tenantName, 'certificate.issue');
  const commit = await manager(s).prepareLocal(tenant, hostnames);
  return commit((cert) => audit({
    action: 'certificate.issue', target: cert.hostnames.join(','), tenantId: tenant.id,
    details: { certificate: cert.id, source: 'local-ca', notAfter: cert.notAfter },
  }));
}

export function orderAcmeCertificate(s: Services, p: Principal, tenantName: string, hostnames: string[], challenge: AcmeChallenge, audit: AuditFn): { certificate: StoredCertificate; operation: StoredOperation } {
  const tenant = tenantFor(s, p, tenantName, 'certificate.issue');
  return s.store.transaction(() => {
    const ordered = manager(s).orderAcme(tenant, hostnames, challenge);
    audit({ action: 'certificate.order', target: ordered.certificate.hostnames.join(','), tenantId: tenant.id, details: { certificate: ordered.certificate.id, challenge } });
    return ordered;
  });
}

export function deleteCertificate(s: Services, p: Principal, tenantName: string, id: string, audit: AuditFn): void {
  const tenant = tenantFor(s, p, tenantName, 'certificate.delete');
  const c = certificateFor(s, tenant.id, id);
  s.store.transaction(() => {
    manager(s).remove(c);
    audit({ action: 'certificate.delete', target: c.hostnames.join(','), tenantId: tenant.id, details: { certificate: c.id } });
  });
}

export const certificateRoutes = [
  defineRoute({
    method: 'GET', url: '/v1/certificates/ca', tag, summary: "The local CA's certificate, for clients to trust",
    responses: { 200: CaCertificate },
    handler: async ({ p }, s) => {
      authorize(p, 'ca.read');
      return { body: { certificate: (await manager(s).localCa()).certPem } };
    },
  }),
  defineRoute({
    method: 'POST', url: '/v1/tenants/:tenant/certificates', tag, summary: 'Upload a certificate (PEM chain and key) for some of the tenant\'s sites',
    params: TenantParams, body: Upload, idempotent: true, auditAs: 'certificate.create',
    responses: { 201: Certificate, 409: ErrorBody, 422: ErrorBody },
    handler: ({ p, params, body, audit }, s) => ({ status: 201, body: presentCertificate(s, uploadCertificate(s, p, params.tenant, body, audit)) }),
  }),
  defineRoute({
    method: 'POST', url: '/v1/tenants/:tenant/certificates/local-ca', tag, summary: 'Issue a certificate from the local (development) CA',
    params: TenantParams, body: LocalIssue, auditAs: 'certificate.issue', responses: { 201: Certificate, 409: ErrorBody, 422: ErrorBody },
    handler: async ({ p, params, body, audit }, s) => ({ status: 201, body: presentCertificate(s, await issueLocalCertificate(s, p, params.tenant, body.hostnames, audit)) }),
  }),
  defineRoute({
    method: 'POST', url: '/v1/tenants/:tenant/certificates/acme', tag, summary: 'Order a certificate over ACME (HTTP-01 or TLS-ALPN-01 through the gateway)',
    params: TenantParams, query: WaitQuery, body: AcmeOrder, auditAs: 'certificate.order',
    responses: { 200: Ordered, 202: Ordered, 409: ErrorBody, 422: ErrorBody },
    operation: {
      refresh: (body, s) => {
        const now = s.store.getCertificate((body.certificate as { id: string }).id);
        return now ? { ...body, certificate: presentCertificate(s, now) } : body;
      },
    },
    handler: ({ p, params, body, audit }, s) => {
      const { certificate, operation } = orderAcmeCertificate(s, p, params.tenant, body.hostnames, body.challenge, audit);
      return { status: 202, body: { certificate: presentCertificate(s, certificate), operation: presentOperation(s, operation) } };
    },
  }),
  defineRoute({
    method: 'GET', url: '/v1/tenants/:tenant/certificates', tag, summary: "List a tenant's certificates", params: TenantParams,
    responses: { 200: list(Certificate) },
    handler: ({ p, params }, s) => {
      const tenant = tenantFor(s, p, params.tenant, 'certificate.list');
      return { body: { items: s.store.listCertificates({ tenantId: tenant.id }).map((c) => presentCertificate(s, c)) } };
    },
  }),
  defineRoute({
    method: 'GET', url: '/v1/tenants/:tenant/certificates/:id', tag, summary: 'Show a certificate (never its key)', params: Params,
    responses: { 200: Certificate, 404: ErrorBody },
    handler: ({ p, params }, s) => {
      const tenant = tenantFor(s, p, params.tenant, 'certificate.read');
      return { body: presentCertificate(s, certificateFor(s, tenant.id, params.id)) };
    },
  }),
  defineRoute({
    method: 'DELETE', url: '/v1/tenants/:tenant/certificates/:id', tag, summary: 'Delete a certificate and its key', params: Params,
    auditAs: 'certificate.delete', responses: { 204: null, 404: ErrorBody },
    handler: ({ p, params, audit }, s) => {
      deleteCertificate(s, p, params.tenant, params.id, audit);
      return { status: 204, body: null };
    },
  }),
];
