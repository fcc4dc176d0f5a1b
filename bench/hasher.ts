/**
 * Hasher throughput, GB/s of SHA-256 over a tree on all cores: a baseline of a
 * generated tree (--files small files of 1–16 KiB plus --big-mib MiB in large
 * files), timed twice — a cold first pass includes the walk and page-cache
 * misses on a fresh tree, the figure is the second, warm pass — then a full
 * `verify` of the same tree. Anchor: `sha256sum` (GNU coreutils) over the same
 * files on one core, run here side by side.
 *
 * The tree goes in the OS temp dir: with `TMPDIR=/dev/shm` the figure is the
 * hasher's, otherwise it includes the disk's write-back.
 *
 * Options: --files=N (default 100,000), --big-mib=N (default 1,024), --threads=N (default all cores).
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { ChecksumDb } from '../src/guard/checksums.js';
import { Hasher } from '../src/guard/hasher.js';
import { intOption, timed, type BenchOptions, type BenchResult } from './harness.js';

function makeTree(root: string, files: number, bigMib: number): number {
  let bytes = 0;
  const chunk = randomBytes(16 << 10);
  for (let i = 0; i < files; i++) {
    const dir = join(root, 'small', String(Math.floor(i / 1000)));
    if (i % 1000 === 0) mkdirSync(dir, { recursive: true });
    const size = 1024 + ((i * 7919) % (15 << 10));
    writeFileSync(join(dir, `f${i}`), chunk.subarray(0, size));
    bytes += size;
  }
  mkdirSync(join(root, 'big'));
  const big = randomBytes(64 << 20);
  for (let i = 0; i * 64 < bigMib; i++) {
    writeFileSync(join(root, 'big', `b${i}`), big.subarray(0, Math.min(64, bigMib - i * 64) << 20));
    bytes += Math.min(64, bigMib - i * 64) << 20;
  }
  return bytes;
}

export default async function hasherBench(opts: BenchOptions): Promise<BenchResult> {
  const files = intOption(opts, 'files', 100_000);
  const bigMib = intOption(opts, 'big-mib', 1024);
  const threads = intOption(opts, 'threads', availableParallelism());
  const dir = mkdtempSync(join(tmpdir(), 'strata-bench-hasher-'));
  const root = join(dir, 'tree');
  mkdirSync(root);
  const hasher = new Hasher({ threads });
  const db = new Database(join(dir, 'guard.db'));
  db.pragma('journal_mode = WAL');
  try {
    const bytes = makeTree(root, files, bigMib);
    const checksums = new ChecksumDb(db, { key: randomBytes(32), hasher });
    const cold = await timed(() => checksums.baseline('bench', root));
    const warm = await timed(() => checksums.baseline('bench', root));
    const verify = await timed(() => checksums.verify('bench'));
    if (!verify.value.ok) throw new Error('verify of an unchanged tree failed');
    const anchor = await timed(() => execFileSync('sh', ['-c', `find ${root} -type f -print0 | xargs -0 sha256sum > /dev/null`]));
    const gbps = (ms: number) => bytes / 1e9 / (ms / 1000);
    return {
      metric: `SHA-256 baseline of ${warm.value.files} files, ${(bytes / 2 ** 30).toFixed(2)} GiB, ${threads} threads (warm)`,
      unit: 'GB/s',
      value: gbps(warm.ms),
      anchor: 'sha256sum (coreutils, one core) over the same files, this run',
      anchor_value: gbps(anchor.ms),
      summary: [
        `tree: ${warm.value.files} files, ${bytes} bytes`,
        `baseline cold ${cold.ms.toFixed(0)} ms (${gbps(cold.ms).toFixed(2)} GB/s), warm ${warm.ms.toFixed(0)} ms (${gbps(warm.ms).toFixed(2)} GB/s)`,
        `verify ${verify.ms.toFixed(0)} ms (${gbps(verify.ms).toFixed(2)} GB/s); sha256sum ${anchor.ms.toFixed(0)} ms`,
      ],
      extra: { files: warm.value.files, bytes, threads, cold_ms: Math.round(cold.ms), warm_ms: Math.round(warm.ms), verify_ms: Math.round(verify.ms), anchor_ms: Math.round(anchor.ms) },
    };
  } finally {
    await hasher.close();
    db.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
