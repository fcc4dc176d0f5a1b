/**
 * A hasher worker thread: answers batches of file paths with each file's
 * SHA-256 and its inode facts (or the error that stopped it), and walks trees
 * with `lstat` — the stat-only sweep runs here, so a tree of 10,000 entries
 * never blocks the daemon's event loop. Reads in 1 MiB chunks so a large file
 * never sits whole in memory.
 */
import { createHash } from 'node:crypto';
import { closeSync, constants, fstatSync, lstatSync, openSync, readdirSync, readlinkSync, readSync, type BigIntStats } from 'node:fs';
import { parentPort } from 'node:worker_threads';

/**
 * What the checksum DB keeps of an inode besides its content. Numbers the
 * kernel gives as 64 bits (device, inode, ctime in ns) travel as decimal strings.
 */
export interface InodeFacts {
  dev: string;
  ino: string;
  /** st_mode: the type bits and the permission bits (setuid included). */
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  size: number;
  ctimeNs: string;
}

export type FileDigest = ({ hash: string; size: number; mtimeMs: number; facts: InodeFacts }) | { error: string };

/** One entry found by a walk: its path relative to the root ('' is the root), its facts, a symlink's target. */
export interface WalkEntry extends InodeFacts { path: string; target?: string }

export type HashRequest =
  | { id: number; type: 'hash'; paths: string[] }
  /** Every entry under `root` whose '/'-prefixed path matches one of `include` (the root itself as '/'). */
  | { id: number; type: 'walk'; root: string; include: RegExp[] };
export type HashReply =
  | { id: number; results: FileDigest[] }
  | { id: number; entries: WalkEntry[] }
  | { id: number; error: string };

const chunk = Buffer.allocUnsafe(1 << 20);
// Never follow a symlink (one swapped in would make us hash its target) and never block on a FIFO planted in the tree.
const OPEN_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;

export function factsOf(st: BigIntStats): InodeFacts {
  return {
    dev: String(st.dev), ino: String(st.ino), mode: Number(st.mode), uid: Number(st.uid), gid: Number(st.gid),
    nlink: Number(st.nlink), size: Number(st.size), ctimeNs: String(st.ctimeNs),
  };
}

function hashFile(path: string): FileDigest {
  let fd: number | undefined;
  try {
    fd = openSync(path, OPEN_FLAGS);
    // A write while we read moves ctime: read again (once), so the hash and the facts describe the same content.
    for (let attempt = 0; ; attempt++) {
      const st = fstatSync(fd, { bigint: true });
      if (!st.isFile()) return { error: 'not a regular file' };
      const hash = createHash('sha256');
      // Stop at the size fstat reported unless a full chunk says there may be more: a small file costs one read.
      let total = 0, n: number, pos = 0;
      do {
        n = readSync(fd, chunk, 0, chunk.length, pos);
        hash.update(chunk.subarray(0, n));
        total += n;
        pos += n;
      } while (n > 0 && (total < Number(st.size) || n === chunk.length));
      const after = fstatSync(fd, { bigint: true });
      if (after.ctimeNs !== st.ctimeNs && attempt === 0) continue;
      return { hash: hash.digest('hex'), size: total, mtimeMs: Number(after.mtimeMs), facts: factsOf(after) };
    }
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? String(err);
    return { error: code === 'ELOOP' ? 'not a regular file' : code };
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/**
 * The entries under `root` that `include` selects, depth first, sorted.
 * Directories no pattern can reach below are not entered (a container's
 * /proc, /tmp and logs cost nothing); symlinks are never followed.
 */
export function walk(root: string, include: RegExp[]): WalkEntry[] {
  const prefixes = include.map(literalPrefix);
  const reachable = (dir: string): boolean => prefixes.some((p) => p.startsWith(dir + '/') || (dir + '/').startsWith(p));
  const out: WalkEntry[] = [];
  const visit = (rel: string, st: BigIntStats): void => {
    if (include.some((re) => re.test('/' + rel))) {
      const entry: WalkEntry = { path: rel, ...factsOf(st) };
      if (st.isSymbolicLink()) {
        try { entry.target = readlinkSync(join(root, rel)); } catch { return; }
      }
      out.push(entry);
    }
    if (!st.isDirectory() || (rel !== '' && !reachable('/' + rel))) return;
    let names: string[];
    try { names = readdirSync(join(root, rel)); } catch { return; }
    for (const name of names.sort()) {
      const child = rel === '' ? name : `${rel}/${name}`;
      let cst: BigIntStats;
      try { cst = lstatSync(join(root, child), { bigint: true }); } catch { continue; }
      visit(child, cst);
    }
  };
  visit('', lstatSync(root, { bigint: true }));
  return out;
}

const join = (root: string, rel: string): string => (rel === '' ? root : `${root}/${rel}`);

/** The part of a compiled glob before its first wildcard, as a path ('^/usr/.*$' → '/usr/'). */
function literalPrefix(re: RegExp): string {
  let out = '';
  const src = re.source.replace(/^\^/, '');
  for (let i = 0; i < src.length; i++) {
    const c = src[i]!;
    if (c === '\\') { out += src[++i] ?? ''; continue; }
    if ('.[*?+($'.includes(c)) break;
    out += c;
  }
  return out;
}

parentPort?.on('message', (req: HashRequest) => {
  if (req.type === 'hash') { parentPort!.postMessage({ id: req.id, results: req.paths.map(hashFile) } satisfies HashReply); return; }
  try {
    parentPort!.postMessage({ id: req.id, entries: walk(req.root, req.include) } satisfies HashReply);
  } catch (err) {
    parentPort!.postMessage({ id: req.id, error: (err as NodeJS.ErrnoException).code ?? String(err) } satisfies HashReply);
  }
});
