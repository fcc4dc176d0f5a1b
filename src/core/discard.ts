/**
 * What a deleted tenant held on disk goes in one of two ways: removed, or —
 * when the provider asks for it (e.g. to keep evidence) — moved whole into a
 * quarantine directory that no route, driver or tenant ever reads from. Either
 * way nothing stays where a later holder of the same key could find it.
 */
import { cp, mkdir, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';

/**
 * Removes `path` (missing is fine), or moves it to `quarantine/<as>` when a
 * quarantine directory is given. A move across file systems copies, then removes.
 */
export async function discard(path: string, quarantine: { dir: string; as: string } | null): Promise<void> {
  if (quarantine === null) {
    await rm(path, { recursive: true, force: true });
    return;
  }
  const to = join(quarantine.dir, quarantine.as);
  await mkdir(dirname(to), { recursive: true, mode: 0o700 });
  try {
    await rename(path, to);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return;
    if (code !== 'EXDEV') throw e;
    await cp(path, to, { recursive: true, preserveTimestamps: true, verbatimSymlinks: true });
    await rm(path, { recursive: true, force: true });
  }
}
