/**
 * The vm and emu levels as modules: QEMU guests (`driver.ts`), under KVM or
 * TCG (vm) or always emulated (emu). The guard reaches a VM from outside: its
 * cgroup (CPU), its NIC's link over QMP (network), its kernel's text in guest
 * memory (introspection), and interceptors over QMP events, the tenant bridge's
 * firewall counters and QEMU's CPU and memory — one set for both levels.
 */
import { basename, dirname, join } from 'node:path';
import type { Instance } from '../../store/types.js';
import type { Level } from '../ids.js';
import type { LevelDriver } from '../driver.js';
import type { InstanceLevers, InterceptorSource, KernelWatch, LevelContext, LevelModule } from '../module.js';
import { vmCgroup } from './cgroup.js';
import { GUEST_ARCHES, type GuestArch } from './cmdline.js';
import { EmuDriver, NETWORK_DEFAULTS, VmDriver } from './driver.js';
import { VmNetworkInterceptor } from './guard/network.js';
import { KernelTextWatch, QmpInterceptor, kernelTextRegion, type KernelTextRegion } from './guard/qmp.js';
import { VmResourceInterceptor } from './guard/resources.js';
import { cachedTargets, vmCgroupName, vmTargets } from './guard/targets.js';
import { DEFAULT_IMAGE_ROOT, findImage, hostArch } from './images.js';
import { parseQemuInput } from './options.js';
import { liveQmpClient, liveQmpSockets, tapQmpEvents } from './qmp.js';

type QemuDriver = VmDriver | EmuDriver;

/** The open monitor connection to a running VM, found by its socket (`…/<id>/run/qmp.sock`). */
function monitorOf(i: Instance): { socket: string; client: NonNullable<ReturnType<typeof liveQmpClient>> } | null {
  const socket = liveQmpSockets().find((p) => p.endsWith(`/${i.id}/run/qmp.sock`));
  const client = socket ? liveQmpClient(socket) : undefined;
  return socket && client ? { socket, client } : null;
}

/**
 * CPU through the VM's own cgroup (`strata-vm/<level>-<id>`), the network
 * through QMP `set_link` on its NIC's netdev (`net0`), over the driver's own
 * monitor connection; the kernel text read with QMP `pmemsave`.
 */
function qemuLevers(driver: QemuDriver): InstanceLevers {
  const cgroupOf = (i: Instance) => vmCgroup(vmCgroupName(driver.level, i.id));
  const linkState = new Map<string, boolean>();
  /** kernel image → where its text is; read once per image. */
  const regions = new Map<string, Promise<KernelTextRegion | null>>();
  return {
    tree: () => null,
    setCpu: (i, vcpus) => cgroupOf(i).setCpu(vcpus),
    cpu: (i) => cgroupOf(i).cpuLimit(),
    setNetwork: async (i, up) => {
      const monitor = monitorOf(i);
      if (!monitor) throw new Error(`no monitor connection to ${i.name}`);
      await monitor.client.execute('set_link', { name: 'net0', up });
      linkState.set(i.id, up);
    },
    // QMP has no query for a link's state; what the guard last set is what it is.
    network: async (i) => linkState.get(i.id) ?? null,
    snapshotsMemory: true,
    async kernelWatch(i): Promise<KernelWatch | 'unmapped' | null> {
      const monitor = monitorOf(i);
      const arch = typeof i.config.arch === 'string' ? i.config.arch : hostArch();
      const image = arch === 'x86_64' || arch === 'aarch64' ? findImage(DEFAULT_IMAGE_ROOT, arch) : null;
      if (!monitor || !image || 'missing' in image) return null;
      let region = regions.get(image.kernel);
      if (!region) regions.set(image.kernel, (region = kernelTextRegion(image.kernel).catch(() => null)));
      const r = await region;
      if (!r) return 'unmapped';
      // QEMU writes the dump into its run dir; the baseline stays in the instance's dir, which only the daemon writes.
      const runDir = join(monitor.socket, '..');
      const watch = new KernelTextWatch(monitor.client, r, join(runDir, 'kernel-text.dump'), join(runDir, '..', 'kernel-text.baseline'));
      return {
        baseline: async () => { await watch.baseline(); },
        check: async () => KernelTextWatch.event({ tenantId: i.tenantId, instanceId: i.id, level: driver.level }, await watch.check()),
      };
    },
  };
}

/** One set over every QEMU level's drivers: QMP events, the bridge firewall's refusals, QEMU's CPU and memory. */
const qemuInterceptors: InterceptorSource<QemuDriver> = {
  interceptors(drivers, { store, log }) {
    const targets = cachedTargets(() => vmTargets(store, drivers), 5_000);
    return [
      // QMP events of every VM, by the instance whose run dir holds the monitor socket (…/<id>/run/qmp.sock).
      new QmpInterceptor(tapQmpEvents, (path) => {
        const i = store.getInstanceById(basename(dirname(dirname(path))));
        const driver = i && drivers.find((d) => d.level === i.level);
        return i && driver ? { tenantId: i.tenantId, instanceId: i.id, level: driver.level } : null;
      }),
      new VmNetworkInterceptor({ targets, log: (message, details) => log.warn(details ?? {}, message) }),
      new VmResourceInterceptor({ targets }),
    ];
  },
};

function qemuModule<D extends QemuDriver>(level: D['level'], arches: readonly GuestArch[], make: (ctx: LevelContext) => D, owns: (d: LevelDriver) => d is D): LevelModule<D> {
  return {
    id: level,
    driver: make,
    owns,
    validate: (input) => { parseQemuInput(input.config, level, arches); },
    levers: qemuLevers,
    interceptors: qemuInterceptors as InterceptorSource<D>,
  };
}

const network = (ctx: LevelContext, level: keyof typeof NETWORK_DEFAULTS) => ({
  ...(ctx.network ?? NETWORK_DEFAULTS[level]), ...(ctx.gatewayPorts ? { hostPorts: ctx.gatewayPorts } : {}),
});

const host = hostArch();

export const vmLevel = qemuModule<VmDriver>('vm', host ? [host] : [],
  (ctx) => new VmDriver({ stateDir: join(ctx.dataDir, 'vm'), network: network(ctx, 'vm') }),
  (d): d is VmDriver => d instanceof VmDriver);

export const emuLevel = qemuModule<EmuDriver>('emu', GUEST_ARCHES,
  (ctx) => new EmuDriver({ stateDir: join(ctx.dataDir, 'emu'), network: network(ctx, 'emu') }),
  (d): d is EmuDriver => d instanceof EmuDriver);
