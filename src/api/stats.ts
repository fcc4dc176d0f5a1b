/**
 * Instances' usage: `/v1/tenants/:tenant/instances/:name/stats` for one,
 * `/v1/tenants/:tenant/stats` for a tenant's, `/v1/stats` for every instance the
 * caller may see (a tenant role: its own tenant's). Figures a level cannot give
 * are null; CPU cores are the rate since the previous reading (see
 * control/usage/sampler.ts).
 */
import { z } from 'zod';
import { authorize, isTenantRole } from '../auth/policy.js';
import type { UsageSample } from '../control/usage/sampler.js';
import { instanceFor, tenantFor } from './lookup.js';
import { defineRoute } from './route.js';
import { ErrorBody, Name, list } from './schemas.js';
import type { Services } from './services.js';

const tag = 'stats';
const figure = z.number().nullable();

export const InstanceStats = z.object({
  tenant: z.string(),
  name: z.string(),
  id: z.string(),
  level: z.string(),
  state: z.string(),
  cpu: z.object({ seconds: figure, cores: figure, limitCores: figure }),
  memory: z.object({ bytes: figure, limitBytes: figure }),
  network: z.object({ rxBytes: figure, txBytes: figure }),
  disk: z.object({ usedBytes: figure }),
  pids: figure,
  sampledAt: z.string(),
});

function present(s: Services, sample: UsageSample): z.infer<typeof InstanceStats> {
  const { instance: i, usage: u } = sample;
  return {
    tenant: s.store.getTenant(i.tenantId)?.name ?? i.tenantId,
    name: i.name,
    id: i.id,
    level: i.level,
    state: i.actualState,
    cpu: { seconds: u?.cpuSeconds ?? null, cores: sample.cpuCores, limitCores: i.limits.vcpus },
    memory: { bytes: u?.memoryBytes ?? null, limitBytes: u?.memoryLimitBytes ?? null },
    network: { rxBytes: u?.netRxBytes ?? null, txBytes: u?.netTxBytes ?? null },
    disk: { usedBytes: u?.diskBytes ?? null },
    pids: u?.pids ?? null,
    sampledAt: sample.sampledAt.toISOString(),
  };
}

const byName = (a: { tenant: string; name: string }, b: { tenant: string; name: string }): number =>
  a.tenant.localeCompare(b.tenant) || a.name.localeCompare(b.name);

export const statsRoutes = [
  defineRoute({
    method: 'GET', url: '/v1/tenants/:tenant/instances/:name/stats', tag, summary: "An instance's CPU, memory, network and disk use",
    params: z.object({ tenant: Name, name: Name }).strict(),
    responses: { 200: InstanceStats, 404: ErrorBody },
    handler: async ({ p, params }, s) => {
      const { instance } = instanceFor(s, p, params.tenant, params.name, 'instance.read');
      const [sample] = await s.usage.sample([instance]);
      return { body: present(s, sample!) };
    },
  }),
  defineRoute({
    method: 'GET', url: '/v1/tenants/:tenant/stats', tag, summary: "Usage of each of a tenant's instances",
    params: z.object({ tenant: Name }).strict(),
    responses: { 200: list(InstanceStats), 404: ErrorBody },
    handler: async ({ p, params }, s) => {
      const tenant = tenantFor(s, p, params.tenant, 'instance.list');
      const samples = await s.usage.sample(s.store.listInstances({ tenantId: tenant.id }));
      return { body: { items: samples.map((x) => present(s, x)).sort(byName) } };
    },
  }),
  defineRoute({
    method: 'GET', url: '/v1/stats', tag, summary: 'Usage of every instance the caller may see (a tenant role: its own)',
    responses: { 200: list(InstanceStats) },
    handler: async ({ p }, s) => {
      authorize(p, 'instance.list');
      const instances = isTenantRole(p.role) ? s.store.listInstances({ tenantId: p.tenantId! }) : s.store.listInstances();
      const samples = await s.usage.sample(instances);
      return { body: { items: samples.map((x) => present(s, x)).sort(byName) } };
    },
  }),
];
