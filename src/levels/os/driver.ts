/**
 * `OsDriver` (id `os.runc`): the `os` level — tenant code in OCI containers run by
 * runc (or crun), each with every namespace, its tenant's user-id range, a
 * read-only overlay root, seccomp, no dangerous capabilities, cgroup limits under
 * its tenant's parent cgroup, and its own network namespace on its tenant's bridge.
 *
 * On disk, per instance (`<stateDir>/instances/<id>/`):
 *
 *     instance.json     what it was created from, and its allocations (written last: its presence means "created")
 *     bundle/           config.json (generated, validated) and the runtime's pid file
 *     upper/ work/      the overlay's writable layer
 *     lower             a link to the tenant's copy of the image (the overlay is mounted with relative layer paths: see `mountOverlay`)
 *     volume.ext4       the data volume, when asked for
 *     console.log       stdout and stderr of the container, rotated
 *
 * and, while it runs, under `<runRoot>/` (default /run/strata/os): its overlay root
 * mounted at `rootfs/<id>`, its volume at `volumes/<id>`, and runc's own state in
 * `runc/`. The mount points live there, not in the state dir, because runc enters
 * them as the tenant's mapped root, who must be able to walk the path: the state
 * dir (often inside a private data dir) stays 0700.
 *
 * Snapshots live beside the instances, per tenant, in `<stateDir>/snapshots/<tenant>/`
 * (see `snapshots.ts`): they outlive the instance they were taken of.
 *
 * A stopped instance holds files only; a running one also holds its runc container,
 * its mounts and its veth. Everything is found again from disk and `runc list`,
 * so a fresh driver after a daemon crash sees (and can delete) all of it.
 */
import { existsSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { chmod, mkdir, readFile, readdir, rename, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { discard } from '../../core/discard.js';
import { KeyedMutex } from '../../core/keyed-mutex.js';
import { InvalidStateTransition, StrataError, conflict, notFound } from '../../core/errors.js';
import type { InstanceInfo } from '../../core/instance-facts.js';
import { validationError } from '../../core/validation.js';
import type { Quota } from '../../store/types.js';
import type { Level } from '../ids.js';
import type { Applied, DriverAvailability, DriverOperation, ImageInfo, InstanceSpec, LevelDriver, ObservedInstance, SnapshotResult } from '../driver.js';
import type { CopyOptions, ExecOptions, ExecSession, InstanceUsage, LogOptions } from '../driver.js';
import { logStream } from '../log-stream.js';
import { startExecSession } from './exec-session.js';
import type { Readable } from 'node:stream';
import { Allocations, type TenantLimits } from './allocations.js';
import { Cgroups, detectCgroupMode, instanceCgroupPath } from './cgroups.js';
import { IdentityTable, monotonicNs } from './identities.js';
import { run } from './exec.js';
import { ImageStore } from './images.js';
import { importOciImage } from './oci-import.js';
import { rotateIfLarge } from './logs.js';
import { Network } from './network.js';
import { instanceUsage } from './stats.js';
import { parseOsInput, type OsInstanceConfig } from './instance-config.js';
import { parseOsDriverOptions, type OsDriverConfig, type OsDriverOptions } from './options.js';
import { createVolume, ensureShiftedImage, mountOverlay, mountPoints, mountVolume, prepareUpper, pruneShiftedImages, unmount } from './rootfs.js';
import { SnapshotStore, emptyDir } from './snapshots.js';
import { catchesSigterm, isAlive, waitForExit } from '../../core/proc.js';
import { Runtime, type ExecResult } from './runtime.js';
import { resolveImageUser, type ProcessUser } from './image-user.js';
import { readJson, writeJsonAtomic } from './state-file.js';
import { validateSpec } from './validate.js';
import { InstanceFiles, type InstanceRecord } from './instance-files.js';
import { planInstance } from './plan.js';
import { claimRunRoot, firstUnsearchableAncestor } from './run-root.js';
import { captureInstance, unmountDir } from './capture.js';
import { reconfigureInstance } from './reconfigure.js';
import { copyIntoInstance, copyOutOfInstance } from './files.js';

/** Processes a tenant may run per instance of its quota, summed on its parent cgroup. */
const PIDS_PER_INSTANCE = 1024;

const LOG_ROTATION_INTERVAL_MS = 5_000;

export class OsDriver implements LevelDriver {
  readonly id = 'os.runc';
  readonly level: Level = 'os';
  readonly supports: ReadonlySet<DriverOperation> = new Set<DriverOperation>(['pause', 'resume', 'snapshot', 'restore', 'clone', 'logs', 'exec']);

  readonly config: OsDriverConfig;
  readonly images: ImageStore;
  /** Per-tenant, content-addressed snapshots under `<stateDir>/snapshots`. */
  readonly snapshots: SnapshotStore;
  readonly #runtime: Runtime;
  readonly #allocations: Allocations;
  readonly #network: Network;
  readonly #locks = new KeyedMutex();
  readonly #files: InstanceFiles;
  #cgroups: Cgroups | null = null;
  #rotation: NodeJS.Timeout | null = null;
  /**
   * cgroup id → (tenant, instance, generation) of every container start, for the
   * guard's os interceptor: registered between `runc create` and `runc start`.
   */
  readonly identities = new IdentityTable();

  constructor(options: OsDriverOptions = {}) {
    this.config = parseOsDriverOptions(options);
    this.images = new ImageStore(this.config.imagesDir);
    this.snapshots = new SnapshotStore(join(this.config.stateDir, 'snapshots'));
    this.#files = new InstanceFiles(this.config.stateDir, this.config.runRoot);
    this.#runtime = new Runtime(this.config.runtime, join(this.config.runRoot, 'runc'));
    this.#allocations = new Allocations(this.config);
    this.#network = new Network({ tag: this.config.tag, hostPorts: this.config.hostPorts });
  }

  /** Probes the runtime, cgroups, overlayfs, user namespaces and the network tools; prepares state dirs and the firewall. */
  async provision(): Promise<DriverAvailability> {
    let version: string;
    try {
      version = await this.#runtime.version();
    } catch {
      return { available: false, reason: `the runtime '${this.config.runtime}' is not installed (apt-get install runc)` };
    }
    const mode = detectCgroupMode();
    if (mode === 'v1' && /crun/.test(version)) return { available: false, reason: `${version} refuses cgroup v1/hybrid machines: use runc` };
    const filesystems = await readFile('/proc/filesystems', 'utf8');
    if (!/\toverlay\n/.test(filesystems)) return { available: false, reason: 'the kernel has no overlayfs' };
    if (!existsSync('/proc/self/ns/user') || Number((await readFile('/proc/sys/user/max_user_namespaces', 'utf8')).trim()) < 1) {
      return { available: false, reason: 'user namespaces are disabled' };
    }
    for (const tool of ['nft', 'ip', 'nsenter', 'mkfs.ext4', 'mount']) {
      if (!(await run('sh', ['-c', `command -v ${tool}`]).then(() => true, () => false))) {
        return { available: false, reason: `'${tool}' is missing (the setup step installs it)` };
      }
    }
    await mkdir(join(this.config.stateDir, 'instances'), { recursive: true, mode: 0o700 });
    // The mount points: runc mounts them as the tenant's mapped root, who must be able to walk to them (not list them).
    for (const dir of [this.config.runRoot, join(this.config.runRoot, 'rootfs'), join(this.config.runRoot, 'volumes')]) {
      await mkdir(dir, { recursive: true, mode: 0o711 });
      await chmod(dir, 0o711);
    }
    const closed = await firstUnsearchableAncestor(this.config.runRoot);
    if (closed) return { available: false, reason: `${closed} is not searchable by others, so containers cannot reach their root under ${this.config.runRoot}` };
    const owner = await claimRunRoot(this.config.runRoot, this.config.stateDir);
    if (owner) return { available: false, reason: `${this.config.runRoot} belongs to the daemon with state dir ${owner.stateDir} (pid ${owner.pid}); give this one its own runRoot, cgroupRoot, subnet, idBase and tag` };
    this.#cgroups = new Cgroups(mode, this.config.cgroupRoot);
    this.identities.scope = this.#cgroups.unifiedScope();
    await this.#network.ensureFirewall();
    this.#rotation ??= setInterval(() => void this.#rotateLogs(), LOG_ROTATION_INTERVAL_MS).unref();
    await this.#registerRunning();
    const images = (await this.images.list()).map((m) => m.name);
    return {
      available: true,
      reason: `${version.split(' version ').join(' ')}, cgroup ${mode}${mode === 'v1' && existsSync('/sys/fs/cgroup/unified') ? ' (hybrid)' : ''}, overlayfs, user namespaces; images: ${images.join(', ') || 'none (run the setup step)'}`,
    };
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
    return this.#serial(id, async () => {
      await this.#files.record(id);
      await this.#runtime.pause(id);
    });
  }

  resume(id: string): Promise<void> {
    return this.#serial(id, async () => {
      await this.#files.record(id);
      await this.#runtime.resume(id);
    });
  }

  /**
   * Captures the instance's upper layer (and its volume's contents) into its
   * tenant's snapshot store. A running instance is frozen for the copy and thawed
   * after; a paused one stays paused; a stopped one has its volume mounted for
   * the copy only. Process state is not kept (see docs/os-level.md: CRIU).
   */
  snapshot(id: string, snapshotId: string): Promise<SnapshotResult> {
    return this.#serial(id, () => captureInstance({ files: this.#files, runtime: this.#runtime, snapshots: this.snapshots }, id, snapshotId));
  }

  /**
   * Replaces the upper layer (and the volume's contents) of a stopped instance
   * with a snapshot of its tenant's. Every file is checked against its sha256
   * before anything of the instance changes: a missing or corrupt object is an
   * error naming it, and the instance keeps what it had.
   */
  restore(id: string, snapshotId: string): Promise<void> {
    return this.#serial(id, () => this.#restore(id, snapshotId));
  }

  /**
   * Creates `spec` as a new, stopped instance whose root upper layer and volume
   * are snapshot `from.snapshotId` (of its tenant's instance `from.instanceId`),
   * every object checked against its sha256. It gets everything else fresh: its
   * own address, veth, hostname (its name) and cgroup. The snapshot's image must
   * be the one the new instance is created over, byte for byte.
   */
  clone(spec: InstanceSpec, from: { instanceId: string; snapshotId: string }): Promise<void> {
    return this.#serial(spec.id, () => this.#clone(spec, from));
  }

  /** Limits live on a running container's cgroup; everything from its next start (`reconfigure.ts`). */
  reconfigure(spec: InstanceSpec, changed: readonly string[]): Promise<Record<string, Applied>> {
    const deps = { files: this.#files, runtime: this.#runtime, cgroups: this.#requireCgroups(), allocations: this.#allocations, images: this.images, config: this.config };
    return this.#serial(spec.id, () => reconfigureInstance(deps, spec, changed));
  }

  delete(id: string): Promise<void> {
    return this.#serial(id, () => this.#delete(id));
  }

  /** The image store's images (built-in and imported), with digest and size. */
  listImages(): Promise<ImageInfo[]> {
    return this.images.infos();
  }

  /** Imports an OCI image layout or tarball on this machine (digests checked, whiteouts applied) as `name`. */
  async importImage(path: string, name: string, progress?: (fraction: number) => void): Promise<ImageInfo> {
    if (!path.startsWith('/')) throw validationError('path', 'the image path must be absolute (a file on the server)');
    const { manifest } = await importOciImage(this.images, path, name, (p) => progress?.(p.bytes > 0 ? p.doneBytes / p.bytes : 0));
    return this.images.info(manifest);
  }

  /** Deletes one of a tenant's snapshots and what no other snapshot of the tenant needs; returns the bytes freed. */
  deleteSnapshot(tenantId: string, snapshotId: string): Promise<{ freedBytes: number }> {
    return this.snapshots.delete(tenantId, snapshotId);
  }

  inspect(id: string): Promise<ObservedInstance | null> {
    return this.#serial(id, () => this.#inspect(id));
  }
  stats(id: string): Promise<InstanceUsage | null> {
    return instanceUsage({ cgroups: this.#requireCgroups(), network: this.#network, files: this.#files }, id);
  }

  /** Every instance on disk and every container in the runtime's root, orphans included. */
  async list(): Promise<ObservedInstance[]> {
    const ids = new Set([...(await this.#files.ids()), ...(await this.#runtime.list()).map((c) => c.id)]);
    const observed = await Promise.all([...ids].map((id) => this.inspect(id)));
    return observed.filter((o): o is ObservedInstance => o !== null);
  }

  /**
   * Stops log rotation. When the driver holds no instance any more, also removes
   * what provisioning and tenants left on the host: the firewall table, bridges,
   * cgroup parents and unused shifted images. Running instances are never touched:
   * the next daemon adopts them.
   */
  async cleanup(): Promise<void> {
    if (this.#rotation) clearInterval(this.#rotation);
    this.#rotation = null;
    if ((await this.#files.ids()).length > 0) return;
    if (this.#runtime.rootExists() && (await this.#runtime.list()).length > 0) return;
    for (const index of await this.#network.bridges()) await this.#network.removeBridge(index);
    await this.#network.removeFirewall();
    const cgroups = this.#cgroups ?? new Cgroups(detectCgroupMode(), this.config.cgroupRoot);
    await cgroups.removeAll();
    await pruneShiftedImages(this.config.stateDir, new Set());
  }

  /**
   * Sets (or with undefined, lifts) a tenant's quota on real usage: the limits of
   * its parent cgroup, which all its instances share. Kept in the allocation file
   * so a re-created parent gets them again.
   */
  /** The tenant's quota as limits on its parent cgroup: vCPUs, memory, and pids for its instances. */
  /**
   * A deleted tenant's snapshot store goes (or into quarantine), and its parent
   * cgroup with it. Its id range and /24 stay allocated: indexes are never reused.
   */
  async purgeTenant(tenantId: string, quarantine: { dir: string; prefix: string } | null): Promise<void> {
    await this.snapshots.locked(tenantId, () =>
      discard(this.snapshots.tenantDir(tenantId), quarantine && { dir: quarantine.dir, as: `${quarantine.prefix}os-snapshots` }));
    if (this.#cgroups && (await this.#allocations.instancesOf(tenantId)).length === 0) await this.#cgroups.removeTenant(tenantId);
  }

  async setTenantQuota(tenantId: string, quota: Quota): Promise<void> {
    await this.setTenantLimits(tenantId, { vcpus: quota.vcpus, memoryMiB: quota.memoryMiB, pids: PIDS_PER_INSTANCE * Math.max(1, quota.instances) });
  }

  async setTenantLimits(tenantId: string, limits: TenantLimits | undefined): Promise<void> {
    await this.#allocations.setTenantLimits(tenantId, limits);
    await this.#requireCgroups().ensureTenant(tenantId, limits);
  }

  /**
   * Runs a command inside a running instance (not interactive), confined exactly
   * as the instance's own process is; the exit code and output come back. The
   * state is checked under the instance's lock, the command runs outside it, so
   * a long command never holds up a stop.
   */
  async run(id: string, args: readonly string[], opts: { env?: readonly string[]; timeoutMs?: number; user?: string } = {}): Promise<ExecResult> {
    await this.#requireRunning(id);
    const { user: asked, ...rest } = opts;
    const user = await this.#execUser(id, asked);
    return this.#runtime.exec(id, args, { ...rest, ...(user ? { user } : {}) });
  }

  /**
   * A live process in a running instance, with or without a terminal (see
   * `exec-session.ts`), confined as the instance's own process is; the state is
   * checked under the instance's lock, the session lives outside it.
   */
  async exec(id: string, argv: readonly string[], opts: ExecOptions): Promise<ExecSession> {
    await this.#requireRunning(id);
    const user = await this.#execUser(id, opts.user);
    return startExecSession({ binary: this.#runtime.binary, root: this.#runtime.root, id, ...(user ? { user } : {}) }, argv, opts);
  }

  /** `strata cp`, by the instance's own tar (see `files.ts`). */
  readonly copyIn = (id: string, dir: string, archive: Buffer, opts: CopyOptions): Promise<void> => copyIntoInstance(this, id, dir, archive, opts);
  readonly copyOut = (id: string, path: string, opts: CopyOptions & { maxBytes: number }): Promise<Buffer> => copyOutOfInstance(this, id, path, opts);

  /**
   * The user an exec asks for, resolved against the instance's image (its
   * read-only lower layer: names the tenant added at run time resolve only as
   * ids) and checked to lie in the tenant's id range; none: the container's own.
   */
  async #execUser(id: string, user: string | undefined): Promise<ProcessUser | undefined> {
    if (user === undefined) return undefined;
    return resolveImageUser(user, (await this.#files.record(id)).lower);
  }

  /**
   * The container's captured stdout and stderr, across rotations: all of it (or
   * its last `tail` lines), then, when following, what it writes next, until the
   * instance is deleted.
   */
  async logs(id: string, opts: LogOptions): Promise<Readable> {
    const dir = this.#files.dir(id);
    await this.#files.record(id);
    return logStream({
      path: this.logPath(id), keep: this.config.logKeep, follow: opts.follow,
      ...(opts.tail !== undefined ? { tail: opts.tail } : {}), gone: () => !existsSync(dir),
    });
  }

  async #requireRunning(id: string): Promise<void> {
    await this.#serial(id, async () => {
      await this.#files.record(id);
      const container = await this.#runtime.state(id);
      if (container?.status !== 'running') throw new InvalidStateTransition(container?.status ?? 'stopped', 'running', 'exec in');
    });
  }

  /** The current log file of an instance (older ones are `.1`, `.2` …). */
  logPath(id: string): string {
    return this.#files.logPath(id);
  }

  /** Where the gateway reaches the instance's service, once it runs. */
  async address(id: string): Promise<{ address: string; port: number | null }> {
    const record = await this.#files.record(id);
    return { address: record.address, port: record.port };
  }

  // ---- the work, under the instance's lock ----

  async #create(spec: InstanceSpec): Promise<void> {
    const dir = this.#files.dir(spec.id);
    if (existsSync(dir)) throw conflict(`instance '${spec.id}' already exists`, { id: spec.id });
    const config = parseOsInput(spec);
    const image = await this.images.resolve(spec.source!);
    try {
      await mkdir(join(dir, 'bundle'), { recursive: true, mode: 0o700 });
      const tenant = await this.#allocations.tenant(spec.tenantId);
      const address = await this.#allocations.address(spec.id, spec.tenantId);
      const lower = await ensureShiftedImage(this.config.stateDir, image, tenant.hostId);
      await prepareUpper(dir, tenant.hostId);
      if (config.volumeMiB !== undefined) await createVolume(join(dir, 'volume.ext4'), config.volumeMiB, tenant.hostId);
      const userSpec = config.user ?? image.manifest.config.user;
      const user = userSpec ? await resolveImageUser(userSpec, image.rootfs) : undefined;
      const cgroups = this.#requireCgroups();
      const { record, oci } = planInstance({
        spec, config, image, tenant, address, lower, user, driver: this.config,
        hostVeth: this.#network.hostVethName(spec.id), cgroupMode: cgroups.mode, ioWeight: cgroups.hasIoWeight(),
        rootPath: this.#files.rootfsDir(spec.id), volumeDir: this.#files.volumeDir(spec.id),
      });
      validateSpec(oci, { allowedBindSources: [this.#files.volumeDir(spec.id)] });
      await writeFile(join(dir, 'bundle', 'config.json'), `${JSON.stringify(oci, null, 2)}\n`, { mode: 0o600 });
      await writeJsonAtomic(join(dir, 'instance.json'), record);
    } catch (e) {
      await this.#delete(spec.id).catch(() => undefined);
      throw e;
    }
  }

  async #start(id: string): Promise<void> {
    const record = await this.#files.forStart(id);
    const dir = this.#files.dir(id);
    const cgroups = this.#requireCgroups();
    const tenant = await this.#allocations.tenant(record.spec.tenantId);
    // Before the container's cgroup exists: cgroup v1 refuses a parent CPU quota below a child's.
    await cgroups.ensureTenant(record.spec.tenantId, tenant.limits);
    // The bridge is needed only once the container's network namespace exists: a tenant's first start makes it meanwhile.
    const bridge = this.#network.ensureBridge(record.tenantIndex, `${record.gateway}/24`);
    bridge.catch(() => undefined); // awaited below; this only keeps an early failure from being "unhandled"
    try {
      // A container left from a process that died on its own (runc state "stopped") holds the id.
      if (this.#runtime.holds(id)) await this.#runtime.delete(id, true);
      await mountOverlay(dir, record.lower, this.#files.rootfsDir(id));
      if (record.config.volumeMiB !== undefined) await mountVolume(join(dir, 'volume.ext4'), this.#files.volumeDir(id));
      // The container's cgroup is made here, before runc (which adopts it), so its id is registered before
      // any process runs in it: runc's own init, under the seccomp filter already while it waits for `start`, too.
      const since = monotonicNs();
      cgroups.makeUnified(record.cgroupsPath);
      this.#registerIdentity(record, 0, since);
      await this.#runtime.create(id, join(dir, 'bundle'), this.logPath(id));
      const pid = Number((await readFile(join(dir, 'bundle', 'pid'), 'utf8')).trim());
      this.#registerIdentity(record, pid, since); // now with its init: its exit retires the identity
      await this.#network.attach(pid, record.hostVeth, await bridge, `${record.address}/24`);
      await this.#runtime.start(id);
    } catch (e) {
      await bridge.catch(() => undefined);
      await this.#teardownRunning(id, record).catch(() => undefined);
      throw e;
    }
  }

  async #restore(id: string, snapshotId: string): Promise<void> {
    const record = await this.#files.record(id);
    const container = await this.#runtime.state(id);
    if (container && container.status !== 'stopped') throw new InvalidStateTransition(container.status, 'stopped', 'restore');
    // A container that exited on its own still holds mounts: a restore starts from a stopped instance.
    if (container) await this.#teardownRunning(id, record);
    const tenantId = record.spec.tenantId;
    await this.snapshots.locked(tenantId, () => this.#restoreLocked(id, record, snapshotId));
  }

  async #restoreLocked(id: string, record: InstanceRecord, snapshotId: string): Promise<void> {
    const dir = this.#files.dir(id);
    const tenantId = record.spec.tenantId;
    const { manifest } = await this.snapshots.manifest(tenantId, snapshotId);
    if (manifest.image.digest !== record.imageDigest) {
      throw conflict(`snapshot '${snapshotId}' was taken over image ${manifest.image.name}@${manifest.image.digest.slice(0, 12)}, not this instance's`, { snapshotId, image: manifest.image });
    }
    const hasVolume = record.config.volumeMiB !== undefined;
    if (hasVolume !== (manifest.volume !== null)) {
      throw conflict(`snapshot '${snapshotId}' ${manifest.volume ? 'has' : 'has no'} data volume, the instance ${hasVolume ? 'has' : 'has none'}`, { snapshotId });
    }
    // Everything is written (and every object checked) beside the instance first; only then is anything replaced.
    const staging = join(dir, `restore-${randomUUID().slice(0, 8)}.tmp`);
    try {
      await mkdir(join(staging, 'upper'), { recursive: true, mode: 0o700 });
      await this.snapshots.materialize(tenantId, snapshotId, manifest.upper, join(staging, 'upper'), record.hostId);
      if (manifest.volume) {
        await mkdir(join(staging, 'volume'), { mode: 0o700 });
        await this.snapshots.materialize(tenantId, snapshotId, manifest.volume, join(staging, 'volume'), record.hostId);
      }
      const old = join(staging, 'old-upper');
      await rename(join(dir, 'upper'), old);
      await rename(join(staging, 'upper'), join(dir, 'upper')).catch(async (e: unknown) => {
        await rename(old, join(dir, 'upper'));
        throw e;
      });
      await rm(join(dir, 'work'), { recursive: true, force: true });
      await mkdir(join(dir, 'work'), { mode: 0o755 });
      if (manifest.volume) {
        const target = this.#files.volumeDir(id);
        await mountVolume(join(dir, 'volume.ext4'), target);
        try {
          await emptyDir(target);
          await run('cp', ['-a', '--', `${join(staging, 'volume')}/.`, `${target}/`]);
        } finally {
          await unmountDir(target);
        }
      }
    } finally {
      await rm(staging, { recursive: true, force: true });
    }
  }

  async #clone(spec: InstanceSpec, from: { instanceId: string; snapshotId: string }): Promise<void> {
    const taken = await this.snapshots.get(spec.tenantId, from.snapshotId);
    if (!taken || taken.instanceId !== from.instanceId) throw notFound('snapshot', from.snapshotId);
    await this.#create(spec);
    try {
      const record = await this.#files.record(spec.id);
      await this.snapshots.locked(spec.tenantId, () => this.#restoreLocked(spec.id, record, from.snapshotId));
    } catch (e) {
      await this.#delete(spec.id).catch(() => undefined);
      throw e;
    }
  }

  async #stop(id: string, graceMs: number): Promise<void> {
    const record = await this.#files.record(id);
    const container = await this.#runtime.state(id);
    if (container && (container.status === 'running' || container.status === 'paused')) {
      const pid = container.pid;
      // PID 1 of a namespace ignores signals it has no handler for: skip the grace when it cannot hear TERM.
      if (catchesSigterm(pid)) {
        await this.#runtime.kill(id, 'TERM').catch(() => undefined);
        if (container.status === 'paused') await this.#runtime.resume(id).catch(() => undefined);
        await waitForExit(pid, graceMs);
      } else if (container.status === 'paused') {
        await this.#runtime.resume(id).catch(() => undefined);
      }
      if (isAlive(pid)) {
        await this.#runtime.kill(id, 'KILL').catch(() => undefined);
        await waitForExit(pid, 10_000);
      }
    }
    await this.#teardownRunning(id, record);
  }

  /** Removes what only a running instance holds: its container (and cgroup), veth and mounts. */
  async #teardownRunning(id: string, record: InstanceRecord | null): Promise<void> {
    const running = this.identities.current(id);
    if (running) this.identities.retire(running.cgroupId);
    await this.#runtime.delete(id, true);
    if (record) this.#cgroups?.removeUnified(record.cgroupsPath); // made before runc, which may never have run
    await this.#network.detach(record?.hostVeth ?? this.#network.hostVethName(id));
    for (const mountPoint of [this.#files.volumeDir(id), this.#files.rootfsDir(id)]) {
      await unmount(mountPoint);
      // rmdir, never a recursive remove: should a mount survive, this fails instead of emptying it.
      await rmdir(mountPoint).catch((e: NodeJS.ErrnoException) => {
        if (e.code !== 'ENOENT') throw e;
      });
    }
  }

  async #delete(id: string): Promise<void> {
    const record = await this.#files.find(id);
    await this.#teardownRunning(id, record);
    await rm(this.#files.dir(id), { recursive: true, force: true });
    await this.#allocations.releaseAddress(id);
    if (record && (await this.#allocations.instancesOf(record.spec.tenantId)).length === 0) {
      await this.#requireCgroups().removeTenant(record.spec.tenantId);
      await this.#network.removeBridge(record.tenantIndex);
    }
  }

  async #inspect(id: string): Promise<ObservedInstance | null> {
    const dir = this.#files.dir(id);
    const record = await this.#files.find(id);
    const container = await this.#runtime.state(id);
    if (!record) {
      if (!container && !existsSync(dir)) return null;
      return { id, state: 'failed', info: { error: 'orphan: the driver has no record of this instance', ...(container ? { pid: container.pid } : {}) } };
    }
    const info: InstanceInfo = { address: record.address, port: record.port, image: record.image, tenantIndex: record.tenantIndex };
    if (!container) return { id, state: 'stopped', info };
    if (container.status === 'stopped' || container.status === 'created' || container.status === 'creating') {
      return { id, state: 'failed', info: { ...info, error: container.status === 'stopped' ? 'the container process exited' : 'the container never started' } };
    }
    const stats = await this.#requireCgroups().stats(record.cgroupsPath);
    const net = await this.#network.counters(record.hostVeth);
    return {
      id,
      state: container.status,
      info: { ...info, pid: container.pid, stats: { ...stats, netRxBytes: net?.rxBytes ?? null, netTxBytes: net?.txBytes ?? null } },
    };
  }

  // ---- helpers ----

  /**
   * Records the container's cgroup id as this start of the instance. `since` is
   * now (before `runc start`) for a fresh start; 0 for containers found running
   * at provision (a daemon restart), which a previous daemon registered at their
   * start — safe because the kernel never gives a cgroup id to anyone else.
   */
  #registerIdentity(record: InstanceRecord, initPid: number, since: bigint): void {
    const cgroupId = this.#requireCgroups().unifiedId(record.cgroupsPath);
    if (cgroupId === null) return; // no cgroup v2 at all: the interceptor counts this instance's records as unattributed
    this.identities.register({
      cgroupId, tenantId: record.spec.tenantId, instanceId: record.spec.id, generation: cgroupId, initPid,
      uidBase: record.hostId, vcpus: record.spec.limits.vcpus, since,
    });
  }

  async #registerRunning(): Promise<void> {
    for (const c of await this.#runtime.list().catch(() => [])) {
      if (c.status !== 'running' && c.status !== 'paused') continue;
      const record = await this.#files.find(c.id);
      if (record && !this.identities.current(c.id)) this.#registerIdentity(record, c.pid, 0n);
    }
  }

  #serial<T>(id: string, fn: () => Promise<T>): Promise<T> {
    return this.#locks.run(id, fn);
  }

  #requireCgroups(): Cgroups {
    if (!this.#cgroups) throw new StrataError('STRATA_ERR_UNAVAILABLE', 'the os driver is not provisioned', { driver: this.id });
    return this.#cgroups;
  }

  async #rotateLogs(): Promise<void> {
    for (const id of await this.#files.ids()) {
      await rotateIfLarge(this.logPath(id), this.config.logMaxBytes, this.config.logKeep).catch(() => undefined);
    }
  }
}
