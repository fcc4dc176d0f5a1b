/**
 * Security counters of a gateway worker, for the guard: requests and
 * connections the gateway refused for a reason an attacker causes (framing
 * that could smuggle a request, malformed requests, a site's rate limit, the
 * per-client connection limit). Counted on the request path as one map
 * increment; the worker's sweep sends what accumulated to the supervisor in
 * one message (`security`), which hands it to the guard — never per request.
 */

export type SecurityReason = 'smuggling' | 'malformed' | 'rate' | 'conn_limit';

export interface SecurityCount {
  reason: SecurityReason;
  ip: string;
  /** The site's hostname and tenant, when the request had matched one. */
  site: string | null;
  tenantId: string | null;
  count: number;
}

/** Distinct (reason, client, site) rows kept between flushes; beyond it rows are summed into the client's. */
const MAX_ROWS = 10_000;

export class SecurityTally {
  #rows = new Map<string, SecurityCount>();

  note(reason: SecurityReason, ip: string, site: { hostname: string; tenantId: string } | null = null): void {
    let key = `${reason}\0${ip}\0${site?.hostname ?? ''}`;
    let row = this.#rows.get(key);
    if (!row && this.#rows.size >= MAX_ROWS) {
      // A flood of distinct sites or clients: keep counting, in coarser rows.
      site = null;
      if (this.#rows.size >= 2 * MAX_ROWS) ip = '*';
      key = `${reason}\0${ip}\0`;
      row = this.#rows.get(key);
    }
    if (row) row.count++;
    else this.#rows.set(key, { reason, ip, site: site?.hostname ?? null, tenantId: site?.tenantId ?? null, count: 1 });
  }

  get size(): number {
    return this.#rows.size;
  }

  /** What accumulated since the last call. */
  take(): SecurityCount[] {
    const rows = [...this.#rows.values()];
    this.#rows = new Map();
    return rows;
  }
}

/** Parser errors that are about message framing — what request smuggling plays on. */
export const isFramingError = (code: string): boolean => /CONTENT_LENGTH|TRANSFER_ENCODING|CHUNK|CR_EXPECTED|LF_EXPECTED/.test(code);
