/**
 * The os level as a module: containers through runc (`driver.ts`). Its levers
 * are the container's own cgroup (CPU) and host-side veth (network); the guard
 * baselines the critical files of its root filesystem, mounted on the host.
 */
import { join } from 'node:path';
import type { Instance } from '../../store/types.js';
import type { LevelDriver } from '../driver.js';
import type { InstanceLevers, LevelModule } from '../module.js';
import { Cgroups, detectCgroupMode, instanceCgroupPath } from './cgroups.js';
import { OsDriver } from './driver.js';
import { parseOsInput } from './instance-config.js';
import { Network } from './network.js';

/** Critical files of a container, as it sees them: image binaries and libraries, config, and the usual homes of app code and web content. */
export const OS_CRITICAL_FILES = ['/bin/**', '/sbin/**', '/usr/**', '/lib/**', '/lib64/**', '/etc/**', '/www/**', '/app/**', '/srv/**', '/var/www/**', '/opt/**'];

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
    generation: (i) => driver.identities.current(i.id)?.generation ?? null,
    snapshotsMemory: false,
  };
}

export const osLevel: LevelModule<OsDriver> = {
  id: 'os',
  driver: (ctx) => new OsDriver({ stateDir: join(ctx.dataDir, 'os'), ...(ctx.gatewayPorts ? { hostPorts: ctx.gatewayPorts } : {}) }),
  owns: (driver: LevelDriver): driver is OsDriver => driver instanceof OsDriver,
  validate: (input) => { parseOsInput(input); },
  levers: osLevers,
};
