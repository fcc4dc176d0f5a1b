/**
 * The level drivers the product runs with. `strata up` registers exactly these.
 * Each level issue (env, os, vm, emu) adds its driver to this list — and only here.
 * Every driver keeps its per-instance state under the daemon's data dir.
 */
import { join } from 'node:path';
import type { LevelDriver } from './driver.js';
import { checkDistinctPlans, type NetworkPlan } from './network-option.js';
import { EnvDriver } from './env/index.js';
import { OsDriver } from './os/driver.js';
import { EmuDriver, VmDriver } from './vm/index.js';

/** The vm and emu network plans a daemon runs with unless told otherwise (`strata up --vm-network`, `--emu-network`). */
export const DEFAULT_NETWORKS: Readonly<Record<'vm' | 'emu', NetworkPlan>> = { vm: { tag: 'sv', subnet: '10.89.0.0/16' }, emu: { tag: 'se', subnet: '10.90.0.0/16' } };

/**
 * `gatewayPorts`: the front door's ports on the host, the only host ports containers and VMs may reach.
 * `vmNetwork`, `emuNetwork`: the levels' network plans; two daemons on one machine need apart ones.
 */
export function productDrivers(dataDir: string, opts: { gatewayPorts?: number[]; vmNetwork?: NetworkPlan; emuNetwork?: NetworkPlan } = {}): LevelDriver[] {
  const vmNetwork = opts.vmNetwork ?? DEFAULT_NETWORKS.vm;
  const emuNetwork = opts.emuNetwork ?? DEFAULT_NETWORKS.emu;
  checkDistinctPlans([['--vm-network', vmNetwork], ['--emu-network', emuNetwork]]);
  const hostPorts = opts.gatewayPorts ? { hostPorts: opts.gatewayPorts } : {};
  return [
    new EnvDriver({ stateDir: join(dataDir, 'env') }),
    new OsDriver({ stateDir: join(dataDir, 'os'), ...(opts.gatewayPorts ? { hostPorts: opts.gatewayPorts } : {}) }),
    new VmDriver({ stateDir: join(dataDir, 'vm'), network: { ...vmNetwork, ...hostPorts } }),
    new EmuDriver({ stateDir: join(dataDir, 'emu'), network: { ...emuNetwork, ...hostPorts } }),
  ];
}
