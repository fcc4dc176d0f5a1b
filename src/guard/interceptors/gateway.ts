/**
 * The gateway interceptor: what the front door refused for reasons an
 * attacker causes — request smuggling attempts (framing conflicts, duplicate
 * Host), malformed requests, a site's rate limit, the per-client connection
 * limit — and the API's authentication failures, as `gateway.reject` events
 * with `gateway.reason` (smuggling, malformed, rate, conn_limit, auth) and
 * `client.ip`.
 *
 * The gateway's workers count refusals as they happen and send the counts
 * twice a second at most (src/gateway/security.ts); this interceptor turns each
 * count into that many events (at most `maxPerRow` per batch, the true figure
 * in `gateway.count`) so threshold rules count them, and the pool folds the
 * identical ones together.
 */
import type { GuardEvent, Priority } from '../../core/guard-event.js';
import type { Emit, Interceptor } from '../../core/interceptor.js';

export interface RefusalCount {
  reason: string;
  ip: string;
  site: string | null;
  tenantId: string | null;
  count: number;
}

/** The gateway's side (Gateway.onSecurity). */
export interface RefusalSource {
  onSecurity(listener: ((counts: RefusalCount[]) => void) | undefined): void;
}

const PRIORITY: Record<string, Priority> = { smuggling: 'warning', conn_limit: 'notice', rate: 'notice', malformed: 'info', auth: 'notice' };

export class GatewayInterceptor implements Interceptor {
  readonly id = 'gateway:refusals';
  #emit: Emit | undefined;
  #source: RefusalSource | null = null;

  /** `source`: the gateway to listen to from the start (none: until `attach`). */
  constructor(source: RefusalSource | null = null, private readonly maxPerRow = 1000) {
    this.#source = source;
  }

  /** Listens to another gateway from now on; null lets go of it. */
  attach(source: RefusalSource | null): void {
    this.#source?.onSecurity(undefined);
    this.#source = source;
    if (this.#emit) this.#listen();
  }

  async start(emit: Emit): Promise<void> {
    this.#emit = emit;
    this.#listen();
  }

  async stop(): Promise<void> {
    this.#source?.onSecurity(undefined);
    this.#emit = undefined;
  }

  #listen(): void {
    this.#source?.onSecurity((counts) => {
      const emit = this.#emit;
      if (emit) for (const c of counts) for (let i = 0; i < Math.min(c.count, this.maxPerRow); i++) emit(refusalEvent(c));
    });
  }
}

/** One refusal as the guard's event. */
export function refusalEvent(c: RefusalCount, extra: Record<string, string> = {}): GuardEvent {
  return {
    time: Date.now(), tenantId: c.tenantId, instanceId: null, level: 'gateway', kind: 'gateway.reject', priority: PRIORITY[c.reason] ?? 'info',
    fields: { 'gateway.reason': c.reason, 'client.ip': c.ip, 'gateway.count': c.count, ...(c.site ? { 'gateway.site': c.site } : {}), ...extra },
  };
}

/** An API authentication failure (reported after the 401 was sent). */
export const authFailureEvent = (ip: string, path: string): GuardEvent =>
  refusalEvent({ reason: 'auth', ip, site: null, tenantId: null, count: 1 }, { 'http.path': path });
