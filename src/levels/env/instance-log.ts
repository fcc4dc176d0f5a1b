/**
 * An instance's log: what its code printed (`console.*`), the stacks of its
 * uncaught errors, and what the platform did to it (resets, limits), as JSON
 * lines in `instances/<id>/log.jsonl` — a file only that instance's entries go
 * to. The visitor never sees any of it.
 *
 * Bounded: past `MAX_BYTES` the file is rotated to `log.jsonl.1` (one
 * generation kept), and one entry's message is cut at `MAX_MESSAGE`.
 */
import { appendFileSync, renameSync, statSync } from 'node:fs';
import { Transform } from 'node:stream';

const MAX_BYTES = 8 * 1024 * 1024;
const MAX_MESSAGE = 16 * 1024;

export type LogSource = 'console' | 'error' | 'platform';

export interface LogEntry {
  time: string;
  source: LogSource;
  level: string;
  message: string;
}

export class InstanceLog {
  #size: number;

  constructor(readonly path: string) {
    try { this.#size = statSync(path).size; } catch { this.#size = 0; }
  }

  write(entries: ReadonlyArray<{ time?: number; source: LogSource; level: string; message: string }>): void {
    if (entries.length === 0) return;
    const text = entries.map((e) => JSON.stringify({
      time: new Date(e.time ?? Date.now()).toISOString(),
      source: e.source,
      level: e.level,
      message: e.message.length > MAX_MESSAGE ? `${e.message.slice(0, MAX_MESSAGE)}…` : e.message,
    } satisfies LogEntry)).join('\n') + '\n';
    if (this.#size + text.length > MAX_BYTES) {
      try { renameSync(this.path, `${this.path}.1`); } catch { /* nothing to rotate yet */ }
      this.#size = 0;
    }
    try {
      appendFileSync(this.path, text, { mode: 0o600 });
      this.#size += Buffer.byteLength(text);
    } catch {
      // The instance was deleted under us; its log goes with it.
    }
  }
}

/**
 * Turns the JSON lines of a log into text for people, one line per entry:
 * `TIME SOURCE/LEVEL MESSAGE`. A line that is not an entry passes unchanged.
 */
export function entriesAsText(): Transform {
  let rest = '';
  const format = (line: string): string => {
    try {
      const e = JSON.parse(line) as LogEntry;
      return `${e.time} ${e.source}/${e.level} ${e.message}\n`;
    } catch {
      return `${line}\n`;
    }
  };
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      const lines = (rest + chunk.toString('utf8')).split('\n');
      rest = lines.pop()!;
      done(null, lines.filter((l) => l !== '').map(format).join(''));
    },
    flush(done) {
      done(null, rest ? format(rest) : '');
    },
  });
}
