/**
 * `strata cp` for a running os instance: the copy is done by the container's
 * own `tar`, run inside it with `runc exec` as the container's root — inside
 * its mount namespace, its user namespace (root there is the tenant's shifted
 * id on the host) and its cgroup. A symlink the tenant planted (`/srv/x ->
 * /etc`) then resolves to the container's /etc, never the host's: the kernel
 * does the containment, not a path check of ours. The archive that goes in was
 * checked before (`checkTenantArchive`), and what comes out is checked again by
 * the control plane, since the tenant controls the `tar` that made it.
 *
 * Needs `sh` and `tar` in the instance (busybox has both); a stopped instance
 * is refused (its root is not mounted; copying into its upper layer from the
 * host would have to re-do the containment by hand).
 *
 * The container's root is read-only: a copy lands in its data volume
 * (`/data`, sized within its `diskMiB`) or its tmpfs `/tmp`. Disk: the copy
 * must fit in the free space of the file system that holds it, checked inside
 * the instance before anything is written.
 */
import { StrataError } from '../../core/errors.js';
import type { CopyOptions, ExecOptions, ExecSession } from '../driver.js';
import { VOLUME_MOUNT_POINT } from './instance-files.js';

const MiB = 1024 * 1024;

export interface FilesDeps {
  exec(id: string, argv: readonly string[], opts: ExecOptions): Promise<ExecSession>;
}

interface Finished { code: number; stdout: Buffer; stderr: string }

/** Runs argv in the instance as its root with `input` on stdin; stdout kept up to `maxBytes`. */
async function runInside(d: FilesDeps, id: string, argv: string[], input: Buffer | null, opts: CopyOptions & { maxBytes?: number }): Promise<Finished> {
  const session = await d.exec(id, argv, { tty: false, user: '0:0', ...(opts.mark ? { mark: opts.mark } : {}) });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  let size = 0;
  let tooLarge = false;
  session.stdout.on('data', (c: Buffer) => {
    size += c.length;
    if (opts.maxBytes !== undefined && size > opts.maxBytes) {
      tooLarge = true;
      session.kill();
      return;
    }
    out.push(c);
  });
  session.stderr?.on('data', (c: Buffer) => { if (err.length < 64) err.push(c); });
  session.stdin.on('error', () => undefined);
  session.stdin.end(input ?? undefined);
  const code = await session.exit;
  if (tooLarge) throw new StrataError('STRATA_ERR_PAYLOAD_TOO_LARGE', `a copy out is at most ${Math.floor(opts.maxBytes! / MiB)} MiB`);
  return { code, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString('utf8').trim() };
}

function failed(what: string, r: Finished, path: string): StrataError {
  if (/executable file not found|no such file or directory.*(tar|sh)"?$/im.test(r.stderr) || r.code === 127) {
    return new StrataError('STRATA_ERR_UNSUPPORTED', `the instance has no ${/sh/.test(r.stderr) && !/tar/.test(r.stderr) ? 'sh' : 'tar'}: a copy runs the instance's own tar`, { operation: 'files' });
  }
  if (/no such file|not found|cannot stat/i.test(r.stderr)) return new StrataError('STRATA_ERR_NOT_FOUND', `'${path}' does not exist in the instance`, { kind: 'path', name: path });
  return new StrataError('STRATA_ERR_CONFLICT', `${what} failed in the instance: ${r.stderr.slice(0, 500) || `exit ${r.code}`}`, { path, exitCode: r.code });
}

/**
 * Runs inside the instance: refuses (exit 3) when the file system that will
 * hold DIR — a data volume, a tmpfs — has less room than the copy needs
 * (measured at DIR's nearest existing ancestor, before anything is made), then
 * makes DIR and unpacks stdin into it.
 */
const UNPACK = 'd="$1"; while [ ! -d "$d" ]; do d=$(dirname -- "$d"); done; ' +
  'avail=$(df -Pk -- "$d" 2>/dev/null | awk \'NR==2 {print $4}\'); ' +
  'if [ -n "$avail" ] && [ "$avail" -lt "$2" ]; then echo "strata-cp: $avail KiB free" >&2; exit 3; fi; ' +
  'mkdir -p -- "$1" && exec tar -x -f - -C "$1"';

/** Unpacks `archive` (checked) into directory `dir` of the instance, creating it. */
export async function copyIntoInstance(d: FilesDeps, id: string, dir: string, archive: Buffer, opts: CopyOptions): Promise<void> {
  // What the archive holds, in KiB, with a block per member for metadata and rounding.
  const needKiB = Math.ceil(opts.bytes / 1024) + Math.ceil(archive.length / 512 / 8) * 4;
  const r = await runInside(d, id, ['sh', '-c', UNPACK, 'strata-cp', dir, String(needKiB)], archive, opts);
  if (r.code === 3 && r.stderr.startsWith('strata-cp:')) {
    throw new StrataError('STRATA_ERR_QUOTA_EXCEEDED', `quota exceeded: '${dir}' has ${r.stderr.replace(/^strata-cp: /, '')}, the copy needs ${needKiB} KiB`, { resource: 'diskMiB', path: dir, requestedKiB: needKiB });
  }
  if (/read-only file system/i.test(r.stderr)) {
    throw new StrataError('STRATA_ERR_CONFLICT', `'${dir}' is on the instance's read-only root: copy into its data volume (${VOLUME_MOUNT_POINT}) or /tmp`, { path: dir });
  }
  if (r.code !== 0) throw failed('unpacking', r, dir);
}

/** `path` of the instance as a tar archive whose top member is its last component (`/`: its contents). */
export async function copyOutOfInstance(d: FilesDeps, id: string, path: string, opts: CopyOptions & { maxBytes: number }): Promise<Buffer> {
  const parts = path.split('/').filter((p) => p !== '');
  const parent = `/${parts.slice(0, -1).join('/')}`;
  const name = parts.length === 0 ? '.' : parts[parts.length - 1]!;
  const r = await runInside(d, id, ['tar', '-c', '-f', '-', '-C', parent, '--', name], null, opts);
  if (r.code !== 0) throw failed('packing', r, path);
  return r.stdout;
}
