/**
 * Instance logs: the container's stdout and stderr go straight into one file,
 * opened append-only and handed to the runtime as the process's fds 1 and 2.
 *
 * Why no shim between container and file: a per-instance shim process costs
 * memory on every instance (a Node shim ~40 MB) and must outlive the daemon;
 * with the file as the container's own fd, logging keeps working while the
 * daemon is down and costs nothing. Rotation is copy-then-truncate (logrotate's
 * `copytruncate`): because the fd is O_APPEND, the writer continues at the new
 * end; the price is that a line written between copy and truncate can be lost.
 */
import { copyFile, rename, stat, truncate, unlink } from 'node:fs/promises';

/** Rotates `path` when it holds more than `maxBytes`: path → path.1 → … → path.keep. Returns whether it rotated. */
export async function rotateIfLarge(path: string, maxBytes: number, keep: number): Promise<boolean> {
  let size: number;
  try {
    size = (await stat(path)).size;
  } catch {
    return false;
  }
  if (size <= maxBytes) return false;
  await unlink(`${path}.${keep}`).catch(() => undefined);
  for (let n = keep - 1; n >= 1; n--) await rename(`${path}.${n}`, `${path}.${n + 1}`).catch(() => undefined);
  await copyFile(path, `${path}.1`);
  await truncate(path, 0);
  return true;
}
