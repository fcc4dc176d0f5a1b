/**
 * Snapshots, restores and clones of a VM (the driver calls these under the
 * instance's lock). A snapshot keeps memory and devices (`snapshot.ts`) when
 * the VM runs, and a copy of its disk overlay; a restore makes the next start
 * load it; a clone is a new instance made from one, which takes a new identity
 * at its first start.
 */
import { mkdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { StrataError, notFound } from '../../core/errors.js';
import { sha256File } from '../../core/hash.js';
import type { InstanceSpec, SnapshotResult } from '../driver.js';
import type { QemuConnections, QueryStatus } from './connections.js';
import { copyDisk, giveTo } from './disk.js';
import { checkId, type VmFiles } from './instance-files.js';
import type { VmUser } from './launch.js';
import type { QmpClient } from './qmp.js';
import { manifestDigest, migrateToFile, type SnapshotManifest } from './snapshot.js';

/** What the snapshot operations use of the driver. */
export interface VmContext {
  files: VmFiles;
  connections: QemuConnections;
  user(): VmUser;
  startTimeoutMs: number;
}

export async function takeSnapshot(vm: VmContext, id: string, snapshotId: string): Promise<SnapshotResult> {
  checkId(snapshotId);
  const rec = await vm.files.require(id);
  const dir = vm.files.snapshotDir(id, snapshotId);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true, mode: 0o700 });
  let memory: SnapshotManifest['memory'] = null;
  let disk: SnapshotManifest['disk'] = null;
  if (!(await vm.files.pid(id))) disk = await copyDiskInto(vm.files.diskPath(id), dir);
  else {
    const qmp = await vm.connections.client(id);
    const { running } = await qmp.execute<QueryStatus>('query-status');
    if (running) await qmp.execute('stop');
    try {
      const file = join(dir, 'memory.bin');
      await migrateToFile(qmp, join(vm.files.runDir(id), 'migrate.sock'), file, vm.user());
      memory = { file: 'memory.bin', sizeBytes: (await stat(file)).size, sha256: await sha256File(file) };
      disk = await copyDiskInto(vm.files.diskPath(id), dir);
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
export async function restoreSnapshot(vm: VmContext, id: string, snapshotId: string): Promise<void> {
  checkId(snapshotId);
  const rec = await vm.files.require(id);
  if (await vm.files.pid(id)) throw new StrataError('STRATA_ERR_CONFLICT', `stop ${id} before restoring it`, { id });
  const manifest = await vm.files.manifest(id, snapshotId);
  // The machine the restored state is loaded into: the next start's (a change may be waiting for it).
  const { vcpus, memoryMiB } = (rec.next ?? rec).spec.limits;
  if (manifest.arch !== rec.config.arch || manifest.machine.vcpus !== vcpus || manifest.machine.memoryMiB !== memoryMiB) {
    throw new StrataError('STRATA_ERR_CONFLICT', `snapshot ${snapshotId} was taken of a different machine`, { snapshot: manifest.machine, instance: { vcpus, memoryMiB } });
  }
  if (manifest.disk) {
    await copyDisk(join(vm.files.snapshotDir(id, snapshotId), manifest.disk.file), vm.files.diskPath(id));
    await giveTo(vm.files.diskPath(id), vm.user());
  }
  rec.restoreFrom = manifest.memory ? snapshotId : null;
  await vm.files.save(rec);
}

/**
 * A new, stopped instance with the snapshot's disk and memory and a fresh
 * identity: its own address, MAC (from its id), hostname (its name) and RNG
 * seed. Its first start resumes the snapshot's memory with the link held down;
 * the guest (`strata-identity`) finds the new identity in fw_cfg, takes it and
 * says so on the console, and only then does the link come up, so no frame
 * leaves with the source's identity. A snapshot without memory (of a stopped
 * VM) gives a clone that boots from the disk with its identity on the kernel
 * command line. `create` makes the instance (from the given disk), `remove` deletes it.
 */
export async function cloneSnapshot(
  vm: VmContext, spec: InstanceSpec, from: { instanceId: string; snapshotId: string },
  create: (diskFrom: string | undefined) => Promise<void>, remove: (id: string) => Promise<void>,
): Promise<void> {
  checkId(from.instanceId);
  checkId(from.snapshotId);
  const source = await vm.files.load(from.instanceId);
  if (!source || source.spec.tenantId !== spec.tenantId) throw notFound('instance', from.instanceId);
  const manifest = await vm.files.manifest(from.instanceId, from.snapshotId);
  if (manifest.disk && spec.limits.diskMiB !== source.spec.limits.diskMiB) {
    throw new StrataError('STRATA_ERR_CONFLICT', `a clone of ${from.instanceId} has its disk size (${source.spec.limits.diskMiB} MiB)`, { diskMiB: spec.limits.diskMiB });
  }
  const sourceDir = vm.files.snapshotDir(from.instanceId, from.snapshotId);
  await create(manifest.disk ? join(sourceDir, manifest.disk.file) : undefined);
  if (!manifest.memory) return;
  const { vcpus, memoryMiB } = spec.limits;
  if (manifest.machine.vcpus !== vcpus || manifest.machine.memoryMiB !== memoryMiB) {
    await remove(spec.id);
    throw new StrataError('STRATA_ERR_CONFLICT', `snapshot ${from.snapshotId} was taken of a different machine`, { snapshot: manifest.machine, clone: { vcpus, memoryMiB } });
  }
  // The clone keeps its own copy of the memory stream: it resumes from it at its first start.
  const dir = vm.files.snapshotDir(spec.id, from.snapshotId);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await copyDisk(join(sourceDir, manifest.memory.file), join(dir, manifest.memory.file));
  await writeFile(join(dir, 'manifest.json'), JSON.stringify({ ...manifest, disk: null }), { mode: 0o600 });
  const rec = (await vm.files.load(spec.id))!;
  rec.restoreFrom = from.snapshotId;
  rec.reidentify = true;
  await vm.files.save(rec);
}

/** Copies the (paused or stopped) instance's overlay into snapshot dir `dir`; null without a disk. */
async function copyDiskInto(diskPath: string, dir: string): Promise<SnapshotManifest['disk']> {
  if (!(await stat(diskPath).catch(() => null))) return null;
  const file = join(dir, 'disk.qcow2');
  await copyDisk(diskPath, file);
  return { file: 'disk.qcow2', sizeBytes: (await stat(file)).size, sha256: await sha256File(file) };
}

/**
 * A restoring QEMU reads the stream before it answers `cont`; wait until it has left `inmigrate`.
 * (An early `cont`, which QEMU 7.2 takes as "run once loaded", left the restored guest deaf to its NIC here.)
 */
export async function awaitIncoming(qmp: QmpClient, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { status } = await qmp.execute<QueryStatus>('query-status');
    if (status !== 'inmigrate') {
      if (status !== 'paused' && status !== 'prelaunch') throw new StrataError('STRATA_ERR_DRIVER', `restore ended in QEMU status ${status}`);
      return;
    }
    if (Date.now() > deadline) throw new StrataError('STRATA_ERR_DRIVER', `restore did not finish in ${timeoutMs} ms`);
    await sleep(2);
  }
}

/**
 * The guest's `strata-identity` prints STRATA-REIDENTIFIED on the console once
 * it has its new address, hostname, seed and MAC. (The NIC's MAC as QMP reports
 * it is no signal: after a restore it is already the new QEMU's.) A guest that
 * fakes the marker early only brings its own link up sooner.
 */
export async function awaitReidentified(id: string, printed: Promise<void>, timeoutMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new StrataError('STRATA_ERR_DRIVER', `the clone did not take its new identity in ${timeoutMs} ms`, { id })), timeoutMs);
  });
  try {
    await Promise.race([printed, late]);
  } finally {
    clearTimeout(timer);
  }
}
