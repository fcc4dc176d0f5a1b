/**
 * Small JSON state files written atomically (write a temporary file, fsync,
 * rename), so a crash leaves either the old or the new content, never half of one.
 * Updates to one file are serialised within the process by its path.
 */
import { mkdir, open, readFile, rename } from 'node:fs/promises';
import { dirname } from 'node:path';
import { KeyedMutex } from '../../core/keyed-mutex.js';

const fileLocks = new KeyedMutex();

export async function readJson<T>(path: string): Promise<T | null> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as T;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

export async function writeJsonAtomic(path: string, value: unknown): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  const handle = await open(tmp, 'w', 0o600);
  try {
    await handle.writeFile(`${JSON.stringify(value, null, 2)}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(tmp, path);
}

/** Reads `path` (or `initial` when absent), applies `change`, writes the result back; returns what `change` returned. */
export function updateJson<T, R>(path: string, initial: () => T, change: (value: T) => R): Promise<R> {
  return fileLocks.run(path, async () => {
    const value = (await readJson<T>(path)) ?? initial();
    const result = change(value);
    await writeJsonAtomic(path, value);
    return result;
  });
}
