/**
 * A site as a worker holds it: the configured route plus what the worker keeps
 * for it (rate limiter, counters, upstream pool). Counters and limiters survive
 * a route table swap when the site does (same tenant and hostname).
 */
import type { RateLimiter } from './limits.js';
import type { SiteStats } from './metrics.js';
import type { UpstreamPool } from './upstream.js';
import type { SiteTarget } from './types.js';

export interface Site {
  hostname: string;
  tenantId: string;
  target: SiteTarget;
  maxBodyBytes: number;
  limiter: RateLimiter | null;
  stats: SiteStats;
  /** Set for upstream targets. */
  pool: UpstreamPool | null;
}
