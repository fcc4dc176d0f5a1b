/**
 * What the daemon holds, as specs: the same normalised shape the file's
 * documents take, so the two compare field by field. Also what an export is
 * made of.
 */
import type { Store } from '../../store/store.js';
import type { Certificate, Instance, Site, StoredListener, Tenant, User } from '../../store/types.js';
import { RESTART_KEY, levelConfig, restartPolicyOf } from '../lifecycle/restart-policy.js';
import { keyOf, type CertificateSpec, type Held, type InstanceSpec, type ListenerSpec, type SiteSpec, type TenantSpec, type UserSpec } from './types.js';

export const tenantSpec = (t: Tenant): TenantSpec => ({ kind: 'Tenant', name: t.name, quota: { ...t.quota } });

export const userSpec = (u: User, tenant: string | null): UserSpec => ({ kind: 'User', name: u.name, role: u.role, tenant });

export const instanceSpec = (i: Instance, tenant: string): InstanceSpec => ({
  kind: 'Instance', tenant, name: i.name, level: i.level, source: i.source, limits: { ...i.limits },
  config: RESTART_KEY in i.config ? levelConfig(i.config) : i.config, restart: restartPolicyOf(i.config),
  // A paused instance is running as far as its configuration goes.
  state: i.desiredState === 'stopped' ? 'stopped' : 'running',
});

export const siteSpec = (x: Site, tenant: string): SiteSpec => ({
  kind: 'Site', tenant, hostname: x.hostname, target: x.target, listeners: x.listeners,
});

export const certificateSpec = (c: Certificate, tenant: string): CertificateSpec => ({
  kind: 'Certificate', tenant, hostnames: [...c.hostnames].sort(), source: c.source, challenge: c.challenge,
  ...(c.source === 'upload' && c.certPem !== null ? { certificate: c.certPem } : {}),
});

export const listenerSpec = (l: StoredListener): ListenerSpec => ({
  kind: 'Listener', name: l.name, address: l.address, port: l.port, protocol: l.protocol, defaultSite: l.defaultSite, strictSni: l.strictSni,
});

/** The objects of `tenants` (by name; unknown names are skipped) and every stored listener, by key. */
export function heldState(store: Store, tenants: Iterable<string>): Map<string, Held> {
  const held = new Map<string, Held>();
  const put = (h: Held): void => {
    held.set(keyOf(h.spec), h);
  };
  for (const name of new Set(tenants)) {
    const t = store.getTenantByName(name);
    if (!t) continue;
    put({ spec: tenantSpec(t), id: t.id });
    for (const u of store.listUsers({ tenantId: t.id })) put({ spec: userSpec(u, t.name), id: u.id });
    for (const i of store.listInstances({ tenantId: t.id })) put({ spec: instanceSpec(i, t.name), id: i.id });
    for (const x of store.listSites({ tenantId: t.id })) put({ spec: siteSpec(x, t.name), id: x.id, instanceId: x.instanceId });
    for (const c of store.listCertificates({ tenantId: t.id })) put({ spec: certificateSpec(c, t.name), id: c.id });
  }
  for (const l of store.listListeners()) put({ spec: listenerSpec(l), id: l.id });
  return held;
}
