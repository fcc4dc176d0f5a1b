/**
 * What `/metrics` serves beyond the API's own counters: per-instance CPU,
 * memory, network and disk; quota use per tenant; guard alerts by rule and
 * priority; certificate expiry; operation durations and failures; and the
 * gateway's per-site series. Every tenant-owned series carries `tenant_id`
 * (and the gateway's its `tenant`, also the id), which is how a tenant's
 * scrape is cut down to its own: it gets only series labelled with its id,
 * and none of the daemon's own (process, API, audit, guard totals).
 */
import { AggregatorRegistry, Counter, Gauge, Histogram, Registry, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import type { EventBus } from '../core/events.js';
import { QUOTA_RESOURCES } from '../control/lifecycle/quotas.js';
import type { Services } from './services.js';

/** Operation durations, seconds: from a second (a stop) to many minutes (an image import, a move). */
const OPERATION_BUCKETS = [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900];

/**
 * Tallies of events the daemon publishes: alerts (kept per tenant, rule and
 * priority, for tenant-scoped scrapes) and operations (the daemon's registry).
 */
export class MetricsTally {
  readonly #alerts = new Map<string, { tenantId: string | null; rule: string; priority: string; count: number }>();

  constructor(events: EventBus, registry: Registry) {
    const durations = new Histogram({
      name: 'strata_operation_duration_seconds', help: 'Time from an operation\'s start to its end, by kind and outcome',
      labelNames: ['kind', 'status'] as const, buckets: OPERATION_BUCKETS, registers: [registry],
    });
    const failures = new Counter({
      name: 'strata_operations_failed_total', help: 'Operations that failed, by kind and error code',
      labelNames: ['kind', 'code'] as const, registers: [registry],
    });
    events.subscribe((e) => {
      if (e.type === 'guard.alert') {
        const rule = String(e.data.rule ?? ''), priority = String(e.data.priority ?? '');
        const key = `${e.tenantId ?? ''}\u0000${rule}\u0000${priority}`;
        const entry = this.#alerts.get(key) ?? { tenantId: e.tenantId, rule, priority, count: 0 };
        entry.count++;
        this.#alerts.set(key, entry);
        return;
      }
      if (e.type !== 'operation.succeeded' && e.type !== 'operation.failed') return;
      const op = e.data.operation as { kind: string; status: string; createdAt: string; updatedAt: string; error: { code: string } | null };
      const seconds = (Date.parse(op.updatedAt) - Date.parse(op.createdAt)) / 1000;
      if (Number.isFinite(seconds) && seconds >= 0) durations.observe({ kind: op.kind, status: op.status }, seconds);
      if (op.status === 'failed') failures.inc({ kind: op.kind, code: op.error?.code ?? 'unknown' });
    });
  }

  alerts(): Array<{ tenantId: string | null; rule: string; priority: string; count: number }> {
    return [...this.#alerts.values()];
  }
}

/** `only`: one tenant's series (a tenant's scrape); null: every tenant's and the platform's own. */
async function tenantSeries(s: Services, only: string | null): Promise<Registry> {
  const registry = new Registry();
  const tenants = only === null ? s.store.listTenants() : [s.store.getTenant(only)].filter((t) => t !== null && t !== undefined);
  const tenantName = new Map(tenants.map((t) => [t.id, t.name]));
  const instances = only === null ? s.store.listInstances() : s.store.listInstances({ tenantId: only });
  const samples = await s.usage.sample(instances, { rate: false });

  const instanceLabels = ['tenant_id', 'tenant', 'instance_id', 'instance', 'level'] as const;
  const gauge = (name: string, help: string, labelNames: readonly string[]) => new Gauge({ name, help, labelNames, registers: [registry] });
  const counter = (name: string, help: string) => new Counter({ name, help, labelNames: instanceLabels, registers: [registry] });
  const cpu = counter('strata_instance_cpu_seconds_total', 'CPU time an instance used since its start');
  const memory = gauge('strata_instance_memory_bytes', 'Memory an instance uses now', instanceLabels);
  const memoryLimit = gauge('strata_instance_memory_limit_bytes', 'Memory an instance may use', instanceLabels);
  const rx = counter('strata_instance_network_receive_bytes_total', 'Bytes an instance received since its start');
  const tx = counter('strata_instance_network_transmit_bytes_total', 'Bytes an instance sent since its start');
  const disk = gauge('strata_instance_disk_used_bytes', 'Bytes an instance\'s own storage takes on the host', instanceLabels);
  const vcpus = gauge('strata_instance_cpu_limit_cores', 'CPUs an instance may use (its vCPUs)', instanceLabels);
  const up = gauge('strata_instance_running', '1 while an instance runs (or is paused), else 0', instanceLabels);
  for (const { instance: i, usage: u } of samples) {
    const labels = { tenant_id: i.tenantId, tenant: tenantName.get(i.tenantId) ?? '', instance_id: i.id, instance: i.name, level: i.level };
    vcpus.set(labels, i.limits.vcpus);
    up.set(labels, i.actualState === 'running' || i.actualState === 'paused' ? 1 : 0);
    if (!u) continue;
    if (u.cpuSeconds !== null) cpu.inc(labels, u.cpuSeconds);
    if (u.memoryBytes !== null) memory.set(labels, u.memoryBytes);
    if (u.memoryLimitBytes !== null) memoryLimit.set(labels, u.memoryLimitBytes);
    if (u.netRxBytes !== null) rx.inc(labels, u.netRxBytes);
    if (u.netTxBytes !== null) tx.inc(labels, u.netTxBytes);
    if (u.diskBytes !== null) disk.set(labels, u.diskBytes);
  }

  const quotaLabels = ['tenant_id', 'tenant', 'resource'] as const;
  const used = gauge('strata_tenant_quota_used', 'What a tenant uses of each quota resource (memory and disk in MiB)', quotaLabels);
  const limit = gauge('strata_tenant_quota_limit', 'A tenant\'s quota per resource (memory and disk in MiB)', quotaLabels);
  for (const t of tenants) {
    const usage = s.store.usage(t.id);
    for (const r of QUOTA_RESOURCES) {
      used.set({ tenant_id: t.id, tenant: t.name, resource: r }, usage[r]);
      limit.set({ tenant_id: t.id, tenant: t.name, resource: r }, t.quota[r]);
    }
  }

  const alerts = new Counter({
    name: 'strata_guard_alerts_total', help: 'Alerts the guard raised since the daemon started, by tenant (empty: the host), rule and priority',
    labelNames: ['tenant_id', 'tenant', 'rule', 'priority'] as const, registers: [registry],
  });
  for (const a of s.tally.alerts()) {
    if (only !== null && a.tenantId !== only) continue;
    alerts.inc({ tenant_id: a.tenantId ?? '', tenant: a.tenantId ? (tenantName.get(a.tenantId) ?? '') : '', rule: a.rule, priority: a.priority }, a.count);
  }

  const expiry = gauge('strata_certificate_expiry_timestamp_seconds', 'When a certificate stops being valid (Unix time), by tenant (empty: the platform\'s)', ['tenant_id', 'tenant', 'certificate', 'source', 'hostname']);
  const certificates = only === null ? s.store.listCertificates() : s.store.listCertificates({ tenantId: only });
  for (const c of certificates) {
    if (!c.notAfter || c.status !== 'active') continue;
    expiry.set({
      tenant_id: c.tenantId ?? '', tenant: c.tenantId ? (tenantName.get(c.tenantId) ?? '') : '', certificate: c.id, source: c.source, hostname: c.hostnames[0] ?? '',
    }, Date.parse(c.notAfter) / 1000);
  }
  return registry;
}

/** The gateway's series whose `tenant` label is `tenantId`. */
async function gatewaySeriesOf(s: Services, tenantId: string): Promise<Registry | null> {
  if (!s.gateway) return null;
  const all = (await (await s.gateway.metrics()).getMetricsAsJSON()) as Array<MetricObjectWithValues<MetricValue<string>>>;
  const own = all
    .map((m) => ({ ...m, values: m.values.filter((v) => (v.labels as Record<string, unknown>).tenant === tenantId) }))
    .filter((m) => m.values.length > 0);
  return own.length > 0 ? AggregatorRegistry.aggregate([own] as never) : null;
}

/** The text of a scrape: everything for `tenantId` null, else that tenant's own series. */
export async function scrape(s: Services, tenantId: string | null): Promise<string> {
  const tenants = await (await tenantSeries(s, tenantId)).metrics();
  if (tenantId !== null) {
    const gateway = await gatewaySeriesOf(s, tenantId);
    return gateway ? `${tenants}\n${await gateway.metrics()}` : tenants;
  }
  const parts = [await s.metrics.metrics(), tenants];
  if (s.gateway) parts.push(await (await s.gateway.metrics()).metrics());
  return parts.join('\n');
}
