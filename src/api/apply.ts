/**
 * Declarative apply: `POST /v1/apply` takes the documents of a file (see
 * `apply-documents.ts`), checks the whole file (`apply-check.ts`), plans in the
 * daemon that will do it, and — unless `dryRun` — carries the plan out
 * (`apply-run.ts`). An unchanged file plans nothing, changes nothing and audits
 * nothing. `GET /v1/tenants/:tenant/export` gives a tenant back as documents,
 * which applied to an empty daemon make the same tenant.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { authorize, type Principal } from '../auth/policy.js';
import { certificateSpec, instanceSpec, listenerSpec, siteSpec, tenantSpec, userSpec } from '../control/apply/state.js';
import type { PlanEntry, Spec } from '../control/apply/types.js';
import { isStrataError } from '../core/errors.js';
import { checkAndPlan } from './apply-check.js';
import { ApplyBody, documentOf, parseDocuments } from './apply-documents.js';
import { runPlan } from './apply-run.js';
import { tenantFor } from './lookup.js';
import { presentOperation } from './present.js';
import { defineRoute } from './route.js';
import type { Services } from './services.js';
import { ErrorBody, Name, Operation } from './schemas.js';

const tag = 'apply';
const ACTIONS = ['create', 'change', 'replace', 'delete'] as const;

const PlanStep = z.object({
  action: z.enum(ACTIONS),
  kind: z.string(),
  tenant: z.string().nullable(),
  name: z.string(),
  /** The document asking for it (0-based); null for deletes and for sites made again because what they follow is. */
  document: z.number().nullable(),
  changes: z.array(z.object({ field: z.string(), from: z.unknown(), to: z.unknown() })),
  reason: z.string().optional(),
  /** Instances changed in place: `live`, or `restart` (at the next start); absent: the level says once done (`applied`). */
  takes: z.enum(['live', 'restart']).optional(),
});
const ApplyResult = z.object({
  dryRun: z.boolean(),
  plan: z.array(PlanStep),
  summary: z.object({ create: z.number(), change: z.number(), replace: z.number(), delete: z.number() }),
  operations: z.array(Operation),
  /** Per instance changed in place: how each field took effect (`live` or `next-restart`). */
  applied: z.record(z.string(), z.record(z.string(), z.enum(['live', 'next-restart']))),
});
const Exported = z.object({ documents: z.array(z.record(z.string(), z.unknown())) });

/** PEM shown in a plan by its digest: a plan is read by people and kept in logs. */
const shown = (field: string, v: unknown): unknown =>
  (field === 'certificate' || field === 'key') && typeof v === 'string' ? `sha256:${createHash('sha256').update(v).digest('hex').slice(0, 16)}…` : v;

const presentStep = (e: PlanEntry) => ({
  action: e.action, kind: e.kind, tenant: e.tenant, name: e.name, document: e.document,
  changes: e.changes.map((c) => ({ field: c.field, from: shown(c.field, c.from), to: shown(c.field, c.to) })),
  ...(e.reason ? { reason: e.reason } : {}), ...(e.takes ? { takes: e.takes } : {}),
});

/** Whether `p` may do `action` in tenant `id` (for what an export includes). */
function may(p: Principal, action: Parameters<typeof authorize>[1], tenant?: { id: string; name: string }): boolean {
  try {
    authorize(p, action, tenant ? { id: tenant.id, hidden: { kind: 'tenant', name: tenant.name } } : undefined);
    return true;
  } catch (e) {
    if (isStrataError(e)) return false;
    throw e;
  }
}

/** A tenant as documents: itself, its users (for who may list them), instances, sites, certificates, and the API listeners its sites are bound to (for the provider). */
export function exportTenant(s: Services, p: Principal, name: string): Spec[] {
  const t = tenantFor(s, p, name, 'tenant.read');
  const specs: Spec[] = [tenantSpec(t)];
  if (may(p, 'user.list', { id: t.id, name: t.name })) for (const u of s.store.listUsers({ tenantId: t.id })) specs.push(userSpec(u, t.name));
  const sites = s.store.listSites({ tenantId: t.id });
  if (may(p, 'listener.list')) {
    const bound = new Set(sites.flatMap((x) => x.listeners ?? []));
    for (const l of s.store.listListeners()) if (bound.has(l.name)) specs.push(listenerSpec(l));
  }
  for (const i of s.store.listInstances({ tenantId: t.id })) specs.push(instanceSpec(i, t.name));
  for (const x of sites) specs.push(siteSpec(x, t.name));
  for (const c of s.store.listCertificates({ tenantId: t.id })) if (c.status !== 'failed') specs.push(certificateSpec(c, t.name));
  return specs;
}

export const applyRoutes = [
  defineRoute({
    method: 'POST', url: '/v1/apply', tag,
    summary: 'Make the daemon hold what a file of documents says: the plan (create, change, replace, delete), carried out unless dryRun',
    body: ApplyBody, auditAs: 'apply', responses: { 200: ApplyResult, 400: ErrorBody, 403: ErrorBody, 409: ErrorBody, 422: ErrorBody },
    handler: async ({ p, body, audit, req }, s) => {
      const wanted = parseDocuments(body.documents);
      const { entries } = checkAndPlan(s, p, wanted, { prune: body.prune, dryRun: body.dryRun });
      const summary = { create: 0, change: 0, replace: 0, delete: 0 };
      for (const e of entries) summary[e.action]++;
      const run = body.dryRun || entries.length === 0 ? { operations: [], applied: {} } : await runPlan(s, p, entries, audit, req);
      return {
        body: {
          dryRun: body.dryRun, plan: entries.map(presentStep), summary,
          operations: run.operations.map((o) => presentOperation(s, o)), applied: run.applied,
        },
      };
    },
  }),
  defineRoute({
    method: 'GET', url: '/v1/tenants/:tenant/export', tag,
    summary: 'A tenant as apply documents (uploaded certificates without their keys, which never leave)',
    params: z.object({ tenant: Name }).strict(), responses: { 200: Exported, 404: ErrorBody },
    handler: ({ p, params }, s) => ({ body: { documents: exportTenant(s, p, params.tenant).map(documentOf) } }),
  }),
];
