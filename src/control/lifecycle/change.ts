/**
 * Changing an instance once it exists: its limits and its config. The level
 * decides what a running instance can take live (the driver's `reconfigure`);
 * the answer says, per changed field, whether it took effect `live` or takes it
 * at the `next-restart`. The control plane's own config keys (the restart
 * policy) are live at every level: the reconciler reads them from the store.
 *
 * The change runs under the instance's lock (the one the lifecycle and the
 * reconciler take), so it never interleaves with a start, a stop or another
 * change. The quota is checked before the driver is asked and again in the
 * transaction that stores the change; if that transaction refuses, the driver
 * is given the old spec back.
 */
import { InvalidStateTransition, StrataError, notFound } from '../../core/errors.js';
import { checkIfMatch } from '../../core/revision.js';
import type { Applied, InstanceLimits } from '../../levels/driver.js';
import type { Instance, Tenant } from '../../store/types.js';
import type { AuditFn, InstanceServiceDeps } from './instances.js';
import { checkQuota } from './quotas.js';
import { RESTART_KEY, driverSpec, levelConfig, parseRestartPolicy } from './restart-policy.js';

export interface InstanceChange {
  limits?: Partial<InstanceLimits>;
  /** Top-level config keys to set; a null value removes the key (a JSON merge patch, one level deep). */
  config?: Record<string, unknown>;
}

export interface InstanceChangeResult {
  instance: Instance;
  /** Each changed field (`limits.<key>`, `config.<key>`) and how it took effect; empty when nothing changed. */
  applied: Record<string, Applied>;
}

/** The instance's limits and config with `change` applied, and the fields that differ. Pure: `strata apply` plans with it. */
export function diffInstance(instance: Pick<Instance, 'limits' | 'config'>, change: InstanceChange): { limits: InstanceLimits; config: Record<string, unknown>; changed: string[] } {
  const limits = { ...instance.limits, ...change.limits };
  const config = { ...instance.config };
  for (const [key, value] of Object.entries(change.config ?? {})) {
    if (value === null) delete config[key];
    else config[key] = value;
  }
  const changed = [
    ...(Object.keys(limits) as Array<keyof InstanceLimits>).filter((k) => limits[k] !== instance.limits[k]).map((k) => `limits.${k}`),
    ...[...new Set([...Object.keys(instance.config), ...Object.keys(config)])]
      .filter((k) => JSON.stringify(instance.config[k]) !== JSON.stringify(config[k])).map((k) => `config.${k}`),
  ];
  return { limits, config, changed };
}

/** Changes `instance` of `tenant` (see the file's comment); `ifMatch` as the If-Match header gave it. */
export async function changeInstance(
  d: InstanceServiceDeps, tenant: Tenant, instance: Instance, change: InstanceChange, opts: { ifMatch?: string; audit: AuditFn },
): Promise<InstanceChangeResult> {
  const target = `${tenant.name}/${instance.name}`;
  return d.locks.run(instance.id, async () => {
    const cur = d.store.getInstanceById(instance.id);
    if (!cur) throw notFound('instance', target);
    checkIfMatch(opts.ifMatch, cur, `instance ${target}`);
    const { limits, config, changed } = diffInstance(cur, change);
    if (changed.length === 0) return { instance: cur, applied: {} };
    parseRestartPolicy(config);
    d.registry.validate(cur.level, { source: cur.source, limits, config: levelConfig(config) });
    const delta = { vcpus: limits.vcpus - cur.limits.vcpus, memoryMiB: limits.memoryMiB - cur.limits.memoryMiB, diskMiB: limits.diskMiB - cur.limits.diskMiB };
    checkQuota(tenant.quota, d.store.usage(tenant.id), delta);

    const applied: Record<string, Applied> = {};
    const forLevel = changed.filter((f) => f !== `config.${RESTART_KEY}`);
    if (changed.length > forLevel.length) applied[`config.${RESTART_KEY}`] = 'live';
    const spec = (i: Pick<Instance, 'limits' | 'config'>) => driverSpec({ id: cur.id, tenantId: cur.tenantId, name: cur.name, level: cur.level, source: cur.source, limits: i.limits, config: i.config });
    let reconfigure: ((s: ReturnType<typeof spec>, f: readonly string[]) => Promise<Record<string, Applied>>) | null = null;
    if (forLevel.length > 0) {
      const driver = d.registry.forLevel(cur.level);
      if (!driver.reconfigure) {
        throw new StrataError('STRATA_ERR_UNSUPPORTED', `the ${cur.level} level cannot change ${forLevel.join(', ')} of an instance; delete and launch it again`, {
          level: cur.level, fields: forLevel,
        });
      }
      // Until its driver has made it there is nothing to give the new spec to (the launch would make it from the old one).
      if (cur.actualState === 'creating') throw new InvalidStateTransition('creating', 'creating', 'change');
      reconfigure = driver.reconfigure.bind(driver);
      Object.assign(applied, await reconfigure(spec({ limits, config }), forLevel));
    }
    try {
      const updated = d.store.transaction(() => {
        checkQuota(tenant.quota, d.store.usage(tenant.id), delta);
        const next = d.store.updateInstance(cur.id, { limits, config });
        opts.audit({
          action: 'instance.update', target, tenantId: tenant.id,
          details: { changed: Object.fromEntries(changed.map((f) => [f, f.startsWith('limits.') ? limits[f.slice(7) as keyof InstanceLimits] : config[f.slice(7)] ?? null])), applied },
        });
        return next;
      });
      d.events.publish('lifecycle', 'instance.updated', tenant.id, { instance: cur.name, id: cur.id, level: cur.level, applied });
      return { instance: updated, applied };
    } catch (e) {
      if (reconfigure) await reconfigure(spec(cur), forLevel).catch(() => undefined);
      throw e;
    }
  });
}
