/**
 * The documents `strata apply` sends and `strata get TENANT -o yaml` exports:
 * one object per document, `kind` first, the rest the fields of the resource's
 * create call (the same zod schemas, strict: an unknown field is refused).
 *
 *   kind: Tenant       name, quota
 *   kind: User         name, role, tenant (tenant roles)
 *   kind: Instance     tenant, name, level, source, limits, config, restart, state
 *   kind: Site         tenant, hostname, target, listeners
 *   kind: Certificate  tenant, hostnames, source (local-ca | acme | upload), challenge (acme),
 *                      certificate + key (upload)
 *   kind: Listener     name, address, port, protocol, defaultSite, strictSni
 *
 * What a document leaves out takes the create call's default, so a file says
 * the whole of what it names: a quota field left out is the default quota's.
 */
import { z } from 'zod';
import { StrataError } from '../core/errors.js';
import { DEFAULT_QUOTA } from '../control/lifecycle/quotas.js';
import { RestartPolicySchema } from '../control/lifecycle/restart-policy.js';
import type { Spec, Wanted } from '../control/apply/types.js';
import { ACME_CHALLENGES, CERTIFICATE_SOURCES } from '../store/types.js';
import { Names, Pem } from './certificates.js';
import { ListenerCreate } from './listeners.js';
import { DEFAULT_LIMITS, InstanceCreate, Name, SiteCreate, TenantCreate, UserCreate } from './schemas.js';

/** At most this many issues are reported for a file: enough to fix it, never a wall of text. */
const MAX_ISSUES = 20;

const TenantDoc = z.object({ kind: z.literal('Tenant'), ...TenantCreate.shape }).strict();
const UserDoc = z.object({ kind: z.literal('User'), ...UserCreate.shape }).strict();
const { start: _start, ...instanceFields } = InstanceCreate.shape;
const InstanceDoc = z.object({
  kind: z.literal('Instance'), tenant: Name, ...instanceFields,
  /** The restart policy (the API keeps it as `config.restart`). */
  restart: RestartPolicySchema.optional(),
  /** Default running. */
  state: z.enum(['running', 'stopped']).optional(),
}).strict().refine((d) => d.config?.restart === undefined, { message: 'the restart policy is the document\'s `restart` field', path: ['config', 'restart'] });
const SiteDoc = z.object({ kind: z.literal('Site'), tenant: Name, ...SiteCreate.shape }).strict();
const CertificateDoc = z.object({
  kind: z.literal('Certificate'), tenant: Name, hostnames: Names, source: z.enum(CERTIFICATE_SOURCES),
  challenge: z.enum(ACME_CHALLENGES).optional(), certificate: Pem.optional(), key: Pem.optional(),
}).strict().superRefine((d, ctx) => {
  if (d.source !== 'acme' && d.challenge !== undefined) ctx.addIssue({ code: 'custom', path: ['challenge'], message: 'acme certificates only' });
  for (const f of ['certificate', 'key'] as const) {
    if (d.source !== 'upload' && d[f] !== undefined) ctx.addIssue({ code: 'custom', path: [f], message: 'uploaded certificates only' });
  }
  if (d.source === 'upload' && d.certificate === undefined) ctx.addIssue({ code: 'custom', path: ['certificate'], message: 'an upload needs its PEM chain' });
});
const ListenerDoc = z.object({ kind: z.literal('Listener'), ...ListenerCreate.shape }).strict();

export const Document = z.discriminatedUnion('kind', [TenantDoc, UserDoc, InstanceDoc, SiteDoc, CertificateDoc, ListenerDoc]);
export type Document = z.infer<typeof Document>;

export const ApplyBody = z.object({
  documents: z.array(z.unknown()).max(10_000),
  /** Compute and answer the plan; change nothing. */
  dryRun: z.boolean().default(false),
  /** Delete what the file's tenants hold and the file does not name. */
  prune: z.boolean().default(false),
}).strict();

export interface DocumentIssue {
  document: number;
  field: string;
  message: string;
}

/** One error for a whole file: every issue names its document (0-based) and the field in it. */
export function documentError(issues: DocumentIssue[], code: 'STRATA_ERR_VALIDATION' = 'STRATA_ERR_VALIDATION'): StrataError {
  const first = issues[0]!;
  return new StrataError(code, `document ${first.document}: ${first.field}: ${first.message}`, { issues: issues.slice(0, MAX_ISSUES) });
}

/** A document's spec, every default filled in. */
export function specOf(d: Document): Spec {
  switch (d.kind) {
    case 'Tenant': return { kind: 'Tenant', name: d.name, quota: { ...DEFAULT_QUOTA, ...d.quota } };
    case 'User': return { kind: 'User', name: d.name, role: d.role, tenant: d.tenant ?? null };
    case 'Instance': return {
      kind: 'Instance', tenant: d.tenant, name: d.name, level: d.level, source: d.source ?? null,
      limits: { ...DEFAULT_LIMITS, ...d.limits }, config: d.config ?? {}, restart: d.restart ?? 'no', state: d.state ?? 'running',
    };
    case 'Site': return { kind: 'Site', tenant: d.tenant, hostname: d.hostname, target: d.target, listeners: d.listeners ?? null };
    case 'Certificate': return {
      kind: 'Certificate', tenant: d.tenant, hostnames: [...d.hostnames].sort(), source: d.source,
      challenge: d.source === 'acme' ? (d.challenge ?? 'http-01') : null,
      ...(d.certificate !== undefined ? { certificate: d.certificate } : {}), ...(d.key !== undefined ? { key: d.key } : {}),
    };
    case 'Listener': return {
      kind: 'Listener', name: d.name, address: d.address, port: d.port, protocol: d.protocol,
      defaultSite: d.defaultSite ?? null, strictSni: d.strictSni === true,
    };
  }
}

/** Every document parsed, or one 400 naming each bad document and field. */
export function parseDocuments(documents: readonly unknown[]): Wanted[] {
  const issues: DocumentIssue[] = [];
  const wanted: Wanted[] = [];
  documents.forEach((raw, document) => {
    const r = Document.safeParse(raw);
    if (r.success) {
      wanted.push({ spec: specOf(r.data), document });
      return;
    }
    for (const i of r.error.issues) {
      // An unknown field is named itself, not the object that holds it.
      const keys = i.code === 'unrecognized_keys' ? (i as { keys: string[] }).keys : [];
      const path = [...i.path.map(String), ...keys.slice(0, 1)];
      issues.push({ document, field: path.join('.') || '(document)', message: i.message });
    }
  });
  if (issues.length) throw documentError(issues);
  return wanted;
}

/** A spec as a document: defaults left out, so an export reads like a hand-written file. */
export function documentOf(s: Spec): Record<string, unknown> {
  switch (s.kind) {
    case 'Tenant': return { kind: s.kind, name: s.name, quota: s.quota };
    case 'User': return { kind: s.kind, name: s.name, role: s.role, ...(s.tenant !== null ? { tenant: s.tenant } : {}) };
    case 'Instance': return {
      kind: s.kind, tenant: s.tenant, name: s.name, level: s.level, ...(s.source !== null ? { source: s.source } : {}), limits: s.limits,
      ...(Object.keys(s.config).length ? { config: s.config } : {}), ...(s.restart !== 'no' ? { restart: s.restart } : {}),
      ...(s.state !== 'running' ? { state: s.state } : {}),
    };
    case 'Site': return { kind: s.kind, tenant: s.tenant, hostname: s.hostname, target: s.target, ...(s.listeners !== null ? { listeners: s.listeners } : {}) };
    case 'Certificate': return {
      kind: s.kind, tenant: s.tenant, hostnames: s.hostnames, source: s.source, ...(s.challenge !== null ? { challenge: s.challenge } : {}),
      ...(s.certificate !== undefined ? { certificate: s.certificate } : {}),
    };
    case 'Listener': return {
      kind: s.kind, name: s.name, address: s.address, port: s.port, protocol: s.protocol,
      ...(s.defaultSite !== null ? { defaultSite: s.defaultSite } : {}), ...(s.strictSni ? { strictSni: true } : {}),
    };
  }
}
