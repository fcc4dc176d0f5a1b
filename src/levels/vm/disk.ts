/**
 * Instance disks: a qcow2 overlay per instance over one shared, read-only base
 * (`images/vm/disk/base.qcow2`, a small ext4 built by the setup step). The
 * overlay's virtual size is the instance's `diskMiB`, so the guest can never
 * make it hold more than that; its filesystem is grown to the same size once, at
 * create, while the overlay is exported as a plain file by qemu-storage-daemon
 * (FUSE) for `resize2fs` (no nbd module on these hosts). The guest mounts it at /data.
 */
import { spawn } from 'node:child_process';
import { constants } from 'node:fs';
import { chmod, chown, copyFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { StrataError } from '../../core/errors.js';
import { run } from '../os/exec.js';
import type { VmUser } from './launch.js';

/** The base filesystem's size: the smallest disk an instance can have. */
export const BASE_DISK_MIB = 32;

export const baseDiskPath = (imageRoot: string): string => join(imageRoot, 'disk', 'base.qcow2');

/** Checks `diskMiB` (0: no disk) against the base; returns whether the instance gets a disk. */
export function wantsDisk(diskMiB: number): boolean {
  if (diskMiB === 0) return false;
  if (!Number.isInteger(diskMiB) || diskMiB < BASE_DISK_MIB || diskMiB > 1_048_576) {
    throw new StrataError('STRATA_ERR_VALIDATION', `vm diskMiB: 0 (no disk) or ${BASE_DISK_MIB}..1048576`, { diskMiB });
  }
  return true;
}

/**
 * Creates `file`, a qcow2 overlay of `diskMiB` over `base` whose filesystem fills
 * it, owned by the VM user. `grow: false` leaves it bare (all reads from the base):
 * the target of a move's disk mirror, which copies the sender's overlay into it.
 */
export async function createOverlay(file: string, base: string, diskMiB: number, user: VmUser, grow = true): Promise<void> {
  if (!(await stat(base).catch(() => null))) {
    throw new StrataError('STRATA_ERR_LEVEL_UNAVAILABLE', `no base disk at ${base} (run scripts/setup.d/40-vm.sh)`, { base });
  }
  await rm(file, { force: true });
  await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', base, file, `${diskMiB}M`]);
  if (grow) await growFilesystem(file);
  await giveTo(file, user);
}

/** The VM user's alone: QEMU opens it read-write, nobody else reads a tenant's disk. */
export async function giveTo(file: string, user: VmUser): Promise<void> {
  await chown(file, user.uid, user.gid);
  await chmod(file, 0o600);
}

/** Grows the ext4 inside the qcow2 `file` to the image's virtual size (offline: no QEMU may hold it). */
async function growFilesystem(file: string): Promise<void> {
  const mountpoint = `${file}.raw`;
  await writeFile(mountpoint, '');
  const daemon = spawn('qemu-storage-daemon', [
    '--blockdev', `driver=file,filename=${file},node-name=file0`,
    '--blockdev', 'driver=qcow2,file=file0,node-name=disk0',
    '--export', `type=fuse,id=export0,node-name=disk0,mountpoint=${mountpoint},writable=on`,
  ], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  daemon.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  const exited = new Promise<void>((resolve) => daemon.once('exit', () => resolve()));
  try {
    await waitForExport(mountpoint, exited);
    await run('e2fsck', ['-f', '-p', mountpoint]).catch(() => undefined); // resize2fs insists on a freshly checked filesystem
    await run('resize2fs', ['-f', mountpoint]);
  } catch (e) {
    throw new StrataError('STRATA_ERR_DRIVER', `growing the disk ${file} failed: ${(e as Error).message} ${stderr.trim()}`, { file }, { cause: e });
  } finally {
    daemon.kill('SIGTERM');
    await exited;
    await rm(mountpoint, { force: true });
  }
}

/** The FUSE export replaces the empty placeholder with a file of the disk's size. */
async function waitForExport(mountpoint: string, exited: Promise<void>): Promise<void> {
  let gone = false;
  void exited.then(() => { gone = true; });
  const deadline = Date.now() + 10_000;
  while (((await stat(mountpoint).catch(() => null))?.size ?? 0) === 0) {
    if (gone) throw new Error('qemu-storage-daemon exited');
    if (Date.now() > deadline) throw new Error('the FUSE export did not appear in 10 s');
    await sleep(20);
  }
}

/** Copies a (paused or stopped) VM's overlay; a clone of the file where the filesystem can, else a copy. */
export async function copyDisk(from: string, to: string): Promise<void> {
  await copyFile(from, to, constants.COPYFILE_FICLONE);
}
