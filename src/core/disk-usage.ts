/**
 * Bytes a file or a tree takes on the host's disk: allocated blocks (what `du`
 * counts), so a sparse disk image counts what it really holds and not its
 * nominal size. Hard links inside a tree count once. Symlinks are not followed.
 */
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';

/** Allocated bytes under `path` (itself included); 0 where it does not exist. */
export async function allocatedBytes(path: string): Promise<number> {
  const seen = new Set<bigint>();
  const walk = async (p: string): Promise<number> => {
    const st = await lstat(p, { bigint: true }).catch(() => null);
    if (!st) return 0;
    if (st.nlink > 1n) {
      if (seen.has(st.ino)) return 0;
      seen.add(st.ino);
    }
    let total = Number(st.blocks) * 512;
    if (st.isDirectory()) {
      const entries = await readdir(p).catch(() => [] as string[]);
      for (const name of entries) total += await walk(join(p, name));
    }
    return total;
  };
  return walk(path);
}

/**
 * `allocatedBytes`, remembered for `ttlMs` per path: walking a tree on every
 * scrape of every instance would cost more than the figure is worth.
 */
export class DiskUsageCache {
  readonly #entries = new Map<string, { at: number; bytes: Promise<number> }>();

  constructor(private readonly ttlMs = 15_000) {}

  bytes(path: string): Promise<number> {
    const now = Date.now();
    const hit = this.#entries.get(path);
    if (hit && now - hit.at < this.ttlMs) return hit.bytes;
    for (const [k, v] of this.#entries) if (now - v.at >= this.ttlMs) this.#entries.delete(k);
    const bytes = allocatedBytes(path);
    this.#entries.set(path, { at: now, bytes });
    return bytes;
  }
}
