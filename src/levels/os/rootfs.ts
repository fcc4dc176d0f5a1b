/**
 * An instance's filesystems on the host:
 *
 *  - the root: overlayfs with the tenant's shifted copy of the image as the
 *    read-only lower layer and the instance's own upper/work dirs, mounted at the
 *    bundle's `rootfs` while the instance runs;
 *  - an optional data volume: an ext4 file system in a sparse file, loop-mounted,
 *    so its size is a hard limit (`disk full` inside, nothing outside).
 *
 * Why a shifted copy: runc 1.1 (Debian 12) cannot ask for idmapped mounts, so
 * the files must really be owned by the tenant's host ids for root in the
 * container to own them. One copy per (image content, tenant) is made on first
 * use and shared by all of that tenant's instances of the image (busybox: ~2 MB,
 * a few ms; node: ~100 MB, well under a second on this machine).
 *
 * Why loop ext4 for volumes: the host root is ext4 mounted without `prjquota`, so
 * project quotas would need a remount of `/` or a dedicated XFS file system; a
 * loop file works on any host file system and dies with the instance.
 */
import { randomUUID } from 'node:crypto';
import { chmod, lchown, lstat, mkdir, readFile, readdir, readlink, rename, rm, symlink, truncate, writeFile, chown } from 'node:fs/promises';
import { join } from 'node:path';
import { KeyedMutex } from '../../core/keyed-mutex.js';
import { run, runQuietly } from './exec.js';
import { exists, type ResolvedImage } from './images.js';

const shiftLocks = new KeyedMutex();

/** Shifted image copies live under `<stateDir>/shifted/<image>-<digest12>-<hostId>/rootfs`. */
export async function ensureShiftedImage(stateDir: string, image: ResolvedImage, hostId: number): Promise<string> {
  const dir = join(stateDir, 'shifted', `${image.name}-${image.manifest.digest.slice(0, 12)}-${hostId}`);
  const rootfs = join(dir, 'rootfs');
  return shiftLocks.run(dir, async () => {
    if (await exists(join(dir, 'complete'))) return rootfs;
    const staging = `${dir}.${randomUUID().slice(0, 8)}.tmp`;
    try {
      await mkdir(staging, { recursive: true });
      await run('cp', ['-a', '--reflink=auto', image.rootfs, join(staging, 'rootfs')]);
      await shiftOwnership(join(staging, 'rootfs'), hostId);
      await writeFile(join(staging, 'complete'), `${image.manifest.digest}\n`);
      await rm(dir, { recursive: true, force: true });
      await rename(staging, dir);
    } catch (e) {
      await rm(staging, { recursive: true, force: true });
      throw e;
    }
    return rootfs;
  });
}

/** Adds `offset` to the owner and group of every file under `root`, keeping setuid/setgid bits (chown clears them). */
export async function shiftOwnership(root: string, offset: number): Promise<void> {
  const shift = async (path: string): Promise<void> => {
    const st = await lstat(path);
    await lchown(path, st.uid + offset, st.gid + offset);
    if (!st.isSymbolicLink() && (st.mode & 0o6000) !== 0) await chmod(path, st.mode & 0o7777);
    if (st.isDirectory()) for (const name of await readdir(path)) await shift(join(path, name));
  };
  await shift(root);
}

/** Removes shifted copies no instance uses any more (`inUse` are their lower dirs). */
export async function pruneShiftedImages(stateDir: string, inUse: ReadonlySet<string>): Promise<void> {
  const base = join(stateDir, 'shifted');
  let names: string[];
  try {
    names = await readdir(base);
  } catch {
    return;
  }
  for (const name of names) {
    const rootfs = join(base, name, 'rootfs');
    if (!inUse.has(rootfs)) await shiftLocks.run(join(base, name), () => rm(join(base, name), { recursive: true, force: true }));
  }
}

/** Mount points currently mounted on the host (from /proc/self/mountinfo, octal escapes decoded). */
export async function mountPoints(): Promise<Set<string>> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  return new Set(text.split('\n').filter(Boolean).map((line) => line.split(' ')[4]!.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)))));
}

/**
 * Mounts an instance's root at `target`: `lower` under the instance's `dir`,
 * which holds `upper/` and `work/`. The layer paths are given relative to
 * `dir` (mount runs there), through a `lower` link in it, because overlayfs
 * shows its options as given in every /proc/<pid>/mountinfo, the instance's
 * own included: absolute paths would show it the host's data dir, the image
 * copy and its own id (Docker's containers see exactly that). Relative, the
 * instance reads `lowerdir=lower,upperdir=upper,workdir=work`.
 */
export async function mountOverlay(dir: string, lower: string, target: string): Promise<void> {
  if ((await mountPoints()).has(target)) return;
  await mkdir(target, { recursive: true });
  await linkLower(dir, lower);
  await run('env', ['-C', dir, 'mount', '-t', 'overlay', 'overlay', '-o', 'lowerdir=lower,upperdir=upper,workdir=work', target]);
}

/** `dir/lower` → `lower`, replaced atomically when it points elsewhere (the image copy can change between starts). */
async function linkLower(dir: string, lower: string): Promise<void> {
  const link = join(dir, 'lower');
  if ((await readlink(link).catch(() => null)) === lower) return;
  const tmp = `${link}.${randomUUID().slice(0, 8)}`;
  await symlink(lower, tmp);
  await rename(tmp, link);
}

/** Unmounts `target` if mounted; lazily if busy, so a stuck reader cannot block a delete. */
export async function unmount(target: string): Promise<void> {
  if (!(await mountPoints()).has(target)) return;
  if (!(await runQuietly('umount', [target]))) await run('umount', ['-l', target]);
}

/** The upper and work dirs of an instance's root, owned by the tenant's root. */
export async function prepareUpper(dir: string, hostId: number): Promise<{ upper: string; work: string }> {
  const upper = join(dir, 'upper');
  const work = join(dir, 'work');
  for (const d of [upper, work]) {
    await mkdir(d, { recursive: true, mode: 0o755 });
  }
  await chown(upper, hostId, hostId);
  return { upper, work };
}

/** A sparse file of `sizeMiB` holding an empty ext4 file system whose root belongs to the tenant's root. */
export async function createVolume(file: string, sizeMiB: number, hostId: number): Promise<void> {
  if (await exists(file)) return;
  const tmp = `${file}.tmp`;
  await writeFile(tmp, '');
  await truncate(tmp, sizeMiB * 1024 * 1024);
  await run('mkfs.ext4', ['-q', '-F', '-m', '0', '-E', `root_owner=${hostId}:${hostId},lazy_itable_init=1`, tmp]);
  await rename(tmp, file);
}

export async function mountVolume(file: string, target: string): Promise<void> {
  if ((await mountPoints()).has(target)) return;
  await mkdir(target, { recursive: true });
  await run('mount', ['-o', 'loop,nosuid,nodev', '-t', 'ext4', file, target]);
}
