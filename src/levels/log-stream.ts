/**
 * Reading an instance's captured output from its rotated log files, as `tail`
 * and `tail -F` do: the whole history (oldest generation first) or its last N
 * lines, and then, when following, what is written next.
 *
 * Rotation is survived both ways the drivers rotate:
 * - copy-then-truncate (the os level: the container holds the file as its fd):
 *   the file shrinks below what was read; the bytes written between the last
 *   read and the copy are in `path.1`, so they are read from there first;
 * - rename (the env level's `log.jsonl` → `log.jsonl.1`): the inode at `path`
 *   changes; the old file is read to its end, then the new one from its start.
 *
 * Following polls (a stat every `pollMs`): it works on every filesystem, needs no
 * watch descriptors, and the cost is one stat per follower per tick.
 */
import { closeSync, fstatSync, openSync, readSync, statSync, type Stats } from 'node:fs';
import { Readable } from 'node:stream';

export interface LogStreamOptions {
  /** The current log file; older generations are `path.1` (newest) … `path.keep`. */
  path: string;
  /** Generations kept beside it. */
  keep: number;
  follow: boolean;
  /** Only the last N lines of what is stored. */
  tail?: number;
  /** Ends a follower once this says the source is gone (the instance was deleted). */
  gone?: () => boolean;
  pollMs?: number;
}

const CHUNK = 64 * 1024;
const DEFAULT_POLL_MS = 200;

const statOrNull = (path: string): Stats | null => {
  try {
    return statSync(path);
  } catch {
    return null;
  }
};

/** Bytes [from, to) of an open file. */
function readRange(fd: number, from: number, to: number): Buffer {
  const out = Buffer.alloc(Math.max(0, to - from));
  let done = 0;
  while (done < out.length) {
    const n = readSync(fd, out, done, out.length - done, from + done);
    if (n === 0) break;
    done += n;
  }
  return out.subarray(0, done);
}

function readFileRange(path: string, from: number, to?: number): Buffer {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return Buffer.alloc(0);
  }
  try {
    return readRange(fd, from, to ?? fstatSync(fd).size);
  } finally {
    closeSync(fd);
  }
}

/** The existing generations, oldest first, ending with the current file. */
function generations(path: string, keep: number): string[] {
  const older: string[] = [];
  for (let n = keep; n >= 1; n--) if (statOrNull(`${path}.${n}`)) older.push(`${path}.${n}`);
  return statOrNull(path) ? [...older, path] : older;
}

/**
 * The last `lines` lines over `files` (oldest first), reading backwards in
 * chunks so a large history costs what the tail costs. A last line without its
 * newline counts as a line.
 */
export function lastLines(files: readonly string[], lines: number): Buffer {
  if (lines <= 0) return Buffer.alloc(0);
  const parts: Buffer[] = [];
  let newlines = 0;
  let trailingChecked = false;
  for (let f = files.length - 1; f >= 0; f--) {
    const size = statOrNull(files[f]!)?.size ?? 0;
    let end = size;
    while (end > 0) {
      const start = Math.max(0, end - CHUNK);
      const chunk = readFileRange(files[f]!, start, end);
      end = start;
      // The newline that ends the very last line does not start a new one.
      let scanTo = chunk.length;
      if (!trailingChecked && chunk.length > 0) {
        trailingChecked = true;
        if (chunk[chunk.length - 1] === 0x0a) scanTo--;
      }
      for (let i = scanTo - 1; i >= 0; i--) {
        if (chunk[i] === 0x0a && ++newlines === lines) {
          parts.unshift(chunk.subarray(i + 1));
          return Buffer.concat(parts);
        }
      }
      parts.unshift(chunk);
    }
  }
  return Buffer.concat(parts);
}

/** A readable stream of the log: history (or its tail), then, when following, new output until destroyed or gone. */
export function logStream(o: LogStreamOptions): Readable {
  const history = o.tail !== undefined ? [lastLines(generations(o.path, o.keep), o.tail)] : generations(o.path, o.keep).map((p) => readFileRange(p, 0));
  // Where following starts: the current file's size when the history was read.
  const start = statOrNull(o.path);
  const out = new Readable({ read() {} });
  for (const part of history) if (part.length) out.push(part);
  if (!o.follow) {
    out.push(null);
    return out;
  }
  let inode = start?.ino ?? null;
  let position = start?.size ?? 0;
  const tick = (): void => {
    if (out.destroyed) return;
    if (o.gone?.()) {
      clearInterval(timer);
      out.push(null);
      return;
    }
    const now = statOrNull(o.path);
    if (!now) return;
    if (inode !== null && now.ino !== inode) {
      // Renamed away: finish the old file (now the newest older generation), then start on the new one.
      const old = statOrNull(`${o.path}.1`);
      if (old?.ino === inode && old.size > position) out.push(readFileRange(`${o.path}.1`, position, old.size));
      position = 0;
    } else if (now.size < position) {
      // Copied then truncated: what was written after our last read is at the end of the copy.
      const copy = statOrNull(`${o.path}.1`);
      if (copy && copy.size > position) out.push(readFileRange(`${o.path}.1`, position, copy.size));
      position = 0;
    }
    inode = now.ino;
    if (now.size > position) {
      const fresh = readFileRange(o.path, position, now.size);
      position += fresh.length;
      if (fresh.length) out.push(fresh);
    }
  };
  const timer = setInterval(tick, o.pollMs ?? DEFAULT_POLL_MS);
  out.on('close', () => clearInterval(timer));
  return out;
}
