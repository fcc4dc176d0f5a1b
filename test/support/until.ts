/** Polling for tests that wait on something asynchronous they cannot await directly. */
import { setTimeout as sleep } from 'node:timers/promises';

export interface UntilOptions {
  /** Give up after this long; default 10 s. */
  ms?: number;
  /** Pause between checks; default 20 ms. */
  every?: number;
  /** What is awaited, for the error; a function is asked at the time of failure (to show the last state). */
  what?: string | (() => string);
}

type Truthy<T> = Exclude<T, undefined | null | false | 0 | ''>;

/**
 * Calls `check` until it returns a truthy value and returns that value; throws
 * once `ms` have passed without one. `check` is always called at least once,
 * and once more after the deadline, so a slow check cannot fail a condition
 * that holds.
 */
export async function until<T>(check: () => T | Promise<T>, opts: UntilOptions = {}): Promise<Truthy<T>> {
  const ms = opts.ms ?? 10_000;
  const deadline = Date.now() + ms;
  for (;;) {
    const expired = Date.now() > deadline;
    const value = await check();
    if (value) return value as Truthy<T>;
    if (expired) {
      const what = typeof opts.what === 'function' ? opts.what() : opts.what ?? 'a condition';
      throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    }
    await sleep(opts.every ?? 20);
  }
}
