/**
 * Store objects → API objects: tenant ids become tenant names, internal fields stay
 * inside. One function per resource so every route shows the same shape.
 */
import type { Domain, Instance, Operation, Site, Snapshot, Tenant, Token, User } from '../store/types.js';
import type { Services } from './services.js';
import { tenantName } from './lookup.js';

export const presentTenant = (s: Services, t: Tenant) => ({ ...t, usage: s.store.usage(t.id) });

export const presentUser = (s: Services, u: User) => ({
  id: u.id, name: u.name, role: u.role, tenant: tenantName(s, u.tenantId), createdAt: u.createdAt,
});

export const presentToken = (s: Services, t: Token) => ({
  id: t.id, user: s.store.getUser(t.userId)?.name ?? t.userId, name: t.name,
  createdAt: t.createdAt, expiresAt: t.expiresAt, lastUsedAt: t.lastUsedAt,
});

export const presentInstance = (s: Services, i: Instance) => ({
  id: i.id, tenant: tenantName(s, i.tenantId) ?? i.tenantId, name: i.name, level: i.level, source: i.source,
  limits: i.limits, config: i.config, desiredState: i.desiredState, state: i.actualState, info: i.info,
  createdAt: i.createdAt, updatedAt: i.updatedAt,
});

export const presentSite = (s: Services, x: Site) => ({
  id: x.id, tenant: tenantName(s, x.tenantId) ?? x.tenantId, hostname: x.hostname, target: x.target, instanceId: x.instanceId,
  listeners: x.listeners, createdAt: x.createdAt,
});

export const presentDomain = (s: Services, x: Domain) => ({
  id: x.id, tenant: tenantName(s, x.tenantId) ?? x.tenantId, name: x.name, source: x.source, createdAt: x.createdAt,
});

export const presentSnapshot = (s: Services, x: Snapshot) => ({
  id: x.id, tenant: tenantName(s, x.tenantId) ?? x.tenantId, instance: s.store.getInstanceById(x.instanceId)?.name ?? x.instanceId,
  name: x.name, status: x.status, sizeBytes: x.sizeBytes, digest: x.digest, createdAt: x.createdAt,
});

export const presentOperation = (s: Services, o: Operation) => ({
  id: o.id, tenant: tenantName(s, o.tenantId), kind: o.kind, target: o.target, status: o.status, progress: o.progress,
  error: o.error, result: o.result, createdAt: o.createdAt, updatedAt: o.updatedAt,
});
