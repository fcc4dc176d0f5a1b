/**
 * Who gets in: an instance handles at most `concurrency` requests at once, keeps
 * at most `queue` more waiting, and turns the rest away (503). While the
 * instance is not serving (stopped, paused, failed) nobody gets in; requests
 * already inside finish. `drained()` tells when the last one left.
 */
export class Admission {
  #active = 0;
  #waiting: Array<(admitted: boolean) => void> = [];
  #open = false;
  #idle: Array<() => void> = [];

  constructor(private concurrency: number, private queue: number) {}

  get active(): number {
    return this.#active;
  }

  setLimits(concurrency: number, queue: number): void {
    this.concurrency = concurrency;
    this.queue = queue;
  }

  open(): void {
    this.#open = true;
  }

  /** Stops admitting; requests queued are turned away, requests inside finish. */
  close(): void {
    this.#open = false;
    for (const wake of this.#waiting.splice(0)) wake(false);
  }

  /** Resolves true with a slot held (call `leave()` after), or false: turned away. */
  async enter(): Promise<boolean> {
    if (!this.#open) return false;
    if (this.#active < this.concurrency) {
      this.#active++;
      return true;
    }
    if (this.#waiting.length >= this.queue) return false;
    return new Promise((resolve) => this.#waiting.push(resolve));
  }

  leave(): void {
    const next = this.#waiting.shift();
    if (next && this.#open) { next(true); return; }
    this.#active--;
    if (this.#active === 0) for (const wake of this.#idle.splice(0)) wake();
  }

  /** Resolves when no request is inside, or after `ms`. */
  drained(ms: number): Promise<void> {
    if (this.#active === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.#idle.push(() => { clearTimeout(timer); resolve(); });
    });
  }
}
