/**
 * Serialises async work per key, first come first served. The API's lifecycle
 * executor and the reconciler both take an instance's lock (its id is the key)
 * before they call its driver, so they never race on one instance; work on
 * different instances still runs side by side.
 *
 * A key's entry lives only while someone holds or waits for it, so a daemon that
 * has seen a million instances keeps no map entry for the idle ones.
 * Not reentrant: `fn` must not `run` the same key again, or it waits for itself.
 */
export class KeyedMutex {
  /** Per key, a promise that settles when the last queued holder is done. */
  readonly #tails = new Map<string, Promise<void>>();

  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.#tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const done = new Promise<void>((resolve) => (release = resolve));
    const tail = previous.then(() => done);
    this.#tails.set(key, tail);
    try {
      await previous;
      return await fn();
    } finally {
      release();
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    }
  }

  /** Keys currently held or waited for. */
  get size(): number {
    return this.#tails.size;
  }
}
