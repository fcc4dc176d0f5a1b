/**
 * The level drivers the product runs with. `strata up` registers exactly these.
 * Each level issue (env, os, vm, emu) adds its driver to this list — and only here.
 * Every driver keeps its per-instance state under the daemon's data dir.
 */
import { join } from 'node:path';
import type { LevelDriver } from './driver.js';
import { EnvDriver } from './env/index.js';
import { OsDriver } from './os/driver.js';
import { EmuDriver, VmDriver } from './vm/index.js';

/** `gatewayPorts`: the front door's ports on the host, the only host ports containers and VMs may reach. */
export function productDrivers(dataDir: string, opts: { gatewayPorts?: number[] } = {}): LevelDriver[] {
  return [
    new EnvDriver({ stateDir: join(dataDir, 'env') }),
    new OsDriver({ stateDir: join(dataDir, 'os'), ...(opts.gatewayPorts ? { hostPorts: opts.gatewayPorts } : {}) }),
    new VmDriver({ stateDir: join(dataDir, 'vm'), ...(opts.gatewayPorts ? { network: { hostPorts: opts.gatewayPorts } } : {}) }),
    new EmuDriver({ stateDir: join(dataDir, 'emu'), ...(opts.gatewayPorts ? { network: { hostPorts: opts.gatewayPorts } } : {}) }),
  ];
}
