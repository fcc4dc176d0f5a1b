/**
 * Counting one finished exchange, whatever protocol carried it: the site's
 * counters and latency histogram (or the unrouted bucket), and the access log.
 */
import { performance } from 'node:perf_hooks';
import type { WorkerContext } from './context.js';
import type { Exchange } from './exchange.js';

export function recordExchange(ctx: WorkerContext, listener: string, ip: string, ex: Exchange): void {
  const site = ex.site;
  const seconds = (performance.now() - ex.startedAt) / 1000;
  (site?.stats ?? ctx.unrouted).record(ex.status, ex.bodyBytes, ex.bytesOut, seconds);
  ctx.accessLog?.write({
    site: site?.hostname ?? '-', tenant: site?.tenantId ?? '-', listener, ip,
    method: ex.method, url: ex.target, status: ex.status, bytes: ex.bytesOut, ms: Math.round(seconds * 1e6) / 1000,
  });
}
