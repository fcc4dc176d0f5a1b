/**
 * What the guard can reach of a live instance beyond the lifecycle calls every
 * driver has: the tree to baseline and watch, and the levers for throttle and
 * network cut. These are level facts (where a container's root is mounted,
 * which cgroup and veth are its), so they are asked of the driver here, in one
 * place; a level without levers simply gets none of these actions.
 */
import { join } from 'node:path';
import type { LevelDriver } from '../../levels/driver.js';
import { Cgroups, detectCgroupMode, instanceCgroupPath } from '../../levels/os/cgroups.js';
import { OsDriver } from '../../levels/os/driver.js';
import { Network } from '../../levels/os/network.js';
import { EmuDriver, VmDriver } from '../../levels/vm/driver.js';
import { EnvDriver } from '../../levels/env/driver.js';
import { liveQmpClient, liveQmpSockets } from '../../levels/vm/qmp.js';
import type { Instance } from '../../store/types.js';

/** Critical files of a container, as it sees them: image binaries and libraries, config, and the usual homes of app code and web content. */
export const OS_CRITICAL_FILES = ['/bin/**', '/sbin/**', '/usr/**', '/lib/**', '/lib64/**', '/etc/**', '/www/**', '/app/**', '/srv/**', '/var/www/**', '/opt/**'];

/** An instance's files as the guard baselines them. */
export interface InstanceTree {
  root: string;
  include: string[];
  /** Only these files are watched with inotify (others beside them change all the time). */
  files?: string[];
  /** Recovered by copying the known-good files back (not by a replacement). */
  keepCopies?: boolean;
}

export interface InstanceLevers {
  /** The tree the instance's files live in on the host, while it runs; null where the host cannot see them (a VM's disk). */
  tree(instance: Instance): InstanceTree | null;
  /** Caps the instance's CPU at `vcpus`. */
  setCpu(instance: Instance, vcpus: number): Promise<void>;
  /** Current CPU cap, in CPUs (null: none). */
  cpu(instance: Instance): Promise<number | null>;
  /** Cuts (false) or restores (true) the instance's network. */
  setNetwork(instance: Instance, up: boolean): Promise<void>;
  network(instance: Instance): Promise<boolean | null>;
}

export function leversFor(driver: LevelDriver): InstanceLevers | null {
  if (driver instanceof OsDriver) return osLevers(driver);
  if (driver instanceof VmDriver || driver instanceof EmuDriver) return vmLevers(driver.level);
  if (driver instanceof EnvDriver) return envLevers(driver);
  return null;
}

/**
 * env: the deployed handler (`code.js` in the instance's directory), kept as
 * known-good copies — the isolate runs the code the driver holds in memory, so
 * recovery puts the file a restart would load back. Isolates share host
 * processes: no CPU or network lever of their own.
 */
function envLevers(driver: EnvDriver): InstanceLevers {
  const none = (what: string) => async (): Promise<never> => { throw new Error(`the env level has no lever to ${what} one isolate`); };
  return {
    tree: (i) => ({ root: driver.instanceDir(i.id), include: ['/code.js'], files: ['code.js'], keepCopies: true }),
    setCpu: none('throttle'),
    cpu: async () => null,
    setNetwork: none('cut the network of'),
    network: async () => null,
  };
}

/**
 * vm / emu: CPU through the VM's own cgroup (`strata-vm/<level>-<id>`), the
 * network through QMP `set_link` on its NIC's netdev (`net0`), over the
 * driver's own monitor connection.
 */
function vmLevers(level: 'vm' | 'emu'): InstanceLevers {
  const cgroups = new Cgroups(detectCgroupMode(), 'strata-vm');
  const cgroupOf = (i: Instance): string => `/strata-vm/${level}-${i.id}`;
  const qmpOf = (i: Instance) => {
    const socket = liveQmpSockets().find((p) => p.endsWith(`/${i.id}/run/qmp.sock`));
    const client = socket ? liveQmpClient(socket) : undefined;
    if (!client) throw new Error(`no monitor connection to ${i.name}`);
    return client;
  };
  const linkState = new Map<string, boolean>();
  return {
    tree: () => null,
    setCpu: (i, vcpus) => cgroups.setCpuLimit(cgroupOf(i), vcpus),
    cpu: (i) => cgroups.cpuLimit(cgroupOf(i)),
    setNetwork: async (i, up) => {
      await qmpOf(i).execute('set_link', { name: 'net0', up });
      linkState.set(i.id, up);
    },
    // QMP has no query for a link's state; what the guard last set is what it is.
    network: async (i) => linkState.get(i.id) ?? null,
  };
}

function osLevers(driver: OsDriver): InstanceLevers {
  const { runRoot, cgroupRoot, tag, hostPorts } = driver.config;
  const cgroups = new Cgroups(detectCgroupMode(), cgroupRoot);
  const network = new Network({ tag, hostPorts });
  const cgroupOf = (i: Instance): string => instanceCgroupPath(cgroupRoot, i.tenantId, i.id);
  return {
    tree: (i) => ({ root: join(runRoot, 'rootfs', i.id), include: OS_CRITICAL_FILES }),
    setCpu: (i, vcpus) => cgroups.setCpuLimit(cgroupOf(i), vcpus),
    cpu: (i) => cgroups.cpuLimit(cgroupOf(i)),
    setNetwork: (i, up) => network.setLink(network.hostVethName(i.id), up),
    network: (i) => network.linkUp(network.hostVethName(i.id)),
  };
}
