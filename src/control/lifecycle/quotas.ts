/**
 * Quotas are a tenant's service level agreement. Checks here are pure; callers
 * run them inside the same store transaction as the change they guard, so two
 * concurrent creates can never both squeeze under the limit.
 */
import { StrataError } from '../../core/errors.js';
import type { Quota, Usage } from '../../store/types.js';

export const QUOTA_RESOURCES = ['instances', 'vcpus', 'memoryMiB', 'diskMiB', 'sites'] as const satisfies readonly (keyof Quota)[];

/** What a new tenant gets unless the provider says otherwise. */
export const DEFAULT_QUOTA: Quota = { instances: 10, vcpus: 8, memoryMiB: 8192, diskMiB: 20480, sites: 20 };

/** Throws STRATA_ERR_QUOTA_EXCEEDED naming the first resource that `delta` would push past `quota`. */
export function checkQuota(quota: Quota, usage: Usage, delta: Partial<Usage>): void {
  for (const r of QUOTA_RESOURCES) {
    const add = delta[r] ?? 0;
    if (add > 0 && usage[r] + add > quota[r]) {
      throw new StrataError('STRATA_ERR_QUOTA_EXCEEDED', `quota exceeded: ${r} ${usage[r]} + ${add} > ${quota[r]}`, {
        resource: r,
        limit: quota[r],
        used: usage[r],
        requested: add,
      });
    }
  }
}

/** A quota may not be lowered below what the tenant already uses. */
export function checkQuotaCoversUsage(quota: Quota, usage: Usage): void {
  for (const r of QUOTA_RESOURCES) {
    if (quota[r] < usage[r]) {
      throw new StrataError('STRATA_ERR_QUOTA_BELOW_USAGE', `quota for ${r} (${quota[r]}) is below usage (${usage[r]})`, {
        resource: r,
        limit: quota[r],
        used: usage[r],
      });
    }
  }
}
