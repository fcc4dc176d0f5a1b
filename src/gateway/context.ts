/**
 * What every connection in a worker shares: the current route table (one
 * reference, swapped whole on update), options, and the worker's limiters,
 * counters and logs.
 */
import type { AccessLog } from './access-log.js';
import type { ResolvedOptions } from './config.js';
import type { ConnectionCounter } from './limits.js';
import type { SiteStats } from './metrics.js';
import type { RouteTable } from './routes.js';
import type { Site } from './site.js';
import type { StaticFiles } from './static.js';
import type { SecurityTally } from './security.js';

export interface WorkerContext {
  routes: RouteTable<Site>;
  readonly opts: ResolvedOptions;
  trustedProxies: Set<string>;
  readonly accessLog: AccessLog | null;
  /** Counts requests that matched no site (the neutral 404, bad requests). */
  readonly unrouted: SiteStats;
  readonly connectionsPerIp: ConnectionCounter;
  readonly staticFiles: StaticFiles;
  /** Coarse clock (ms), advanced by the worker's sweep; deadlines use it. */
  now: number;
  /** Refusals the guard hears about (sent by the sweep, in batches). */
  readonly security: SecurityTally;
}
