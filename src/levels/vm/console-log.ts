/**
 * The serial console log of a VM, written by the daemon (not by QEMU): a guest
 * that prints forever must not fill the host's disk. What the guest prints is
 * appended to `path` and rotated by size with the os level's rotation
 * (`rotateIfLarge`: path → path.1 … path.keep, which `logStream` reads back as
 * one history). So the log never holds more than
 * `(keep + 1) × (maxBytes + BATCH_BYTES)` bytes however much the guest prints;
 * the newest output is always in `path`.
 *
 * Writes are batched (one append per batch of chunks, at most `BATCH_BYTES`),
 * one at a time, so the file grows in order. When the disk falls behind the
 * guest, `backlogged` says so and the caller stops reading the console: the
 * serial line then holds the guest back, as a real one would.
 */
import { appendFile, stat } from 'node:fs/promises';
import { rotateIfLarge } from '../os/logs.js';

export interface ConsoleLogLimits {
  /** Rotate the current file once it holds more than this. Default 1 MiB. */
  maxBytes: number;
  /** Rotated files kept beside it. Default 2. */
  keep: number;
}

export const CONSOLE_LOG_DEFAULTS: ConsoleLogLimits = { maxBytes: 1024 * 1024, keep: 2 };

/** The largest single append: the most the current file can overshoot `maxBytes` by. */
export const BATCH_BYTES = 64 * 1024;
/** Unwritten output beyond which the reader should pause. */
const BACKLOG_BYTES = 1024 * 1024;

export class ConsoleLog {
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  #size: number | null = null;
  #flushing: Promise<void> | null = null;
  #drained: Array<() => void> = [];

  constructor(readonly path: string, readonly limits: ConsoleLogLimits = CONSOLE_LOG_DEFAULTS) {}

  /** True while more than `BACKLOG_BYTES` wait to be written. */
  get backlogged(): boolean {
    return this.#pendingBytes > BACKLOG_BYTES;
  }

  write(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.#pending.push(chunk);
    this.#pendingBytes += chunk.length;
    this.#flushing ??= this.#flush().finally(() => {
      this.#flushing = null;
      for (const resolve of this.#drained.splice(0)) resolve();
    });
  }

  /** Resolves once everything written so far is in the file. */
  drained(): Promise<void> {
    return this.#flushing ? new Promise((resolve) => this.#drained.push(resolve)) : Promise.resolve();
  }

  async #flush(): Promise<void> {
    this.#size ??= (await stat(this.path).catch(() => null))?.size ?? 0;
    while (this.#pendingBytes > 0) {
      const all = Buffer.concat(this.#pending);
      const batch = all.subarray(0, BATCH_BYTES);
      this.#pending = batch.length < all.length ? [all.subarray(batch.length)] : [];
      this.#pendingBytes -= batch.length;
      try {
        await appendFile(this.path, batch, { mode: 0o600 });
        this.#size += batch.length;
        if (this.#size > this.limits.maxBytes && (await rotateIfLarge(this.path, this.limits.maxBytes, this.limits.keep))) this.#size = 0;
      } catch {
        // The instance directory went away (delete): its log goes with it.
        this.#pending = [];
        this.#pendingBytes = 0;
      }
    }
  }
}
