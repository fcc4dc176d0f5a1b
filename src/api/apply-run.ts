/**
 * Carrying out a checked plan, step by step, through the same functions the
 * resource calls use (each step authorised, quota-checked and audited as its
 * own call would be). The order keeps every intermediate state valid:
 *
 *   1. new tenants and listeners (what the rest may stand on);
 *   2. deletions, and the first half of each replacement: certificates, sites,
 *      instances, users, listeners (dependents before what they depend on,
 *      so quota and names are free again);
 *   3. tenants' quota changes (after deletions: a lower quota must cover usage);
 *   4. listeners, users, instances made (again) or changed, then sites, then
 *      certificates (which need their names to be sites).
 *
 * A step that fails stops the apply: the error names the document, and says
 * how many steps were done (they stay done; applying the file again finishes).
 */
import type { FastifyRequest } from 'fastify';
import type { Principal } from '../auth/policy.js';
import type { InstanceSpec, PlanEntry, TenantSpec } from '../control/apply/types.js';
import type { Applied } from '../levels/driver.js';
import { RESTART_KEY } from '../control/lifecycle/restart-policy.js';
import { changeSite } from '../control/front-door/site-change.js';
import { changeUserRole } from '../control/tenants/user-change.js';
import { StrataError, isStrataError } from '../core/errors.js';
import type { Operation } from '../store/types.js';
import { aboutDocument } from './apply-check.js';
import { deleteCertificate, issueLocalCertificate, orderAcmeCertificate, uploadCertificate } from './certificates.js';
import { createListener, deleteListener } from './listeners.js';
import { instanceFor, tenantFor } from './lookup.js';
import type { AuditFn } from './route.js';
import type { Services } from './services.js';
import { createSite, deleteSite } from './sites.js';
import { createTenant, updateTenantQuota } from './tenants.js';
import { createUser, deleteUser } from './users.js';

export interface RunResult {
  /** Operations started (instance launches, deletions, state changes; ACME orders). */
  operations: Operation[];
  /** Per instance changed in place (`tenant/name`): how each field took effect. */
  applied: Record<string, Record<string, Applied>>;
}

type Step = { entry: PlanEntry; run: () => unknown };

const DELETE_ORDER = ['Certificate', 'Site', 'Instance', 'User', 'Listener'] as const;
const MAKE_ORDER = ['Listener', 'User', 'Instance', 'Site', 'Certificate'] as const;

export async function runPlan(s: Services, p: Principal, entries: readonly PlanEntry[], audit: AuditFn, req: FastifyRequest): Promise<RunResult> {
  const result: RunResult = { operations: [], applied: {} };
  const ops = (o: Operation | undefined): void => {
    if (o) result.operations.push(o);
  };
  const steps: Step[] = [];
  const of = (kinds: readonly string[], actions: readonly PlanEntry['action'][]) =>
    kinds.flatMap((k) => entries.filter((e) => e.kind === k && actions.includes(e.action)));

  for (const e of entries.filter((x) => x.action === 'create' && (x.kind === 'Tenant' || x.kind === 'Listener'))) {
    steps.push({ entry: e, run: () => make(s, p, e, audit, req, ops) });
  }
  for (const e of of(DELETE_ORDER, ['delete', 'replace'])) steps.push({ entry: e, run: () => remove(s, p, e, audit, ops) });
  for (const e of entries.filter((x) => x.kind === 'Tenant' && x.action === 'change')) {
    steps.push({ entry: e, run: () => updateTenantQuota(s, p, e.name, (e.want as TenantSpec).quota, audit, req) });
  }
  for (const e of of(MAKE_ORDER, ['create', 'replace', 'change'])) {
    if (e.action === 'create' && e.kind === 'Listener') continue; // made first
    steps.push({ entry: e, run: () => (e.action === 'change' ? change(s, p, e, audit, ops, result) : make(s, p, e, audit, req, ops)) });
  }

  let done = 0;
  for (const step of steps) {
    try {
      await step.run();
    } catch (err) {
      const e = aboutDocument(err, step.entry.document);
      if (isStrataError(e)) {
        throw new StrataError(e.code, `${e.message} (${step.entry.action} ${step.entry.kind.toLowerCase()} ${step.entry.name}; ${done} of ${steps.length} steps done before it)`, {
          ...(e.details ?? {}), done, steps: steps.length,
        });
      }
      throw e;
    }
    done++;
  }
  return result;
}

async function make(s: Services, p: Principal, e: PlanEntry, audit: AuditFn, req: FastifyRequest, ops: (o?: Operation) => void): Promise<void> {
  const w = e.want!;
  switch (w.kind) {
    case 'Tenant':
      createTenant(s, p, { name: w.name, quota: w.quota }, audit, req);
      return;
    case 'User':
      createUser(s, p, { name: w.name, role: w.role, ...(w.tenant !== null ? { tenant: w.tenant } : {}) }, audit);
      return;
    case 'Instance': {
      const tenant = tenantFor(s, p, w.tenant, 'instance.create');
      const config = w.restart !== 'no' ? { ...w.config, [RESTART_KEY]: w.restart } : w.config;
      ops(s.instances.launch(p, tenant, {
        name: w.name, level: w.level, source: w.source, limits: w.limits, config, desiredState: w.state,
      }, audit).operation);
      return;
    }
    case 'Site':
      createSite(s, p, w.tenant, { hostname: w.hostname, target: w.target, ...(w.listeners !== null ? { listeners: w.listeners } : {}) }, audit);
      return;
    case 'Certificate':
      if (w.source === 'upload') uploadCertificate(s, p, w.tenant, { certificate: w.certificate!, key: w.key! }, audit);
      else if (w.source === 'local-ca') await issueLocalCertificate(s, p, w.tenant, w.hostnames, audit);
      else ops(orderAcmeCertificate(s, p, w.tenant, w.hostnames, w.challenge ?? 'http-01', audit).operation);
      return;
    case 'Listener':
      await createListener(s, p, {
        name: w.name, address: w.address, port: w.port, protocol: w.protocol,
        ...(w.defaultSite !== null ? { defaultSite: w.defaultSite } : {}), ...(w.protocol === 'https' ? { strictSni: w.strictSni } : {}),
      }, audit);
  }
}

async function remove(s: Services, p: Principal, e: PlanEntry, audit: AuditFn, ops: (o?: Operation) => void): Promise<void> {
  const h = e.held!;
  switch (h.spec.kind) {
    case 'User':
      deleteUser(s, p, h.spec.name, audit);
      return;
    case 'Instance': {
      const { tenant, instance } = instanceFor(s, p, h.spec.tenant, h.spec.name, 'instance.delete');
      ops(s.instances.remove(p, tenant, instance, audit));
      return;
    }
    case 'Site':
      deleteSite(s, p, h.spec.tenant, h.spec.hostname, audit);
      return;
    case 'Certificate':
      deleteCertificate(s, p, h.spec.tenant, h.id, audit);
      return;
    case 'Listener':
      await deleteListener(s, p, h.spec.name, audit);
      return;
    case 'Tenant':
      throw new StrataError('STRATA_ERR_INTERNAL', 'apply never deletes a tenant');
  }
}

async function change(s: Services, p: Principal, e: PlanEntry, audit: AuditFn, ops: (o?: Operation) => void, result: RunResult): Promise<void> {
  const w = e.want!;
  switch (w.kind) {
    case 'User': {
      const u = s.store.getUserByName(w.name)!;
      const tenantId = w.tenant !== null ? tenantFor(s, p, w.tenant, 'user.update').id : null;
      changeUserRole(s.store, p, u, { role: w.role, tenantId }, { audit });
      return;
    }
    case 'Site': {
      const tenant = tenantFor(s, p, w.tenant, 'site.update');
      const site = s.store.getSite(w.hostname)!;
      changeSite(s.store, s.frontDoor?.listeners ?? [], tenant, site, { target: w.target, listeners: w.listeners }, { audit });
      return;
    }
    case 'Instance':
      await changeInstanceTo(s, p, w, audit, ops, result);
      return;
    default:
      throw new StrataError('STRATA_ERR_INTERNAL', `no change path for ${w.kind}`);
  }
}

/** Limits, config and restart policy through the PATCH's service function; the state through start/stop. */
async function changeInstanceTo(s: Services, p: Principal, w: InstanceSpec, audit: AuditFn, ops: (o?: Operation) => void, result: RunResult): Promise<void> {
  const { tenant, instance } = instanceFor(s, p, w.tenant, w.name, 'instance.update');
  // The file's config is the whole config: keys it leaves out go (a merge patch's null).
  const config: Record<string, unknown> = {};
  for (const key of Object.keys(instance.config)) if (!(key in w.config) && key !== RESTART_KEY) config[key] = null;
  Object.assign(config, w.config);
  config[RESTART_KEY] = w.restart === 'no' && !(RESTART_KEY in instance.config) ? null : w.restart;
  const r = await s.instances.change(tenant, instance, { limits: w.limits, config }, { audit });
  if (Object.keys(r.applied).length) result.applied[`${w.tenant}/${w.name}`] = r.applied;
  const desired = r.instance.desiredState === 'stopped' ? 'stopped' : 'running';
  if (desired !== w.state) ops(s.instances.act(p, tenant, r.instance, w.state === 'running' ? 'start' : 'stop', {}, audit));
}
