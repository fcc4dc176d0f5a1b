/** The run root (`/run/strata/os` by default): host objects one state dir at a time may hold. */
import { stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { isAlive } from '../../core/proc.js';
import { readJson, writeJsonAtomic } from './state-file.js';

/**
 * Takes the run root for `stateDir`: the host objects it names (runc root,
 * mount points, and with them the cgroup root, bridges and firewall) serve one
 * state dir at a time. Returns the live owner when another state dir holds it.
 */
export async function claimRunRoot(runRoot: string, stateDir: string): Promise<{ pid: number; stateDir: string } | null> {
  const path = join(runRoot, 'owner.json');
  const owner = await readJson<{ pid: number; stateDir: string }>(path);
  if (owner && owner.stateDir !== stateDir && owner.pid !== process.pid && isAlive(owner.pid)) return owner;
  await writeJsonAtomic(path, { pid: process.pid, stateDir });
  return null;
}

/** The first ancestor of `path` (or `path` itself) that others may not search (no o+x), or null. */
export async function firstUnsearchableAncestor(path: string): Promise<string | null> {
  for (let dir = path; dir !== dirname(dir); dir = dirname(dir)) {
    if (((await stat(dir)).mode & 0o001) === 0) return dir;
  }
  return null;
}
