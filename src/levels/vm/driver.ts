/**
 * The `vm` and `emu` level drivers: one QEMU implementation, two policies.
 *
 * - `VmDriver` (`vm.qemu`): guests of the host's architecture, on KVM when a
 *   probe guest boots under it (`accel.ts`), else TCG, with the reason.
 * - `EmuDriver` (`emu.qemu`): any guest architecture (x86_64, aarch64), always TCG.
 *
 * A VM is a direct-kernel boot of the shared guest image (Debian kernel +
 * busybox initramfs), whose /init starts the tenant's service. QEMU is launched
 * with vCPUs held (`-S`) and driven over QMP: `cont` to run, `stop`/`cont` to
 * pause and resume, `system_powerdown` → `quit` → SIGKILL to stop, `migrate` to
 * snapshot memory and devices, `-incoming` to restore. Each QEMU runs in its own
 * cgroup, unprivileged, under `-sandbox` (see `launch.ts`, `cgroup.ts`).
 * Each VM has a tap on its tenant's bridge and an address from the tenant's /24
 * (`network.ts`, the os level's design): `info.address` is where the gateway
 * reaches the guest's service. A disk is a qcow2 overlay over a shared base
 * (`disk.ts`). Clones resume a snapshot's memory and take a new identity from
 * fw_cfg; `moveIn`/`moveOut` live-migrate a VM between two drivers (`mirror.ts`
 * for its disk).
 *
 * On disk, per instance (`<stateDir>/instances/<id>/`):
 *   instance.json        spec, parsed config, pending restore, facts of the last launch
 *   qemu.log             QEMU's own stderr
 *   console.log(.N)      the serial console, written by the daemon's relay: rotated, size-capped (`console.ts`)
 *   run/                 owned by the VM user: qmp.sock, qemu.pid, console.sock (serial)
 *   disk.qcow2           the instance's disk: a qcow2 overlay over the shared base (when diskMiB > 0)
 *   snapshots/<sid>/     manifest.json, memory.bin (the migration stream), disk.qcow2
 * QEMU outlives a daemon crash; `list()` finds it again through the pidfile and
 * /proc, also when the instance directory is gone (an orphan).
 */
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, openSync } from 'node:fs';
import { chmod, chown, mkdir, readFile, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidStateTransition, StrataError, notFound } from '../../core/errors.js';
import type { InstanceInfo } from '../../core/instance-facts.js';
import type { Applied, DriverAvailability, DriverOperation, InstanceSpec, InstanceUsage, LevelDriver, LogOptions, ObservedInstance, SnapshotResult } from '../driver.js';
import { logStream } from '../log-stream.js';
import type { Duplex, Readable } from 'node:stream';
import { chooseAccelerator } from './accel.js';
import { createVmCgroup, removeVmCgroup } from './cgroup.js';
import { MACHINE_RAM_MIB, QEMU_BINARY, buildCommandLine, guestIdentity, type GuestIdentity, kernelCommandLine, validateCommandLine, type Accelerator, type GuestArch } from './cmdline.js';
import { QUERY_TIMEOUT_MS, QemuConnections, type QueryStatus } from './connections.js';
import { CONSOLE_LOG_DEFAULTS, type ConsoleLogLimits } from './console-log.js';
import { baseDiskPath, copyDisk, createOverlay, giveTo, wantsDisk } from './disk.js';
import { DEFAULT_IMAGE_ROOT, findImage, hostArch, hostTscKhz, type GuestImage } from './images.js';
import { SAFE_ID, VmFiles, checkId, type InstanceRecord } from './instance-files.js';
import { findQemus, isQemu, killQemu, launchQemu, vmUser, waitForExit, type VmUser } from './launch.js';
import { receiveMove, sendMove } from './move.js';
import { parseQemuInput } from './options.js';
import { checkVmLimits, reconfigureVm } from './reconfigure.js';
import { VmNetwork, grantTunAccess, macFor } from './network.js';
import { awaitIncoming, awaitReidentified, cloneSnapshot, restoreSnapshot, takeSnapshot, type VmContext } from './snapshots.js';
import { vmUsage } from './stats.js';

export interface QemuDriverOptions {
  /** Default `/var/lib/strata/<level>`. */
  stateDir?: string;
  /** Default `/var/lib/strata/images/vm`. */
  imageRoot?: string;
  /** KVM probe timeout (vm only). Default 3 s. */
  probeTimeoutMs?: number;
  /** Time QEMU has to open its QMP socket, and a restore to load. Default 30 s. */
  startTimeoutMs?: number;
  /**
   * Names and address plan of the tenant networks (see `network.ts`). Defaults:
   * vm tag `sv`, subnet 10.89.0.0/16; emu `se`, 10.90.0.0/16; hostPorts [80, 443].
   * Two drivers on one machine must differ in tag and subnet.
   */
  network?: { tag?: string; subnet?: string; hostPorts?: readonly number[] };
  /** Size cap of each VM's serial log (see `console-log.ts`). Default 1 MiB per file, 2 rotated files kept. */
  consoleLog?: Partial<ConsoleLogLimits>;
}

/** The vm and emu network plans a daemon runs with unless told otherwise (`strata up --vm-network`, `--emu-network`). */
export const NETWORK_DEFAULTS = { vm: { tag: 'sv', subnet: '10.89.0.0/16' }, emu: { tag: 'se', subnet: '10.90.0.0/16' } } as const;

/** How long `quit` may take before SIGKILL. */
const QUIT_WAIT_MS = 2_000;
const PAUSED_STATUSES = new Set(['paused', 'postmigrate', 'prelaunch', 'suspended', 'inmigrate', 'finish-migrate', 'save-vm', 'restore-vm', 'debug', 'colo']);

abstract class QemuDriver implements LevelDriver {
  abstract readonly id: string;
  abstract readonly level: 'vm' | 'emu';
  readonly supports: ReadonlySet<DriverOperation> = new Set<DriverOperation>(['pause', 'resume', 'snapshot', 'restore', 'clone', 'move', 'logs', 'console']);

  protected readonly stateDir: string;
  protected readonly imageRoot: string;
  protected readonly probeTimeoutMs: number | undefined;
  readonly #startTimeoutMs: number;
  protected readonly images = new Map<GuestArch, GuestImage>();
  protected accel: { accelerator: Accelerator; reason: string } = { accelerator: 'tcg', reason: 'not provisioned' };
  #user: VmUser | null = null;
  protected readonly network: VmNetwork;
  readonly #locks = new Map<string, Promise<unknown>>();
  readonly #files: VmFiles;
  /** QMP and the serial console of each running VM (the daemon's end: it logs and relays the console). */
  readonly #conn: QemuConnections;
  readonly #consoleLimits: ConsoleLogLimits;

  constructor(level: 'vm' | 'emu', o: QemuDriverOptions) {
    this.stateDir = o.stateDir ?? `/var/lib/strata/${level}`;
    this.imageRoot = o.imageRoot ?? DEFAULT_IMAGE_ROOT;
    this.probeTimeoutMs = o.probeTimeoutMs;
    this.#startTimeoutMs = o.startTimeoutMs ?? 30_000;
    this.#consoleLimits = { ...CONSOLE_LOG_DEFAULTS, ...o.consoleLog };
    this.#files = new VmFiles(this.stateDir);
    this.#conn = new QemuConnections(this.#files, this.#consoleLimits, this.#startTimeoutMs);
    this.network = new VmNetwork({
      tag: o.network?.tag ?? NETWORK_DEFAULTS[level].tag,
      subnet: o.network?.subnet ?? NETWORK_DEFAULTS[level].subnet,
      hostPorts: o.network?.hostPorts ?? [80, 443],
      stateDir: this.stateDir,
    });
  }

  /** Guest architectures this driver runs. */
  protected abstract arches(): GuestArch[];
  /** Chooses the accelerator once the images are known; returns the availability reason. */
  protected abstract chooseAccelerator(): Promise<string>;

  async provision(): Promise<DriverAvailability> {
    if (process.getuid?.() !== 0) return { available: false, reason: 'needs root (cgroups, dropping to the VM user)' };
    this.#user = vmUser();
    if (!this.#user) return { available: false, reason: 'no unprivileged user for QEMU (strata-vm or nobody)' };
    const tun = await grantTunAccess(this.#user);
    if (tun) return { available: false, reason: tun };
    const missing: string[] = [];
    for (const arch of this.arches()) {
      const image = findImage(this.imageRoot, arch);
      const binary = `/usr/bin/${QEMU_BINARY[arch]}`;
      if (!(await stat(binary).catch(() => null))) missing.push(`${binary} is not installed`);
      else if ('missing' in image) missing.push(image.missing);
      else this.images.set(arch, image);
    }
    if (this.images.size === 0) return { available: false, reason: missing.join('; ') || 'no guest architecture on this host' };
    await mkdir(join(this.stateDir, 'instances'), { recursive: true, mode: 0o711 });
    // The VM user only traverses these (to its run/ directories): it can list nothing.
    for (const dir of [this.stateDir, join(this.stateDir, 'instances')]) await chmod(dir, 0o711);
    const reason = await this.chooseAccelerator();
    // Taps that outlived the last daemon keep passing their VM's frames (the MAC filter may be new to them).
    if (process.getuid?.() === 0) {
      const plugged = [];
      for (const id of await readdir(this.#files.instancesDir()).catch(() => [] as string[])) {
        const tap = (await this.#files.load(id).catch(() => null))?.network?.tap;
        if (tap && this.network.isPlugged(tap)) plugged.push({ tap, mac: macFor(id) });
      }
      await this.network.allowMacs(plugged);
    }
    // VMs that outlived the last daemon: their consoles are logged again from now on.
    for (const { cmdline } of await findQemus(`${this.#files.instancesDir()}/`)) {
      const id = this.#files.idFromCmdline(cmdline);
      if (id && SAFE_ID.test(id)) await this.#conn.console(id).catch(() => null);
    }
    const lacking = missing.length ? ` (unavailable: ${missing.join('; ')})` : '';
    return { available: true, reason: `${reason}; guests: ${[...this.images.keys()].join(', ')}${lacking}` };
  }

  create(spec: InstanceSpec): Promise<void> {
    return this.#serial(spec.id, () => this.#create(spec));
  }

  start(id: string): Promise<void> {
    return this.#serial(id, () => this.#start(id));
  }

  stop(id: string, opts: { graceMs: number }): Promise<void> {
    return this.#serial(id, () => this.#stop(id, opts.graceMs));
  }

  pause(id: string): Promise<void> {
    return this.#serial(id, async () => { await (await this.#conn.running(id)).execute('stop'); });
  }

  resume(id: string): Promise<void> {
    return this.#serial(id, async () => { await (await this.#conn.running(id)).execute('cont'); });
  }

  snapshot(id: string, snapshotId: string): Promise<SnapshotResult> {
    return this.#serial(id, () => takeSnapshot(this.#ctx(), id, snapshotId));
  }

  restore(id: string, snapshotId: string): Promise<void> {
    return this.#serial(id, () => restoreSnapshot(this.#ctx(), id, snapshotId));
  }

  clone(spec: InstanceSpec, from: { instanceId: string; snapshotId: string }): Promise<void> {
    return this.#serial(spec.id, () => cloneSnapshot(this.#ctx(), spec, from, (disk) => this.#create(spec, disk), (id) => this.#delete(id)));
  }

  /** Everything from the next start: no memory balloon here (`reconfigure.ts`). */
  reconfigure(spec: InstanceSpec, changed: readonly string[]): Promise<Record<string, Applied>> {
    return this.#serial(spec.id, () => reconfigureVm(this.#files, this.level, this.arches(), spec, changed));
  }

  delete(id: string): Promise<void> {
    return this.#serial(id, () => this.#delete(id));
  }

  inspect(id: string): Promise<ObservedInstance | null> {
    return this.#inspect(id);
  }

  /** The serial console log (everything the guest printed, across boots); a follower ends when the instance is deleted. */
  async logs(id: string, opts: LogOptions): Promise<Readable> {
    if (!(await this.#files.load(id))) throw notFound('instance', id);
    const dir = this.#files.dir(id);
    return logStream({ path: this.#files.consolePath(id), keep: this.#consoleLimits.keep, follow: opts.follow, ...(opts.tail !== undefined ? { tail: opts.tail } : {}), gone: () => !existsSync(dir) });
  }

  /** The guest's serial port, read and write (see `console.ts`); the VM must run. */
  async console(id: string): Promise<Duplex> {
    if (!(await this.#files.load(id))) throw notFound('instance', id);
    if (!(await this.#files.pid(id))) throw new InvalidStateTransition('stopped', 'running', 'attach to the console of');
    return (await this.#conn.console(id)).attach(id);
  }

  async list(): Promise<ObservedInstance[]> {
    const ids = new Set<string>(await readdir(this.#files.instancesDir()).catch(() => []));
    for (const { cmdline } of await findQemus(`${this.#files.instancesDir()}/`)) {
      const id = this.#files.idFromCmdline(cmdline);
      if (id) ids.add(id);
    }
    const seen = await Promise.all([...ids].filter((id) => SAFE_ID.test(id)).map((id) => this.#inspect(id)));
    return seen.filter((o): o is ObservedInstance => o !== null);
  }

  /**
   * Closes QMP connections. VMs keep running: a restarted daemon adopts them.
   * When the driver holds no instance any more, its taps, bridges and firewall table go too.
   */
  async cleanup(): Promise<void> {
    await this.#conn.closeAll();
    if (process.getuid?.() !== 0) return;
    const held = (await readdir(this.#files.instancesDir()).catch(() => [])).length + (await findQemus(`${this.#files.instancesDir()}/`)).length;
    if (held === 0) await this.network.removeAll();
  }

  // --- lifecycle --------------------------------------------------------------

  /** `diskFrom`: a qcow2 (a snapshot's) that becomes the disk, or 'bare' (a move's mirror target), instead of a fresh overlay. */
  async #create(spec: InstanceSpec, diskFrom?: string | 'bare'): Promise<void> {
    checkId(spec.id);
    const config = parseQemuInput(spec.config, this.level, this.arches());
    if (!this.images.has(config.arch)) throw new StrataError('STRATA_ERR_VALIDATION', `no ${config.arch} guest image on this machine`, { arch: config.arch });
    checkVmLimits(spec.limits);
    const disk = wantsDisk(spec.limits.diskMiB);
    if (await this.#files.pid(spec.id)) throw new StrataError('STRATA_ERR_CONFLICT', `instance ${spec.id} already runs`, { id: spec.id });
    const dir = this.#files.dir(spec.id);
    await mkdir(dir, { recursive: true, mode: 0o711 }); // the VM user traverses it to reach run/
    await chmod(dir, 0o711);
    await mkdir(join(dir, 'snapshots'), { recursive: true, mode: 0o700 });
    await mkdir(this.#files.runDir(spec.id), { recursive: true, mode: 0o700 });
    await chown(this.#files.runDir(spec.id), this.#vmUser().uid, this.#vmUser().gid);
    if (disk && diskFrom === 'bare') await createOverlay(this.#files.diskPath(spec.id), baseDiskPath(this.imageRoot), spec.limits.diskMiB, this.#vmUser(), false);
    else if (disk && diskFrom) {
      await copyDisk(diskFrom, this.#files.diskPath(spec.id));
      await giveTo(this.#files.diskPath(spec.id), this.#vmUser());
    } else if (disk) await createOverlay(this.#files.diskPath(spec.id), baseDiskPath(this.imageRoot), spec.limits.diskMiB, this.#vmUser());
    const network = await this.network.allocate(spec.id, spec.tenantId);
    await this.#files.save({ spec, config, createdAt: new Date().toISOString(), restoreFrom: null, network, launch: null });
  }

  /** `moveIn`: start as a move's receiver — wait for the stream on a socket, call `send` with it, then resume as this instance. */
  async #start(id: string, moveIn?: (socket: string) => Promise<void>): Promise<void> {
    const rec = await this.#files.load(id);
    if (!rec) throw notFound('instance', id);
    if (await this.#files.pid(id)) return;
    if (rec.next) {
      // A change made while it ran: this start runs it (saved with the launch's facts below).
      ({ spec: rec.spec, config: rec.config } = rec.next);
      delete rec.next;
    }
    await this.#upgrade(rec);
    const arch = rec.config.arch;
    const image = this.images.get(arch);
    if (!image) throw new StrataError('STRATA_ERR_DRIVER', `no ${arch} guest image`, { arch });
    await this.#files.clearRunFiles(id);
    const user = this.#vmUser();
    const cgroup = await createVmCgroup(this.#cgroupName(id), { ...rec.spec.limits, machineMiB: MACHINE_RAM_MIB[arch] });
    // The tap outlives stops (it costs spawns of `ip` that a restore should not wait for); delete removes it.
    if (!this.network.isPlugged(rec.network.tap)) await this.network.plug(rec.network, macFor(id), user);
    const snapshot = rec.restoreFrom ? await this.#files.manifest(id, rec.restoreFrom) : null;
    const incomingFd = snapshot?.memory ? openSync(join(this.#files.snapshotDir(id, rec.restoreFrom!), snapshot.memory.file), 'r') : undefined;
    const logFd = openSync(join(this.#files.dir(id), 'qemu.log'), 'a', 0o600);
    const identity: GuestIdentity = {
      addressCidr: `${rec.network.address}/${rec.network.prefixLength}`, hostname: guestHostname(rec.spec.name), mac: macFor(id), seed: randomBytes(32).toString('hex'),
    };
    const cmd = validateCommandLine(buildCommandLine({
      name: `strata-${id}`, arch, accelerator: this.accel.accelerator, vcpus: rec.spec.limits.vcpus, memoryMiB: rec.spec.limits.memoryMiB,
      kernel: image.kernel, initrd: image.initrd,
      append: kernelCommandLine({
        arch, accelerator: this.accel.accelerator, tscKhz: hostTscKhz(), port: rec.config.port, command: rec.config.command,
        hostname: identity.hostname, network: { addressCidr: identity.addressCidr }, seed: identity.seed,
      }),
      serialLog: this.#files.consolePath(id), consoleSocket: this.#files.consoleSocketPath(id), qmpSocket: this.#files.qmpPath(id), pidFile: this.#files.pidPath(id),
      network: { tap: rec.network.tap, mac: macFor(id) },
      disk: rec.spec.limits.diskMiB > 0 ? this.#files.diskPath(id) : null,
      identity: guestIdentity(identity),
      ...(incomingFd === undefined ? {} : { incomingFd: 3 }),
      ...(moveIn ? { incomingDefer: true } : {}),
    }), arch);
    let pid: number;
    try {
      pid = launchQemu({ cmd, user, cgroupProcs: cgroup.procsFiles, logFd, ...(incomingFd === undefined ? {} : { incomingFd }) });
    } finally {
      closeSync(logFd);
      if (incomingFd !== undefined) closeSync(incomingFd);
    }
    try {
      const qmp = await this.#conn.connectNew(id, pid);
      // Before the vCPUs run (-S, or still loading a snapshot): the log misses nothing the guest prints.
      const relay = await this.#conn.console(id);
      if (moveIn) await receiveMove(qmp, this.#files.runDir(id), rec.spec.limits.diskMiB > 0, moveIn);
      if (incomingFd !== undefined || moveIn) await awaitIncoming(qmp, this.#startTimeoutMs);
      // A moved guest has its sender's address (another driver's network): it takes this one's like a clone.
      const reidentify = (incomingFd !== undefined && rec.reidentify === true) || moveIn !== undefined;
      // The resumed guest still has its source's identity: no frame may leave with it.
      if (reidentify) await qmp.execute('set_link', { name: 'net0', up: false });
      const reidentified = reidentify ? relay.waitFor('STRATA-REIDENTIFIED') : null;
      reidentified?.catch(() => undefined); // awaited below; a failed start must not leave it unhandled
      await qmp.execute('cont');
      if (reidentified) {
        await awaitReidentified(id, reidentified, this.#startTimeoutMs);
        await qmp.execute('set_link', { name: 'net0', up: true });
      }
      rec.reidentify = false;
      rec.launch = { accelerator: this.accel.accelerator, startedAt: new Date().toISOString(), restoredFrom: rec.restoreFrom };
      rec.restoreFrom = null;
      await this.#files.save(rec);
    } catch (e) {
      await killQemu(pid, this.#files.qmpPath(id)).catch(() => undefined);
      // Best effort: a cgroup still busy with a dying QEMU must not hide why the start failed.
      await this.#afterExit(id).catch(() => undefined);
      const log = await readFile(join(this.#files.dir(id), 'qemu.log'), 'utf8').catch(() => '');
      throw new StrataError('STRATA_ERR_DRIVER', `starting ${id} failed: ${(e as Error).message}`, { id, qemuLog: log.trim().split('\n').slice(-5) }, { cause: e });
    }
  }

  /**
   * Receiving side of a move (live migration from another Strata daemon's driver
   * on this machine): creates `spec` here, starts its QEMU waiting on a Unix
   * socket, and calls `send(socket)`, which must make the sender migrate into it
   * (`sender.moveOut(id, socket)`). The guest resumes here with the link down,
   * takes this driver's address for it (as a clone does), and the link comes up.
   */
  moveIn(spec: InstanceSpec, send: (socket: string) => Promise<void>): Promise<void> {
    return this.#serial(spec.id, async () => {
      await this.#create(spec, 'bare');
      try {
        await this.#start(spec.id, send);
      } catch (e) {
        await this.#delete(spec.id).catch(() => undefined);
        throw e;
      }
    });
  }

  /**
   * Sending side of a move: live-migrates the running `id` into `socket` (a
   * receiver's, see `moveIn`) — memory while the guest runs on, then a short
   * pause for the rest and the device state. A disk goes first, by a mirror
   * into the receiver's NBD export (`mirror.ts`). With the state across and
   * this side paused, `confirm()` (when given) must resolve once the receiver
   * runs the guest; then this side's QEMU ends and the instance is deleted here.
   * Any failure up to then undoes the move on this side: the guest runs on here.
   */
  moveOut(id: string, socket: string, confirm?: () => Promise<void>): Promise<void> {
    return this.#serial(id, async () => {
      const rec = await this.#files.require(id);
      await sendMove(await this.#conn.running(id), socket, rec.spec.limits.diskMiB > 0, this.#startTimeoutMs, confirm);
      await this.#delete(id);
    });
  }


  /** ACPI power-down, then `quit` after `graceMs`, then SIGKILL. A paused guest cannot hear the button: straight to `quit`. */
  async #stop(id: string, graceMs: number): Promise<void> {
    const pid = await this.#files.pid(id);
    if (!pid) return this.#afterExit(id);
    const marker = this.#files.qmpPath(id);
    const qmp = await this.#conn.client(id).catch(() => null);
    if (qmp) {
      const status = await qmp.execute<QueryStatus>('query-status', undefined, QUERY_TIMEOUT_MS).catch(() => null);
      if (status?.running) {
        await qmp.execute('system_powerdown', undefined, 2_000).catch(() => undefined);
        await waitForExit(pid, marker, graceMs);
      }
      if (await isQemu(pid, marker)) {
        await qmp.execute('quit', undefined, QUIT_WAIT_MS).catch(() => undefined);
        await waitForExit(pid, marker, QUIT_WAIT_MS);
      }
    }
    await killQemu(pid, marker);
    await this.#afterExit(id);
  }








  async #delete(id: string): Promise<void> {
    if (!SAFE_ID.test(id)) return;
    const pid = await this.#files.pid(id);
    if (pid) await killQemu(pid, this.#files.qmpPath(id));
    await this.#afterExit(id);
    await this.network.unplug(this.network.tapName(id), macFor(id));
    const rec = await this.#files.load(id);
    if (rec) await this.network.release(id, rec.spec.tenantId);
    await rm(this.#files.dir(id), { recursive: true, force: true });
  }

  async #inspect(id: string): Promise<ObservedInstance | null> {
    if (!SAFE_ID.test(id)) return null;
    const [rec, pid] = await Promise.all([this.#files.load(id), this.#files.pid(id)]);
    if (!rec && !pid) return null;
    const info: InstanceInfo = {
      accelerator: rec?.launch?.accelerator ?? this.accel.accelerator,
      acceleratorReason: this.accel.reason,
      arch: rec?.config.arch ?? null,
      console: this.#files.consolePath(id),
    };
    if (!rec) info.orphan = true;
    if (rec?.restoreFrom) info.restoreFrom = rec.restoreFrom;
    if (!pid) return { id, state: 'stopped', info };
    Object.assign(info, {
      pid,
      // No `port`: the gateway reaches the site's port at the VM's own address.
      address: rec?.network?.address ?? null,
      guestPort: rec?.config.port ?? null,
      tap: rec?.network?.tap ?? this.network.tapName(id),
      mac: rec?.network ? macFor(id) : null,
      bridge: rec?.network ? this.network.bridgeName(rec.network.tenantIndex) : null,
    });
    try {
      const status = await (await this.#conn.client(id)).execute<QueryStatus>('query-status', undefined, QUERY_TIMEOUT_MS);
      info.qemuStatus = status.status;
      if (status.running) return { id, state: 'running', info };
      if (PAUSED_STATUSES.has(status.status)) return { id, state: 'paused', info };
      return { id, state: 'failed', info: { ...info, error: `QEMU status ${status.status}` } };
    } catch (e) {
      return { id, state: 'failed', info: { ...info, error: `QMP: ${(e as Error).message}` } };
    }
  }

  // --- helpers ----------------------------------------------------------------

  /** Runs `fn` after every earlier call for the same instance has settled. */
  #serial<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.#locks.get(id) ?? Promise.resolve();
    const next = previous.catch(() => undefined).then(fn);
    const tail = next.catch(() => undefined);
    this.#locks.set(id, tail);
    void tail.then(() => { if (this.#locks.get(id) === tail) this.#locks.delete(id); });
    return next;
  }






  /** After QEMU is gone: forget the connection, remove run files and the cgroup. */
  async #afterExit(id: string): Promise<void> {
    await this.#conn.forget(id);
    await this.#files.clearRunFiles(id);
    await removeVmCgroup(this.#cgroupName(id));
  }






  /**
   * Instances created by an earlier Strata (user-mode networking, no disk) get
   * what this one expects at their next start: an address on the tenant's bridge
   * and, when they declare a disk size, a fresh overlay.
   */
  async #upgrade(rec: InstanceRecord): Promise<void> {
    const id = rec.spec.id;
    let changed = false;
    if (!(rec as Partial<InstanceRecord>).network) {
      rec.network = await this.network.allocate(id, rec.spec.tenantId);
      changed = true;
    }
    if (wantsDisk(rec.spec.limits.diskMiB) && !(await stat(this.#files.diskPath(id)).catch(() => null))) {
      await createOverlay(this.#files.diskPath(id), baseDiskPath(this.imageRoot), rec.spec.limits.diskMiB, this.#vmUser());
    }
    if (changed) await this.#files.save(rec);
  }



  #ctx(): VmContext {
    return { files: this.#files, connections: this.#conn, user: () => this.#vmUser(), startTimeoutMs: this.#startTimeoutMs };
  }

  #vmUser(): VmUser {
    if (!this.#user) throw new StrataError('STRATA_ERR_LEVEL_UNAVAILABLE', `level ${this.level} is not provisioned`);
    return this.#user;
  }

  /** CPU, memory and network from the host's side; read outside the instance's lock. */
  stats(id: string): Promise<InstanceUsage | null> { return vmUsage(this.#files, this.#cgroupName(id), id); }

  #cgroupName(id: string): string { return `${this.level}-${id}`; }
}

/** `vm.qemu`: guests of the host's architecture; KVM when a probe guest boots under it, else TCG. */
export class VmDriver extends QemuDriver {
  readonly id = 'vm.qemu';
  readonly level = 'vm' as const;

  constructor(o: QemuDriverOptions = {}) {
    super('vm', o);
  }

  protected arches(): GuestArch[] {
    const arch = hostArch();
    return arch ? [arch] : [];
  }

  protected async chooseAccelerator(): Promise<string> {
    const image = this.images.get(this.arches()[0]!)!;
    const decision = await chooseAccelerator({ image, stateDir: this.stateDir, ...(this.probeTimeoutMs ? { timeoutMs: this.probeTimeoutMs } : {}) });
    this.accel = { accelerator: decision.accelerator, reason: decision.reason };
    return decision.reason;
  }
}

/** `emu.qemu`: any guest architecture, always emulated (TCG). */
export class EmuDriver extends QemuDriver {
  readonly id = 'emu.qemu';
  readonly level = 'emu' as const;

  constructor(o: QemuDriverOptions = {}) {
    super('emu', o);
  }

  protected arches(): GuestArch[] {
    return ['x86_64', 'aarch64'];
  }

  protected async chooseAccelerator(): Promise<string> {
    this.accel = { accelerator: 'tcg', reason: 'TCG: the emu level emulates every guest architecture' };
    return this.accel.reason;
  }
}

/** The guest hostname: the instance name reduced to what a hostname and the kernel command line accept. */
export function guestHostname(name: string): string {
  const h = name.toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 63);
  return h || 'strata-vm';
}
