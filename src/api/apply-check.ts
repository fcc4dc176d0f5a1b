/**
 * Everything `POST /v1/apply` checks before it changes anything, over the whole
 * file: each object named once, the caller's rights (a tenant's token touches
 * only its tenant; every step is authorised as its own API call would be),
 * references that resolve once the plan is done (a site's instance and
 * listeners, a certificate's names, an object's tenant), nothing that is
 * another tenant's, the level's own config checks, and the quotas the file
 * leaves. A problem is reported with the document (0-based) and the field.
 */
import { authorize, isTenantRole, type Action, type Principal } from '../auth/policy.js';
import { canonical, plan, type Decision } from '../control/apply/plan.js';
import { heldState } from '../control/apply/state.js';
import { keyOf, tenantOf, type CertificateSpec, type FieldChange, type Held, type InstanceSpec, type ListenerSpec, type PlanEntry, type SiteSpec, type Spec, type Wanted } from '../control/apply/types.js';
import { inspectUpload } from '../control/certificates/certificates.js';
import { checkSiteHostname } from '../control/front-door/hostnames.js';
import { QUOTA_RESOURCES } from '../control/lifecycle/quotas.js';
import { levelConfig } from '../control/lifecycle/restart-policy.js';
import { StrataError, isStrataError } from '../core/errors.js';
import type { Quota } from '../store/types.js';
import { documentError, type DocumentIssue } from './apply-documents.js';
import type { Services } from './services.js';
import { safeRelativePath } from '../control/front-door/site-change.js';

export interface Checked {
  entries: PlanEntry[];
  held: Map<string, Held>;
}

/** The policy action each step is authorised as: the same as the API call that does it. */
const ACTION: Record<Spec['kind'], Partial<Record<PlanEntry['action'], Action>>> = {
  Tenant: { create: 'tenant.create', change: 'tenant.update' },
  User: { create: 'user.create', change: 'user.update', delete: 'user.delete' },
  Instance: { create: 'instance.create', change: 'instance.update', replace: 'instance.create', delete: 'instance.delete' },
  Site: { create: 'site.create', change: 'site.update', replace: 'site.create', delete: 'site.delete' },
  Certificate: { create: 'certificate.issue', replace: 'certificate.issue', delete: 'certificate.delete' },
  Listener: { create: 'listener.create', replace: 'listener.create' },
};

/** Instance fields the control plane changes itself, live at every level. */
const CONTROL_FIELDS = new Set(['restart', 'state']);

/**
 * Which differing fields have an update path (the PATCH calls' service
 * functions); the rest are replaced, made again. An instance's limits and
 * config change in place where its level's driver can reconfigure; whether
 * that is live or at the next start the level says when it is done (the
 * answer's `applied`) — a stopped instance takes everything at its next start.
 */
export function decider(s: Services): (held: Held, want: Spec, changes: FieldChange[]) => Decision {
  return (held, want, changes) => {
    const fields = changes.map((c) => c.field);
    switch (want.kind) {
      case 'Tenant':
      case 'User':
      case 'Site':
        return { action: 'change' };
      case 'Instance': {
        const fixed = fields.filter((f) => f === 'level' || f === 'source');
        if (fixed.length) return { action: 'replace', reason: `${fixed.join(' and ')} cannot change in place: made again` };
        const level = fields.filter((f) => !CONTROL_FIELDS.has(f));
        if (level.length === 0) return { action: 'change', takes: 'live' };
        let driver;
        try {
          driver = s.registry.forLevel(want.level);
        } catch {
          driver = null;
        }
        if (!driver?.reconfigure) return { action: 'replace', reason: `the ${want.level} level cannot change ${level.join(', ')} in place: made again` };
        return (held.spec as InstanceSpec).state === 'stopped' || want.state === 'stopped' ? { action: 'change', takes: 'restart' } : { action: 'change' };
      }
      default:
        return { action: 'replace', reason: `no update path for ${fields.join(', ')}: made again` };
    }
  };
}

/** A StrataError thrown by a check about one document, with the document added (status and code kept). */
export function aboutDocument(e: unknown, document: number | null, field?: string): unknown {
  if (!isStrataError(e) || document === null) return e;
  if (e.code === 'STRATA_ERR_VALIDATION') {
    const issues = ((e.details as { issues?: Array<{ field: string; message: string }> } | undefined)?.issues ?? [{ field: field ?? '(document)', message: e.message }]);
    return documentError(issues.map((i) => ({ document, field: field ?? i.field, message: i.message })));
  }
  return new StrataError(e.code, `document ${document}: ${e.message}`, { ...(e.details ?? {}), document, ...(field ? { field } : {}) });
}

export function checkAndPlan(s: Services, p: Principal, wanted: readonly Wanted[], o: { prune: boolean; dryRun: boolean }): Checked {
  const issues: DocumentIssue[] = [];
  const issue = (document: number, field: string, message: string): void => {
    issues.push({ document, field, message });
  };
  const flush = (): void => {
    if (issues.length) throw documentError(issues);
  };

  // Each object once.
  const seen = new Map<string, number>();
  for (const w of wanted) {
    const key = keyOf(w.spec);
    const first = seen.get(key);
    if (first !== undefined) issue(w.document, w.spec.kind === 'Site' ? 'hostname' : w.spec.kind === 'Certificate' ? 'hostnames' : 'name', `names the same ${w.spec.kind.toLowerCase()} as document ${first}`);
    seen.set(key, w.document);
  }

  // A tenant's token touches its own tenant only.
  const own = isTenantRole(p.role) ? (s.store.getTenant(p.tenantId ?? '')?.name ?? null) : null;
  const fileTenants = new Set<string>();
  for (const w of wanted) {
    const tenant = tenantOf(w.spec);
    if (tenant !== null) fileTenants.add(tenant);
    if (!isTenantRole(p.role)) continue;
    if (w.spec.kind === 'Listener') issue(w.document, 'kind', "listeners are the provider's");
    else if (tenant === null) issue(w.document, 'role', `a ${(w.spec as { role: string }).role} belongs to no tenant: the provider's`);
    else if (tenant !== own) issue(w.document, w.spec.kind === 'Tenant' ? 'name' : 'tenant', `another tenant's object: this token acts for tenant '${own}' only`);
  }
  flush();

  const held = heldState(s.store, fileTenants);
  const tenantsInFile = new Set(wanted.filter((w) => w.spec.kind === 'Tenant').map((w) => w.spec.kind === 'Tenant' ? w.spec.name : ''));
  const tenantIds = new Map([...fileTenants].map((n) => [n, s.store.getTenantByName(n)?.id ?? null]));

  // Objects of other tenants, and tenants that exist nowhere.
  for (const w of wanted) {
    const x = w.spec;
    const tenant = tenantOf(x);
    if (x.kind !== 'Tenant' && x.kind !== 'Listener' && tenant !== null && !tenantIds.get(tenant) && !tenantsInFile.has(tenant)) {
      issue(w.document, 'tenant', `no tenant '${tenant}' in the daemon or the file`);
    }
    if (x.kind === 'User') {
      if (isTenantRole(x.role) !== (x.tenant !== null)) issue(w.document, 'tenant', x.tenant === null ? `required for role ${x.role}` : `role ${x.role} belongs to no tenant`);
      const u = s.store.getUserByName(x.name);
      const uTenant = u ? (u.tenantId ? (s.store.getTenant(u.tenantId)?.name ?? null) : null) : undefined;
      if (u && uTenant !== x.tenant) issue(w.document, 'name', `user '${x.name}' belongs to ${uTenant ? `another tenant` : 'the provider'}`);
      else if (u && x.tenant === null) held.set(keyOf(x), { spec: { kind: 'User', name: u.name, role: u.role, tenant: null }, id: u.id });
    }
    if (x.kind === 'Site') {
      const site = s.store.getSite(x.hostname);
      if (site && site.tenantId !== tenantIds.get(x.tenant)) issue(w.document, 'hostname', `another tenant's site`);
      if (x.target.kind === 'static' && !safeRelativePath(x.target.root)) issue(w.document, 'target.root', 'a relative path inside the tenant docroot, without ..');
    }
    if (x.kind === 'Certificate') {
      for (const name of x.hostnames) {
        const c = s.store.getCertificateByName(name);
        if (c && c.tenantId !== tenantIds.get(x.tenant)) issue(w.document, 'hostnames', `'${name}' is served by another tenant's certificate`);
      }
    }
    if (x.kind === 'Listener') {
      if (x.protocol !== 'https' && x.strictSni) issue(w.document, 'strictSni', 'https listeners only');
      if (s.frontDoor?.listeners.some((l) => l.id === x.name)) issue(w.document, 'name', 'a listener of the command line (strata up --listen): not the API\'s to change');
    }
  }
  flush();

  const entries = plan(wanted, held, {
    prune: o.prune, tenants: fileTenants, how: decider(s),
    // Pruning the caller's own user would leave the file's author locked out half-way.
    keep: (h) => h.spec.kind === 'User' && h.id === p.userId,
  });
  for (const e of entries) {
    if (e.kind === 'User' && e.held?.id === p.userId) issue(e.document ?? 0, 'role', 'your own user: another account changes it');
  }

  checkReferences(s, wanted, held, entries, issue);
  flush();
  checkRights(s, p, entries, tenantIds, o.dryRun);
  checkInstances(s, entries);
  checkQuotas(s, wanted, held, entries, tenantIds);
  return { entries, held };
}

/** What the file leaves behind must hold together: a site's instance and listeners, a certificate's names, uploads that can be made. */
function checkReferences(s: Services, wanted: readonly Wanted[], held: Map<string, Held>, entries: readonly PlanEntry[], issue: (d: number, f: string, m: string) => void): void {
  const deleted = new Set(entries.filter((e) => e.action === 'delete' && e.held).map((e) => keyOf(e.held!.spec)));
  const after = new Map<string, Spec>();
  for (const [key, h] of held) if (!deleted.has(key)) after.set(key, h.spec);
  for (const w of wanted) after.set(keyOf(w.spec), w.spec);
  const listeners = new Map<string, string>((s.frontDoor?.listeners ?? []).map((l) => [l.id, l.protocol]));
  for (const x of after.values()) if (x.kind === 'Listener') listeners.set(x.name, x.protocol);
  const sitesOf = new Map<string, Set<string>>();
  for (const x of after.values()) if (x.kind === 'Site') (sitesOf.get(x.tenant) ?? sitesOf.set(x.tenant, new Set()).get(x.tenant)!).add(x.hostname);

  const domains = s.store.listDomains();
  const sites = s.store.listSites();
  for (const w of wanted) {
    const x = w.spec;
    if (x.kind === 'Site') {
      if (x.target.kind === 'instance' && !after.has(`Instance:${x.tenant}/${x.target.instance}`)) {
        issue(w.document, 'target.instance', `no instance '${x.tenant}/${x.target.instance}' in the daemon or the file${deleted.has(`Instance:${x.tenant}/${x.target.instance}`) ? ' (prune deletes it)' : ''}`);
      }
      for (const l of x.listeners ?? []) {
        const protocol = listeners.get(l);
        if (protocol === undefined) issue(w.document, 'listeners', `no gateway listener is named '${l}'`);
        else if (protocol === 'tls-passthrough' && x.target.kind !== 'instance') issue(w.document, 'listeners', `a ${x.target.kind} site cannot be served on the tls-passthrough listener '${l}'`);
      }
      if (!held.has(keyOf(x))) {
        try {
          checkSiteHostname(s.store.getTenantByName(x.tenant)?.id ?? '(new tenant)', x.hostname, domains, sites);
        } catch (e) {
          if (!isStrataError(e)) throw e;
          issue(w.document, 'hostname', e.message);
        }
      }
    }
    if (x.kind === 'Certificate') {
      for (const name of x.hostnames) if (!sitesOf.get(x.tenant)?.has(name)) issue(w.document, 'hostnames', `'${name}' is not a site of tenant '${x.tenant}'`);
      if (x.source === 'acme' && !s.certificates?.acmeEnabled) issue(w.document, 'source', 'ACME is not configured on this daemon (strata up --acme-directory URL)');
    }
  }
  for (const e of entries) {
    if (e.kind !== 'Certificate' || e.action === 'delete' || e.action === 'change') continue;
    const x = e.want as CertificateSpec;
    if (x.source !== 'upload') continue;
    if (x.key === undefined) {
      issue(e.document ?? 0, 'key', 'an upload needs its key (keys are never exported)');
      continue;
    }
    try {
      const names = inspectUpload(x.certificate!, x.key).hostnames.sort();
      if (canonical(names) !== canonical(x.hostnames)) issue(e.document ?? 0, 'hostnames', `the certificate names ${names.join(', ')}`);
    } catch (err) {
      if (!isStrataError(err)) throw err;
      issue(e.document ?? 0, 'certificate', err.message);
    }
  }
}

/** Every step authorised as its own API call: 403 (or a reason asked for) names the document. */
function checkRights(s: Services, p: Principal, entries: readonly PlanEntry[], tenantIds: Map<string, string | null>, dryRun: boolean): void {
  // A plan changes nothing: the reason a provider gives for acting inside a tenant is asked of the apply that does.
  const asker = dryRun && p.reason === null ? { ...p, reason: '(dry run)' } : p;
  for (const e of entries) {
    const steps: Action[] = e.action === 'replace' ? [ACTION[e.kind].delete ?? ACTION[e.kind].replace!, ACTION[e.kind].replace!] : [ACTION[e.kind][e.action]!];
    if (e.kind === 'Listener' && e.action === 'replace') steps[0] = 'listener.delete';
    if (e.kind === 'Listener' && e.action === 'delete') steps[0] = 'listener.delete';
    for (const action of steps) {
      try {
        const id = e.tenant !== null ? (tenantIds.get(e.tenant) ?? s.store.getTenantByName(e.tenant)?.id ?? '(new tenant)') : null;
        authorize(asker, action, id !== null && e.kind !== 'Tenant' ? { id, hidden: { kind: 'tenant', name: e.tenant! } } : undefined);
      } catch (err) {
        throw aboutDocument(err, e.document);
      }
    }
  }
}

/** The level's own checks on what is created. */
function checkInstances(s: Services, entries: readonly PlanEntry[]): void {
  for (const e of entries) {
    if (e.kind !== 'Instance' || (e.action !== 'create' && e.action !== 'replace')) continue;
    const x = e.want as InstanceSpec;
    try {
      s.registry.forLevel(x.level);
    } catch (err) {
      throw aboutDocument(err, e.document, 'level');
    }
    try {
      s.registry.validate(x.level, { source: x.source, limits: x.limits, config: levelConfig(x.config) });
    } catch (err) {
      throw aboutDocument(err, e.document);
    }
  }
}

/** Each tenant's quota (the file's, else the one it has) must cover what it uses once the plan is done. */
function checkQuotas(s: Services, wanted: readonly Wanted[], held: Map<string, Held>, entries: readonly PlanEntry[], tenantIds: Map<string, string | null>): void {
  const quotaOf = new Map<string, { quota: Quota; document: number | null }>();
  for (const h of held.values()) if (h.spec.kind === 'Tenant') quotaOf.set(h.spec.name, { quota: h.spec.quota, document: null });
  for (const w of wanted) if (w.spec.kind === 'Tenant') quotaOf.set(w.spec.name, { quota: w.spec.quota, document: w.document });
  const delta = new Map<string, { usage: Record<string, number>; document: number | null }>();
  const add = (tenant: string, x: Spec, sign: 1 | -1, document: number | null): void => {
    const d = delta.get(tenant) ?? delta.set(tenant, { usage: { instances: 0, vcpus: 0, memoryMiB: 0, diskMiB: 0, sites: 0 }, document: null }).get(tenant)!;
    if (sign === 1 && d.document === null) d.document = document;
    if (x.kind === 'Instance') {
      d.usage.instances! += sign;
      d.usage.vcpus! += sign * x.limits.vcpus;
      d.usage.memoryMiB! += sign * x.limits.memoryMiB;
      d.usage.diskMiB! += sign * x.limits.diskMiB;
    }
    if (x.kind === 'Site') d.usage.sites! += sign;
  };
  for (const e of entries) {
    if (e.tenant === null) continue;
    if (e.held && (e.action === 'delete' || e.action === 'replace')) add(e.tenant, e.held.spec, -1, null);
    if (e.want && (e.action === 'create' || e.action === 'replace')) add(e.tenant, e.want, 1, e.document);
  }
  for (const [tenant, q] of quotaOf) {
    const id = tenantIds.get(tenant) ?? null;
    const usage = id ? s.store.usage(id) : { instances: 0, vcpus: 0, memoryMiB: 0, diskMiB: 0, sites: 0 };
    const d = delta.get(tenant);
    for (const r of QUOTA_RESOURCES) {
      const after = usage[r] + (d?.usage[r] ?? 0);
      if (after <= q.quota[r] + 1e-9) continue;
      const grows = (d?.usage[r] ?? 0) > 0;
      const document = grows ? (d?.document ?? q.document) : q.document;
      throw new StrataError(grows ? 'STRATA_ERR_QUOTA_EXCEEDED' : 'STRATA_ERR_QUOTA_BELOW_USAGE',
        `${document !== null ? `document ${document}: ` : ''}tenant '${tenant}': ${r} would be ${after}, over its quota of ${q.quota[r]}`,
        { tenant, resource: r, limit: q.quota[r], used: after, ...(document !== null ? { document } : {}) });
    }
  }
}
