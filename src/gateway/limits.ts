/**
 * Per-site request rate and per-client connection limits.
 *
 * Workers are separate processes with no shared memory, so each enforces its
 * share of a limit: rate / workers and ceil(connections / workers). A client's
 * connections spread over the workers, so the sum stays near the configured
 * figure; with one worker it is exact.
 */

/** Token bucket: `ratePerSecond` sustained, bursts of one second's worth. */
export class RateLimiter {
  private tokens: number;
  private last: number;
  private readonly capacity: number;
  private readonly perMs: number;

  constructor(ratePerSecond: number, now: number) {
    this.capacity = Math.max(1, ratePerSecond);
    this.perMs = ratePerSecond / 1000;
    this.tokens = this.capacity;
    this.last = now;
  }

  /** Takes one token; false when the site is over its rate (429). */
  take(now: number): boolean {
    const refill = (now - this.last) * this.perMs;
    this.last = now;
    this.tokens = Math.min(this.capacity, this.tokens + refill);
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

/** Open connections per client address. */
export class ConnectionCounter {
  private readonly open = new Map<string, number>();

  constructor(private readonly limit: number) {}

  /** Counts a new connection; false (and not counted) when the client already has `limit`. */
  acquire(ip: string): boolean {
    const n = this.open.get(ip) ?? 0;
    if (n >= this.limit) return false;
    this.open.set(ip, n + 1);
    return true;
  }

  release(ip: string): void {
    const n = this.open.get(ip) ?? 0;
    if (n <= 1) this.open.delete(ip);
    else this.open.set(ip, n - 1);
  }
}
