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
import { EmuDriver, NETWORK_DEFAULTS, VmDriver } from './vm/index.js';


/**
 * `gatewayPorts`: the front door's ports on the host, the only host ports containers and VMs may reach.
 * `vmNetwork`, `emuNetwork`: the levels' network plans; two daemons on one machine need apart ones.
 */
export function productDrivers(dataDir: string, opts: { gatewayPorts?: number[]; vmNetwork?: NetworkPlan; emuNetwork?: NetworkPlan } = {}): LevelDriver[] {
  const vmNetwork = opts.vmNetwork ?? NETWORK_DEFAULTS.vm;
  const emuNetwork = opts.emuNetwork ?? NETWORK_DEFAULTS.emu;
  checkDistinctPlans([['--vm-network', vmNetwork], ['--emu-network', emuNetwork]]);
  const hostPorts = opts.gatewayPorts ? { hostPorts: opts.gatewayPorts } : {};
  return [
    new EnvDriver({ stateDir: join(dataDir, 'env') }),
    new OsDriver({ stateDir: join(dataDir, 'os'), ...(opts.gatewayPorts ? { hostPorts: opts.gatewayPorts } : {}) }),
    new VmDriver({ stateDir: join(dataDir, 'vm'), network: { ...vmNetwork, ...hostPorts } }),
    new EmuDriver({ stateDir: join(dataDir, 'emu'), network: { ...emuNetwork, ...hostPorts } }),
  ];
}
