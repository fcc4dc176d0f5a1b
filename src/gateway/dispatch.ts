/**
 * Answering one routed exchange, the same for HTTP/1.1 and HTTP/2 clients:
 * a rejected request gets its error page, an unknown name the neutral 404, a
 * site that is held but not served now (its instance paused, stopped …) 503
 * with Retry-After, a site over its rate 429; otherwise the site's target answers (proxied to the
 * upstream pool, a static file, or a redirect).
 */
import type { WorkerContext } from './context.js';
import type { Exchange } from './exchange.js';
import { errorPage } from './pages.js';
import { redirectLocation } from './redirect.js';
import type { Responder } from './responder.js';
import { upstreamHead } from './upstream-head.js';

export function dispatchExchange(ctx: WorkerContext, r: Responder, ex: Exchange, ip: string, proto: 'http' | 'https'): void {
  if (ex.reject !== 0) {
    r.respondError(ex, ex.reject);
    return;
  }
  const site = ex.site;
  if (site === null) {
    r.respondError(ex, 404);
    return;
  }
  const target = site.target;
  if (target.kind === 'unavailable') {
    r.respondError(ex, target.status, target.retryAfter === undefined ? '' : `Retry-After: ${target.retryAfter}\r\n`);
    return;
  }
  if (site.limiter !== null && !site.limiter.take(ex.startedAt)) {
    ctx.security.note('rate', ip, site);
    r.respondError(ex, 429, 'Retry-After: 1\r\n');
    return;
  }
  switch (target.kind) {
    case 'upstream': {
      const up = site.pool!.acquire(ctx.now);
      const trusted = ctx.trustedProxies.size > 0 && ctx.trustedProxies.has(ip);
      up.begin(r, ex, upstreamHead(ex, ip, trusted, proto), ctx.now);
      const pending = ex.pendingBody;
      if (pending !== null) {
        ex.pendingBody = null;
        for (const chunk of pending) up.sendBody(chunk, ex.chunked);
      }
      if (ex.bodyComplete) up.endBody(ex.chunked);
      return;
    }
    case 'static':
      ctx.staticFiles.serve(r, ex, target.root);
      return;
    case 'redirect': {
      const location = redirectLocation(target.to, ex.target);
      r.respondLocal(ex, target.status, `Location: ${location}\r\nContent-Type: text/html\r\n`, errorPage(target.status));
      return;
    }
  }
}
