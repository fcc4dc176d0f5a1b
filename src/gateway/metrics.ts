/**
 * Per-site counters kept in each worker as plain numbers (a prom-client
 * `inc()` with labels costs more than the rest of a proxied request), exported
 * on demand in prom-client's JSON shape so the supervisor can sum the workers
 * with `AggregatorRegistry.aggregate`.
 */

/** Latency histogram bounds in seconds. */
export const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const;
const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'] as const;

export class SiteStats {
  readonly byClass = new Float64Array(STATUS_CLASSES.length);
  bytesIn = 0;
  bytesOut = 0;
  /** Non-cumulative counts per bucket, the last one being +Inf. */
  readonly latency = new Float64Array(LATENCY_BUCKETS.length + 1);
  latencySum = 0;
  /** Requests whose upstream refused, broke or did not answer in time (a 502/504, or a truncated response). */
  upstreamErrors = 0;
  upstreamTimeouts = 0;

  constructor(readonly site: string, readonly tenant: string) {}

  record(status: number, bytesIn: number, bytesOut: number, seconds: number): void {
    const cls = Math.floor(status / 100) - 1;
    if (cls >= 0 && cls < 5) this.byClass[cls]!++;
    this.bytesIn += bytesIn;
    this.bytesOut += bytesOut;
    let b = 0;
    while (b < LATENCY_BUCKETS.length && seconds > LATENCY_BUCKETS[b]!) b++;
    this.latency[b]!++;
    this.latencySum += seconds;
  }
}

/** Counts a failed upstream exchange (not one retried on a fresh connection) against its site. */
export function countUpstreamFailure(stats: SiteStats | undefined, timedOut: boolean): void {
  if (!stats) return;
  stats.upstreamErrors++;
  if (timedOut) stats.upstreamTimeouts++;
}

interface MetricValue {
  value: number;
  labels: Record<string, string | number>;
  metricName?: string;
}
export interface MetricJson {
  name: string;
  help: string;
  type: 'counter' | 'histogram' | 'gauge';
  aggregator: 'sum';
  values: MetricValue[];
}

/** Sites answered with no route (the neutral 404) are counted under this site label. */
export const UNROUTED = '-';

export function statsToJson(all: Iterable<SiteStats>): MetricJson[] {
  const requests: MetricValue[] = [];
  const bytes: MetricValue[] = [];
  const latency: MetricValue[] = [];
  const upstream: MetricValue[] = [];
  for (const s of all) {
    const labels = { site: s.site, tenant: s.tenant };
    upstream.push({ value: s.upstreamErrors - s.upstreamTimeouts, labels: { ...labels, kind: 'error' } });
    upstream.push({ value: s.upstreamTimeouts, labels: { ...labels, kind: 'timeout' } });
    STATUS_CLASSES.forEach((cls, i) => requests.push({ value: s.byClass[i]!, labels: { ...labels, class: cls } }));
    bytes.push({ value: s.bytesIn, labels: { ...labels, direction: 'in' } });
    bytes.push({ value: s.bytesOut, labels: { ...labels, direction: 'out' } });
    let cumulative = 0;
    for (let b = 0; b <= LATENCY_BUCKETS.length; b++) {
      cumulative += s.latency[b]!;
      latency.push({ value: cumulative, metricName: 'strata_gateway_request_duration_seconds_bucket', labels: { ...labels, le: b < LATENCY_BUCKETS.length ? LATENCY_BUCKETS[b]! : '+Inf' } });
    }
    latency.push({ value: s.latencySum, metricName: 'strata_gateway_request_duration_seconds_sum', labels });
    latency.push({ value: cumulative, metricName: 'strata_gateway_request_duration_seconds_count', labels });
  }
  return [
    { name: 'strata_gateway_requests_total', help: 'Requests answered by the gateway, per site and status class.', type: 'counter', aggregator: 'sum', values: requests },
    { name: 'strata_gateway_bytes_total', help: 'Request body bytes received (in) and response bytes sent, head included (out), per site.', type: 'counter', aggregator: 'sum', values: bytes },
    { name: 'strata_gateway_request_duration_seconds', help: 'Time from the end of the request head to the end of the response, per site.', type: 'histogram', aggregator: 'sum', values: latency },
    { name: 'strata_gateway_upstream_errors_total', help: 'Requests whose upstream refused or broke (error) or did not answer in time (timeout), per site.', type: 'counter', aggregator: 'sum', values: upstream },
  ];
}
