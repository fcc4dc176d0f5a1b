/**
 * The levels the product runs with: the one list of level modules. `strata up`
 * registers a driver of each; the registry (`registry.ts`) asks these modules
 * about every driver registered. A new level adds its module here, and its id
 * to `ids.ts`.
 * Every driver keeps its per-instance state under the daemon's data dir.
 */
import type { LevelDriver } from './driver.js';
import { LEVEL_IDS } from './ids.js';
import type { LevelModule } from './module.js';
import { checkDistinctPlans, type NetworkPlan } from './network-option.js';
import { envLevel } from './env/module.js';
import { osLevel } from './os/module.js';
import { emuLevel, vmLevel } from './vm/module.js';
import { NETWORK_DEFAULTS } from './vm/driver.js';

export const LEVEL_MODULES: readonly LevelModule[] = [envLevel, osLevel, vmLevel, emuLevel];

// `ids.ts` names these modules for what must not load them; the two lists cannot drift apart.
if (LEVEL_MODULES.map((m) => m.id).join() !== LEVEL_IDS.join()) {
  throw new Error(`levels/ids.ts lists ${LEVEL_IDS.join(', ')}, the registry's modules are ${LEVEL_MODULES.map((m) => m.id).join(', ')}`);
}

/** The level whose instances serve static docroots through the gateway: the guard files their integrity events under it. */
export const STATIC_SITE_LEVEL = envLevel.id;

/** The level a request for images, or a rule's test event, is about when it names none. */
export const DEFAULT_LEVEL = osLevel.id;

/**
 * `gatewayPorts`: the front door's ports on the host, the only host ports containers and VMs may reach.
 * `vmNetwork`, `emuNetwork`: the levels' network plans; two daemons on one machine need apart ones.
 */
export function productDrivers(dataDir: string, opts: { gatewayPorts?: number[]; vmNetwork?: NetworkPlan; emuNetwork?: NetworkPlan } = {}): LevelDriver[] {
  const vmNetwork = opts.vmNetwork ?? NETWORK_DEFAULTS.vm;
  const emuNetwork = opts.emuNetwork ?? NETWORK_DEFAULTS.emu;
  checkDistinctPlans([['--vm-network', vmNetwork], ['--emu-network', emuNetwork]]);
  const ctx = { dataDir, ...(opts.gatewayPorts ? { gatewayPorts: opts.gatewayPorts } : {}) };
  return [
    envLevel.driver(ctx),
    osLevel.driver(ctx),
    vmLevel.driver({ ...ctx, network: vmNetwork }),
    emuLevel.driver({ ...ctx, network: emuNetwork }),
  ];
}
