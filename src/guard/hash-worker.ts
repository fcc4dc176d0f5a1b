/**
 * A hasher worker thread: receives batches of file paths, answers each with
 * its SHA-256, size and mtime (or the error that stopped it). Reads in 1 MiB
 * chunks so a large file never sits whole in memory.
 */
import { createHash } from 'node:crypto';
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';

export interface HashRequest { id: number; paths: string[] }
export type FileDigest = { hash: string; size: number; mtimeMs: number } | { error: string };
export interface HashReply { id: number; results: FileDigest[] }

const chunk = Buffer.allocUnsafe(1 << 20);

function hashFile(path: string): FileDigest {
  let fd: number | undefined;
  try {
    fd = openSync(path, 'r');
    const st = fstatSync(fd);
    if (!st.isFile()) return { error: 'not a regular file' };
    const hash = createHash('sha256');
    // Stop at the size fstat reported unless a full chunk says there may be more: a small file costs one read.
    let total = 0, n: number;
    do {
      n = readSync(fd, chunk, 0, chunk.length, null);
      hash.update(chunk.subarray(0, n));
      total += n;
    } while (n > 0 && (total < st.size || n === chunk.length));
    return { hash: hash.digest('hex'), size: st.size, mtimeMs: st.mtimeMs };
  } catch (err) {
    return { error: (err as NodeJS.ErrnoException).code ?? String(err) };
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

parentPort!.on('message', (req: HashRequest) => {
  parentPort!.postMessage({ id: req.id, results: req.paths.map(hashFile) } satisfies HashReply);
});
