/**
 * Who owns which host ids and addresses. Each tenant gets, once and for good, an
 * index n: host uids/gids idBase + n×65536 … +65535 (its user namespace range)
 * and the /24 a.b.n.0 of the driver's /16 (its bridge holds .1, instances .2–.254).
 * Indexes are never reused, so no later tenant inherits files or addresses that
 * once belonged to another.
 *
 * The store has no IPAM table yet; until it does, this is one JSON file in the
 * driver's state dir, written atomically.
 */
import { join } from 'node:path';
import { StrataError } from '../../core/errors.js';
import { IDS_PER_TENANT, MAX_TENANTS, type OsDriverConfig } from './options.js';
import { readJson, updateJson } from './state-file.js';

export interface TenantLimits {
  vcpus: number;
  memoryMiB: number;
  pids: number;
}

interface AllocationFile {
  version: 1;
  tenants: Record<string, { index: number; limits?: TenantLimits }>;
  /** instance id → its tenant and IPv4 address. */
  addresses: Record<string, { tenantId: string; address: string }>;
}

export interface TenantAllocation {
  tenantId: string;
  index: number;
  /** First host uid and gid of the tenant's range. */
  hostId: number;
  idCount: number;
  /** The tenant's bridge address (the instances' gateway), e.g. 10.88.3.1. */
  gateway: string;
  prefixLength: 24;
  limits?: TenantLimits;
}

const empty = (): AllocationFile => ({ version: 1, tenants: {}, addresses: {} });

export class Allocations {
  readonly #path: string;
  readonly #subnetPrefix: string;

  constructor(private readonly config: Pick<OsDriverConfig, 'stateDir' | 'subnet' | 'idBase'>) {
    this.#path = join(config.stateDir, 'allocations.json');
    this.#subnetPrefix = config.subnet.split('.').slice(0, 2).join('.');
  }

  /** The tenant's allocation, made on first use. */
  tenant(tenantId: string): Promise<TenantAllocation> {
    return updateJson(this.#path, empty, (file) => this.#describe(tenantId, this.#ensureTenant(file, tenantId)));
  }

  /** The tenant's allocation if it has one; never allocates. */
  async existingTenant(tenantId: string): Promise<TenantAllocation | null> {
    const entry = (await readJson<AllocationFile>(this.#path))?.tenants[tenantId];
    return entry ? this.#describe(tenantId, entry) : null;
  }

  async setTenantLimits(tenantId: string, limits: TenantLimits | undefined): Promise<TenantAllocation> {
    return updateJson(this.#path, empty, (file) => {
      const entry = this.#ensureTenant(file, tenantId);
      if (limits) entry.limits = limits;
      else delete entry.limits;
      return this.#describe(tenantId, entry);
    });
  }

  /** The instance's address in its tenant's /24: the one it had, else the lowest free one. */
  address(instanceId: string, tenantId: string): Promise<string> {
    return updateJson(this.#path, empty, (file) => {
      const existing = file.addresses[instanceId];
      if (existing && existing.tenantId === tenantId) return existing.address;
      const { index } = this.#ensureTenant(file, tenantId);
      const taken = new Set(Object.values(file.addresses).filter((a) => a.tenantId === tenantId).map((a) => a.address));
      for (let host = 2; host <= 254; host++) {
        const address = `${this.#subnetPrefix}.${index}.${host}`;
        if (!taken.has(address)) {
          file.addresses[instanceId] = { tenantId, address };
          return address;
        }
      }
      throw new StrataError('STRATA_ERR_QUOTA_EXCEEDED', `tenant '${tenantId}' has no free address left in its /24`, { tenantId, resource: 'addresses' });
    });
  }

  releaseAddress(instanceId: string): Promise<void> {
    return updateJson(this.#path, empty, (file) => {
      delete file.addresses[instanceId];
    });
  }

  /** Instance ids holding an address, per tenant: tells whether a tenant still has instances. */
  async instancesOf(tenantId: string): Promise<string[]> {
    const file = await readJson<AllocationFile>(this.#path);
    return Object.entries(file?.addresses ?? {}).filter(([, a]) => a.tenantId === tenantId).map(([id]) => id);
  }

  #ensureTenant(file: AllocationFile, tenantId: string): AllocationFile['tenants'][string] {
    const existing = file.tenants[tenantId];
    if (existing) return existing;
    const index = Object.keys(file.tenants).length;
    if (index >= MAX_TENANTS) {
      throw new StrataError('STRATA_ERR_QUOTA_EXCEEDED', `the os level's address plan ${this.config.subnet} holds ${MAX_TENANTS} tenants and all are taken`, {
        resource: 'tenants', subnet: this.config.subnet,
      });
    }
    const entry = { index };
    file.tenants[tenantId] = entry;
    return entry;
  }

  #describe(tenantId: string, entry: AllocationFile['tenants'][string]): TenantAllocation {
    return {
      tenantId,
      index: entry.index,
      hostId: this.config.idBase + entry.index * IDS_PER_TENANT,
      idCount: IDS_PER_TENANT,
      gateway: `${this.#subnetPrefix}.${entry.index}.1`,
      prefixLength: 24,
      ...(entry.limits ? { limits: entry.limits } : {}),
    };
  }
}
