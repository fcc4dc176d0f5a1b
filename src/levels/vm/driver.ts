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
import { closeSync, openSync } from 'node:fs';
import { chmod, chown, mkdir, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { InvalidStateTransition, StrataError, notFound } from '../../core/errors.js';
import type { InstanceInfo } from '../../core/instance-facts.js';
import type { LogOptions } from '../driver.js';
import { logStream } from '../log-stream.js';
import { ConsoleRelay } from './console.js';
import { CONSOLE_LOG_DEFAULTS, ConsoleLog, type ConsoleLogLimits } from './console-log.js';
import { existsSync } from 'node:fs';
import type { Duplex, Readable } from 'node:stream';
import type { DriverAvailability, DriverOperation, InstanceSpec, LevelDriver, ObservedInstance, SnapshotResult } from '../driver.js';
import { chooseAccelerator } from './accel.js';
import { createVmCgroup, removeVmCgroup } from './cgroup.js';
import { baseDiskPath, copyDisk, createOverlay, giveTo, wantsDisk } from './disk.js';
import { QEMU_BINARY, buildCommandLine, guestIdentity, type GuestIdentity, kernelCommandLine, validateCommandLine, type Accelerator, type GuestArch } from './cmdline.js';
import { DEFAULT_IMAGE_ROOT, findImage, hostArch, hostTscKhz, type GuestImage } from './images.js';
import { findQemus, isQemu, killQemu, launchQemu, vmUser, waitForExit, type VmUser } from './launch.js';
import { parseQemuInput, type VmConfig } from './options.js';
import { QmpClient } from './qmp.js';
import { finishMirror, mirrorDiskTo } from './mirror.js';
import { VmNetwork, grantTunAccess, macFor, type VmAddress } from './network.js';
import { sha256File } from '../../core/hash.js';
import { isAlive } from '../../core/proc.js';
import { awaitMigration, manifestDigest, migrateToFile, type SnapshotManifest } from './snapshot.js';

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

interface InstanceRecord {
  spec: InstanceSpec;
  config: VmConfig;
  createdAt: string;
  /** Set by restore: the next start loads this snapshot instead of booting. */
  restoreFrom: string | null;
  /** Set by a clone from a memory snapshot: the next start makes the resumed guest take this instance's identity. */
  reidentify?: boolean;
  /** The VM's tap and address on its tenant's bridge, kept for its life. */
  network: VmAddress;
  /** Facts of the current or last launch. */
  launch: { accelerator: Accelerator; startedAt: string; restoredFrom: string | null } | null;
}

interface QueryStatus {
  running: boolean;
  status: string;
}

const SAFE_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const PAUSED_STATUSES = new Set(['paused', 'postmigrate', 'prelaunch', 'suspended', 'inmigrate', 'finish-migrate', 'save-vm', 'restore-vm', 'debug', 'colo']);
/** How long `quit` may take before SIGKILL. */
const QUIT_WAIT_MS = 2_000;
/** QMP answers for inspect and stop; generous, as TCG vCPUs and other tenants load the host. */
const QUERY_TIMEOUT_MS = 5_000;

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
  readonly #qmp = new Map<string, QmpClient>();
  readonly #locks = new Map<string, Promise<unknown>>();
  /** The daemon's end of each running VM's serial port: it logs and relays the console (`console.ts`). */
  readonly #consoles = new Map<string, Promise<ConsoleRelay | null>>();
  readonly #consoleLimits: ConsoleLogLimits;

  constructor(level: 'vm' | 'emu', o: QemuDriverOptions) {
    this.stateDir = o.stateDir ?? `/var/lib/strata/${level}`;
    this.imageRoot = o.imageRoot ?? DEFAULT_IMAGE_ROOT;
    this.probeTimeoutMs = o.probeTimeoutMs;
    this.#startTimeoutMs = o.startTimeoutMs ?? 30_000;
    this.#consoleLimits = { ...CONSOLE_LOG_DEFAULTS, ...o.consoleLog };
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
      for (const id of await readdir(this.#instancesDir()).catch(() => [] as string[])) {
        const tap = (await this.#load(id).catch(() => null))?.network?.tap;
        if (tap && this.network.isPlugged(tap)) plugged.push({ tap, mac: macFor(id) });
      }
      await this.network.allowMacs(plugged);
    }
    // VMs that outlived the last daemon: their consoles are logged again from now on.
    for (const { cmdline } of await findQemus(`${this.#instancesDir()}/`)) {
      const id = this.#idFromCmdline(cmdline);
      if (id && SAFE_ID.test(id)) await this.#watchConsole(id).catch(() => null);
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
    return this.#serial(id, async () => { await (await this.#running(id)).execute('stop'); });
  }

  resume(id: string): Promise<void> {
    return this.#serial(id, async () => { await (await this.#running(id)).execute('cont'); });
  }

  snapshot(id: string, snapshotId: string): Promise<SnapshotResult> {
    return this.#serial(id, () => this.#snapshot(id, snapshotId));
  }

  restore(id: string, snapshotId: string): Promise<void> {
    return this.#serial(id, () => this.#restore(id, snapshotId));
  }

  clone(spec: InstanceSpec, from: { instanceId: string; snapshotId: string }): Promise<void> {
    return this.#serial(spec.id, () => this.#clone(spec, from));
  }

  delete(id: string): Promise<void> {
    return this.#serial(id, () => this.#delete(id));
  }

  inspect(id: string): Promise<ObservedInstance | null> {
    return this.#inspect(id);
  }

  /** The serial console log (everything the guest printed, across boots); a follower ends when the instance is deleted. */
  async logs(id: string, opts: LogOptions): Promise<Readable> {
    if (!(await this.#load(id))) throw notFound('instance', id);
    const dir = this.#dir(id);
    return logStream({ path: this.#consolePath(id), keep: this.#consoleLimits.keep, follow: opts.follow, ...(opts.tail !== undefined ? { tail: opts.tail } : {}), gone: () => !existsSync(dir) });
  }

  /** The guest's serial port, read and write (see `console.ts`); the VM must run. */
  async console(id: string): Promise<Duplex> {
    if (!(await this.#load(id))) throw notFound('instance', id);
    if (!(await this.#pid(id))) throw new InvalidStateTransition('stopped', 'running', 'attach to the console of');
    return (await this.#watchConsole(id)).attach(id);
  }

  async list(): Promise<ObservedInstance[]> {
    const ids = new Set<string>(await readdir(this.#instancesDir()).catch(() => []));
    for (const { cmdline } of await findQemus(`${this.#instancesDir()}/`)) {
      const id = this.#idFromCmdline(cmdline);
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
    for (const client of this.#qmp.values()) client.close();
    this.#qmp.clear();
    const relays = [...this.#consoles.values()];
    this.#consoles.clear();
    await Promise.all(relays.map(async (r) => (await r.catch(() => null))?.close()));
    if (process.getuid?.() !== 0) return;
    const held = (await readdir(this.#instancesDir()).catch(() => [])).length + (await findQemus(`${this.#instancesDir()}/`)).length;
    if (held === 0) await this.network.removeAll();
  }

  // --- lifecycle --------------------------------------------------------------

  /** `diskFrom`: a qcow2 (a snapshot's) that becomes the disk, or 'bare' (a move's mirror target), instead of a fresh overlay. */
  async #create(spec: InstanceSpec, diskFrom?: string | 'bare'): Promise<void> {
    this.#checkId(spec.id);
    const config = parseQemuInput(spec.config, this.level, this.arches());
    if (!this.images.has(config.arch)) throw new StrataError('STRATA_ERR_VALIDATION', `no ${config.arch} guest image on this machine`, { arch: config.arch });
    const { vcpus, memoryMiB } = spec.limits;
    if (!Number.isInteger(vcpus) || vcpus < 1 || vcpus > 16 || !Number.isInteger(memoryMiB) || memoryMiB < 64 || memoryMiB > 65536) {
      throw new StrataError('STRATA_ERR_VALIDATION', 'vm limits: vcpus 1..16, memoryMiB 64..65536', { vcpus, memoryMiB });
    }
    const disk = wantsDisk(spec.limits.diskMiB);
    if (await this.#pid(spec.id)) throw new StrataError('STRATA_ERR_CONFLICT', `instance ${spec.id} already runs`, { id: spec.id });
    const dir = this.#dir(spec.id);
    await mkdir(dir, { recursive: true, mode: 0o711 }); // the VM user traverses it to reach run/
    await chmod(dir, 0o711);
    await mkdir(join(dir, 'snapshots'), { recursive: true, mode: 0o700 });
    await mkdir(this.#runDir(spec.id), { recursive: true, mode: 0o700 });
    await chown(this.#runDir(spec.id), this.#vmUser().uid, this.#vmUser().gid);
    if (disk && diskFrom === 'bare') await createOverlay(this.#diskPath(spec.id), baseDiskPath(this.imageRoot), spec.limits.diskMiB, this.#vmUser(), false);
    else if (disk && diskFrom) {
      await copyDisk(diskFrom, this.#diskPath(spec.id));
      await giveTo(this.#diskPath(spec.id), this.#vmUser());
    } else if (disk) await createOverlay(this.#diskPath(spec.id), baseDiskPath(this.imageRoot), spec.limits.diskMiB, this.#vmUser());
    const network = await this.network.allocate(spec.id, spec.tenantId);
    await this.#save({ spec, config, createdAt: new Date().toISOString(), restoreFrom: null, network, launch: null });
  }

  /** `moveIn`: start as a move's receiver — wait for the stream on a socket, call `send` with it, then resume as this instance. */
  async #start(id: string, moveIn?: (socket: string) => Promise<void>): Promise<void> {
    const rec = await this.#load(id);
    if (!rec) throw notFound('instance', id);
    if (await this.#pid(id)) return;
    await this.#upgrade(rec);
    const arch = rec.config.arch;
    const image = this.images.get(arch);
    if (!image) throw new StrataError('STRATA_ERR_DRIVER', `no ${arch} guest image`, { arch });
    await this.#clearRunFiles(id);
    const user = this.#vmUser();
    const cgroup = await createVmCgroup(this.#cgroupName(id), rec.spec.limits);
    // The tap outlives stops (it costs spawns of `ip` that a restore should not wait for); delete removes it.
    if (!this.network.isPlugged(rec.network.tap)) await this.network.plug(rec.network, macFor(id), user);
    const snapshot = rec.restoreFrom ? await this.#manifest(id, rec.restoreFrom) : null;
    const incomingFd = snapshot?.memory ? openSync(join(this.#snapshotDir(id, rec.restoreFrom!), snapshot.memory.file), 'r') : undefined;
    const logFd = openSync(join(this.#dir(id), 'qemu.log'), 'a', 0o600);
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
      serialLog: this.#consolePath(id), consoleSocket: this.#consoleSocketPath(id), qmpSocket: this.#qmpPath(id), pidFile: this.#pidPath(id),
      network: { tap: rec.network.tap, mac: macFor(id) },
      disk: rec.spec.limits.diskMiB > 0 ? this.#diskPath(id) : null,
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
      const qmp = await this.#connectNew(id, pid);
      // Before the vCPUs run (-S, or still loading a snapshot): the log misses nothing the guest prints.
      const relay = await this.#watchConsole(id);
      if (moveIn) {
        const socket = join(this.#runDir(id), 'incoming.sock');
        await qmp.execute('migrate-incoming', { uri: `unix:${socket}` });
        // The disk arrives by a mirror into this NBD export, next to the migration socket (see moveOut).
        if (rec.spec.limits.diskMiB > 0) {
          await qmp.execute('nbd-server-start', { addr: { type: 'unix', data: { path: join(this.#runDir(id), 'nbd.sock') } } }); // SocketAddressLegacy
          await qmp.execute('block-export-add', { type: 'nbd', id: 'disk0', 'node-name': 'disk0', writable: true });
        }
        await moveIn(socket);
        if (rec.spec.limits.diskMiB > 0) await qmp.execute('nbd-server-stop');
      }
      if (incomingFd !== undefined || moveIn) await this.#awaitIncoming(qmp);
      // A moved guest has its sender's address (another driver's network): it takes this one's like a clone.
      const reidentify = (incomingFd !== undefined && rec.reidentify === true) || moveIn !== undefined;
      // The resumed guest still has its source's identity: no frame may leave with it.
      if (reidentify) await qmp.execute('set_link', { name: 'net0', up: false });
      const reidentified = reidentify ? relay.waitFor('STRATA-REIDENTIFIED') : null;
      reidentified?.catch(() => undefined); // awaited below; a failed start must not leave it unhandled
      await qmp.execute('cont');
      if (reidentified) {
        await this.#awaitReidentified(id, reidentified);
        await qmp.execute('set_link', { name: 'net0', up: true });
      }
      rec.reidentify = false;
      rec.launch = { accelerator: this.accel.accelerator, startedAt: new Date().toISOString(), restoredFrom: rec.restoreFrom };
      rec.restoreFrom = null;
      await this.#save(rec);
    } catch (e) {
      await killQemu(pid, this.#qmpPath(id)).catch(() => undefined);
      // Best effort: a cgroup still busy with a dying QEMU must not hide why the start failed.
      await this.#afterExit(id).catch(() => undefined);
      const log = await readFile(join(this.#dir(id), 'qemu.log'), 'utf8').catch(() => '');
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
      const rec = await this.#load(id);
      if (!rec) throw notFound('instance', id);
      const qmp = await this.#running(id);
      const disk = rec.spec.limits.diskMiB > 0;
      try {
        if (disk) await mirrorDiskTo(qmp, join(dirname(socket), 'nbd.sock'), this.#startTimeoutMs * 4);
        await qmp.execute('migrate-set-parameters', { 'max-bandwidth': 1024 * 1024 * 1024, 'downtime-limit': 100 });
        await qmp.execute('migrate', { uri: `unix:${socket}` });
        await awaitMigration(qmp, this.#startTimeoutMs * 4);
        // Paused now: the mirror's last writes go across, then the receiver may run.
        if (disk) await finishMirror(qmp, this.#startTimeoutMs);
        await confirm?.();
      } catch (e) {
        await this.#undoMoveOut(qmp).catch(() => undefined);
        throw e;
      }
      await this.#delete(id);
    });
  }

  /** A failed move, on the sending side: no migration or mirror left, the guest running again (QEMU reactivates its disk on `cont`). */
  async #undoMoveOut(qmp: QmpClient): Promise<void> {
    await qmp.execute('migrate_cancel').catch(() => undefined);
    for (let i = 0; i < 250; i++) {
      const m = await qmp.execute<{ status?: string }>('query-migrate').catch(() => ({ status: undefined }));
      if (m.status !== 'active' && m.status !== 'cancelling' && m.status !== 'device' && m.status !== 'pre-switchover') break;
      await sleep(20);
    }
    const jobs = await qmp.execute<Array<{ device: string }>>('query-block-jobs').catch(() => []);
    if (jobs.some((j) => j.device === 'move-disk')) await qmp.execute('block-job-cancel', { device: 'move-disk', force: true }).catch(() => undefined);
    for (let i = 0; i < 50; i++) {
      const left = await qmp.execute<Array<{ device: string }>>('query-block-jobs').catch(() => []);
      if (!left.some((j) => j.device === 'move-disk')) break;
      await sleep(20);
    }
    await qmp.execute('blockdev-del', { 'node-name': 'move-target' }).catch(() => undefined);
    const { running } = await qmp.execute<QueryStatus>('query-status');
    if (!running) await qmp.execute('cont');
  }

  /** ACPI power-down, then `quit` after `graceMs`, then SIGKILL. A paused guest cannot hear the button: straight to `quit`. */
  async #stop(id: string, graceMs: number): Promise<void> {
    const pid = await this.#pid(id);
    if (!pid) return this.#afterExit(id);
    const marker = this.#qmpPath(id);
    const qmp = await this.#client(id).catch(() => null);
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

  async #snapshot(id: string, snapshotId: string): Promise<SnapshotResult> {
    this.#checkId(snapshotId);
    const rec = await this.#load(id);
    if (!rec) throw notFound('instance', id);
    const dir = this.#snapshotDir(id, snapshotId);
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true, mode: 0o700 });
    let memory: SnapshotManifest['memory'] = null;
    let disk: SnapshotManifest['disk'] = null;
    if (!(await this.#pid(id))) disk = await this.#copyDiskInto(id, dir);
    else {
      const qmp = await this.#client(id);
      const { running } = await qmp.execute<QueryStatus>('query-status');
      if (running) await qmp.execute('stop');
      try {
        const file = join(dir, 'memory.bin');
        await migrateToFile(qmp, join(this.#runDir(id), 'migrate.sock'), file, this.#vmUser());
        memory = { file: 'memory.bin', sizeBytes: (await stat(file)).size, sha256: await sha256File(file) };
        disk = await this.#copyDiskInto(id, dir);
      } finally {
        if (running) await qmp.execute('cont');
      }
    }
    const manifest: SnapshotManifest = {
      version: 1, instanceId: id, snapshotId, arch: rec.config.arch,
      machine: { vcpus: rec.spec.limits.vcpus, memoryMiB: rec.spec.limits.memoryMiB },
      memory, disk, createdAt: new Date().toISOString(),
    };
    const text = JSON.stringify(manifest);
    await writeFile(join(dir, 'manifest.json'), text, { mode: 0o600 });
    return { sizeBytes: (memory?.sizeBytes ?? 0) + (disk?.sizeBytes ?? 0) + Buffer.byteLength(text), digest: `sha256:${manifestDigest(manifest)}` };
  }

  /** Makes the next start load the snapshot (a stopped-VM snapshot has no memory: the next start boots afresh). */
  async #restore(id: string, snapshotId: string): Promise<void> {
    this.#checkId(snapshotId);
    const rec = await this.#load(id);
    if (!rec) throw notFound('instance', id);
    if (await this.#pid(id)) throw new StrataError('STRATA_ERR_CONFLICT', `stop ${id} before restoring it`, { id });
    const manifest = await this.#manifest(id, snapshotId);
    const { vcpus, memoryMiB } = rec.spec.limits;
    if (manifest.arch !== rec.config.arch || manifest.machine.vcpus !== vcpus || manifest.machine.memoryMiB !== memoryMiB) {
      throw new StrataError('STRATA_ERR_CONFLICT', `snapshot ${snapshotId} was taken of a different machine`, { snapshot: manifest.machine, instance: { vcpus, memoryMiB } });
    }
    if (manifest.disk) {
      await copyDisk(join(this.#snapshotDir(id, snapshotId), manifest.disk.file), this.#diskPath(id));
      await giveTo(this.#diskPath(id), this.#vmUser());
    }
    rec.restoreFrom = manifest.memory ? snapshotId : null;
    await this.#save(rec);
  }

  /**
   * A new, stopped instance with the snapshot's disk and memory and a fresh
   * identity: its own address, MAC (from its id), hostname (its name) and RNG
   * seed. Its first start resumes the snapshot's memory with the link held down;
   * the guest (`strata-identity`) finds the new identity in fw_cfg, takes it and
   * says so on the console, and only then does the link come up, so no frame
   * leaves with the source's identity. A snapshot without memory (of a stopped
   * VM) gives a clone that boots from the disk with its identity on the kernel
   * command line.
   */
  async #clone(spec: InstanceSpec, from: { instanceId: string; snapshotId: string }): Promise<void> {
    this.#checkId(from.instanceId);
    this.#checkId(from.snapshotId);
    const source = await this.#load(from.instanceId);
    if (!source || source.spec.tenantId !== spec.tenantId) throw notFound('instance', from.instanceId);
    const manifest = await this.#manifest(from.instanceId, from.snapshotId);
    if (manifest.disk && spec.limits.diskMiB !== source.spec.limits.diskMiB) {
      throw new StrataError('STRATA_ERR_CONFLICT', `a clone of ${from.instanceId} has its disk size (${source.spec.limits.diskMiB} MiB)`, { diskMiB: spec.limits.diskMiB });
    }
    const sourceDir = this.#snapshotDir(from.instanceId, from.snapshotId);
    await this.#create(spec, manifest.disk ? join(sourceDir, manifest.disk.file) : undefined);
    if (!manifest.memory) return;
    const { vcpus, memoryMiB } = spec.limits;
    if (manifest.machine.vcpus !== vcpus || manifest.machine.memoryMiB !== memoryMiB) {
      await this.#delete(spec.id);
      throw new StrataError('STRATA_ERR_CONFLICT', `snapshot ${from.snapshotId} was taken of a different machine`, { snapshot: manifest.machine, clone: { vcpus, memoryMiB } });
    }
    // The clone keeps its own copy of the memory stream: it resumes from it at its first start.
    const dir = this.#snapshotDir(spec.id, from.snapshotId);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await copyDisk(join(sourceDir, manifest.memory.file), join(dir, manifest.memory.file));
    await writeFile(join(dir, 'manifest.json'), JSON.stringify({ ...manifest, disk: null }), { mode: 0o600 });
    const rec = (await this.#load(spec.id))!;
    rec.restoreFrom = from.snapshotId;
    rec.reidentify = true;
    await this.#save(rec);
  }

  /**
   * The guest's `strata-identity` prints STRATA-REIDENTIFIED on the console once
   * it has its new address, hostname, seed and MAC. (The NIC's MAC as QMP reports
   * it is no signal: after a restore it is already the new QEMU's.) A guest that
   * fakes the marker early only brings its own link up sooner.
   */
  async #awaitReidentified(id: string, printed: Promise<void>): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new StrataError('STRATA_ERR_DRIVER', `the clone did not take its new identity in ${this.#startTimeoutMs} ms`, { id })), this.#startTimeoutMs);
    });
    try {
      await Promise.race([printed, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * The console relay of running `id`, connected on first use (at start, or for
   * a VM adopted after a daemon restart); rejects when the VM has no console socket.
   */
  #watchConsole(id: string): Promise<ConsoleRelay> {
    const existing = this.#consoles.get(id);
    // A closed or failed relay is replaced once: a concurrent caller that finds it replaced takes the new one.
    if (existing) return existing.then((r) => (r && !r.isClosed ? r : this.#consoles.get(id) === existing ? this.#connectConsole(id) : this.#watchConsole(id)));
    return this.#connectConsole(id);
  }

  #connectConsole(id: string): Promise<ConsoleRelay> {
    const relay = ConsoleRelay.connect(this.#consoleSocketPath(id), new ConsoleLog(this.#consolePath(id), this.#consoleLimits), id);
    const entry = relay.catch(() => null);
    this.#consoles.set(id, entry);
    void relay.then((r) => r.closed).catch(() => undefined).then(() => { if (this.#consoles.get(id) === entry) this.#consoles.delete(id); });
    return relay;
  }

  /** Copies the (paused or stopped) instance's overlay into snapshot dir `dir`; null without a disk. */
  async #copyDiskInto(id: string, dir: string): Promise<SnapshotManifest['disk']> {
    if (!(await stat(this.#diskPath(id)).catch(() => null))) return null;
    const file = join(dir, 'disk.qcow2');
    await copyDisk(this.#diskPath(id), file);
    return { file: 'disk.qcow2', sizeBytes: (await stat(file)).size, sha256: await sha256File(file) };
  }

  async #delete(id: string): Promise<void> {
    if (!SAFE_ID.test(id)) return;
    const pid = await this.#pid(id);
    if (pid) await killQemu(pid, this.#qmpPath(id));
    await this.#afterExit(id);
    await this.network.unplug(this.network.tapName(id), macFor(id));
    const rec = await this.#load(id);
    if (rec) await this.network.release(id, rec.spec.tenantId);
    await rm(this.#dir(id), { recursive: true, force: true });
  }

  async #inspect(id: string): Promise<ObservedInstance | null> {
    if (!SAFE_ID.test(id)) return null;
    const [rec, pid] = await Promise.all([this.#load(id), this.#pid(id)]);
    if (!rec && !pid) return null;
    const info: InstanceInfo = {
      accelerator: rec?.launch?.accelerator ?? this.accel.accelerator,
      acceleratorReason: this.accel.reason,
      arch: rec?.config.arch ?? null,
      console: this.#consolePath(id),
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
      const status = await (await this.#client(id)).execute<QueryStatus>('query-status', undefined, QUERY_TIMEOUT_MS);
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

  async #running(id: string): Promise<QmpClient> {
    if (!(await this.#pid(id))) throw new StrataError('STRATA_ERR_DRIVER', `instance ${id} is not running`, { id });
    return this.#client(id);
  }

  /** The live QMP connection to `id`'s QEMU, opened on first use (also for a VM adopted after a daemon restart). */
  async #client(id: string): Promise<QmpClient> {
    const existing = this.#qmp.get(id);
    if (existing && !existing.isClosed) return existing;
    const client = await QmpClient.connect(this.#qmpPath(id), { timeoutMs: QUERY_TIMEOUT_MS });
    this.#track(id, client);
    return client;
  }

  /** Connects to a QEMU just launched: retries until its socket answers, fails fast if it exits. */
  async #connectNew(id: string, pid: number): Promise<QmpClient> {
    const deadline = Date.now() + this.#startTimeoutMs;
    for (;;) {
      // Right after spawn the launcher may not have exec'd yet (its cmdline is still ours): only a gone process has exited.
      if (!isAlive(pid)) throw new StrataError('STRATA_ERR_DRIVER', 'QEMU exited during start-up');
      try {
        const client = await QmpClient.connect(this.#qmpPath(id), { timeoutMs: 2_000 });
        this.#track(id, client);
        return client;
      } catch (e) {
        if (Date.now() > deadline) throw e;
        await sleep(3); // QEMU opens the socket ~0.1 s after exec: poll finely, a restore waits on it
      }
    }
  }

  #track(id: string, client: QmpClient): void {
    this.#qmp.get(id)?.close();
    this.#qmp.set(id, client);
    void client.closed.then(() => { if (this.#qmp.get(id) === client) this.#qmp.delete(id); });
  }

  /**
   * A restoring QEMU reads the stream before it answers `cont`; wait until it has left `inmigrate`.
   * (An early `cont`, which QEMU 7.2 takes as "run once loaded", left the restored guest deaf to its NIC here.)
   */
  async #awaitIncoming(qmp: QmpClient): Promise<void> {
    const deadline = Date.now() + this.#startTimeoutMs;
    for (;;) {
      const { status } = await qmp.execute<QueryStatus>('query-status');
      if (status !== 'inmigrate') {
        if (status !== 'paused' && status !== 'prelaunch') throw new StrataError('STRATA_ERR_DRIVER', `restore ended in QEMU status ${status}`);
        return;
      }
      if (Date.now() > deadline) throw new StrataError('STRATA_ERR_DRIVER', `restore did not finish in ${this.#startTimeoutMs} ms`);
      await sleep(2);
    }
  }

  /** After QEMU is gone: forget the connection, remove run files and the cgroup. */
  async #afterExit(id: string): Promise<void> {
    this.#qmp.get(id)?.close();
    this.#qmp.delete(id);
    // QEMU is gone: the relay reads what the guest printed last (e.g. STRATA-POWEROFF) up to EOF, and the log gets it.
    const relay = await this.#consoles.get(id);
    if (relay) await Promise.race([relay.closed, sleep(1_000)]).then(() => relay.close());
    await this.#clearRunFiles(id);
    await removeVmCgroup(this.#cgroupName(id));
  }

  async #clearRunFiles(id: string): Promise<void> {
    for (const f of ['qmp.sock', 'qemu.pid', 'migrate.sock', 'console.sock']) await rm(join(this.#runDir(id), f), { force: true });
  }

  /** The live QEMU of `id`: from its pidfile, else (pidfile gone) from /proc. */
  async #pid(id: string): Promise<number | null> {
    const marker = this.#qmpPath(id);
    const fromFile = Number((await readFile(this.#pidPath(id), 'utf8').catch(() => '')).trim());
    if (fromFile > 0 && (await isQemu(fromFile, marker))) return fromFile;
    const found = await findQemus(marker);
    return found[0]?.pid ?? null;
  }

  #idFromCmdline(cmdline: string[]): string | null {
    const qmp = cmdline[cmdline.indexOf('-qmp') + 1] ?? '';
    const prefix = `unix:${this.#instancesDir()}/`;
    return qmp.startsWith(prefix) ? qmp.slice(prefix.length).split('/')[0] ?? null : null;
  }

  async #manifest(id: string, snapshotId: string): Promise<SnapshotManifest> {
    const text = await readFile(join(this.#snapshotDir(id, snapshotId), 'manifest.json'), 'utf8').catch(() => null);
    if (text === null) throw notFound('snapshot', snapshotId);
    return JSON.parse(text) as SnapshotManifest;
  }

  async #load(id: string): Promise<InstanceRecord | null> {
    const text = await readFile(join(this.#dir(id), 'instance.json'), 'utf8').catch(() => null);
    return text === null ? null : (JSON.parse(text) as InstanceRecord);
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
    if (wantsDisk(rec.spec.limits.diskMiB) && !(await stat(this.#diskPath(id)).catch(() => null))) {
      await createOverlay(this.#diskPath(id), baseDiskPath(this.imageRoot), rec.spec.limits.diskMiB, this.#vmUser());
    }
    if (changed) await this.#save(rec);
  }

  async #save(rec: InstanceRecord): Promise<void> {
    const file = join(this.#dir(rec.spec.id), 'instance.json');
    await writeFile(`${file}.tmp`, `${JSON.stringify(rec, null, 2)}\n`, { mode: 0o600 });
    await rename(`${file}.tmp`, file);
  }

  #checkId(id: string): void {
    if (!SAFE_ID.test(id)) throw new StrataError('STRATA_ERR_VALIDATION', `bad id '${id}': letters, digits, '.', '_', '-'; at most 64`, { id });
  }

  #vmUser(): VmUser {
    if (!this.#user) throw new StrataError('STRATA_ERR_LEVEL_UNAVAILABLE', `level ${this.level} is not provisioned`);
    return this.#user;
  }

  #instancesDir(): string { return join(this.stateDir, 'instances'); }
  #dir(id: string): string { return join(this.#instancesDir(), id); }
  #runDir(id: string): string { return join(this.#dir(id), 'run'); }
  #qmpPath(id: string): string { return join(this.#runDir(id), 'qmp.sock'); }
  #pidPath(id: string): string { return join(this.#runDir(id), 'qemu.pid'); }
  /** Written by the daemon, so outside run/ (the VM user's: a link planted there must not steer the daemon's writes). */
  #consolePath(id: string): string { return join(this.#dir(id), 'console.log'); }
  #consoleSocketPath(id: string): string { return join(this.#runDir(id), 'console.sock'); }
  #diskPath(id: string): string { return join(this.#dir(id), 'disk.qcow2'); }
  #snapshotDir(id: string, snapshotId: string): string { return join(this.#dir(id), 'snapshots', snapshotId); }
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
