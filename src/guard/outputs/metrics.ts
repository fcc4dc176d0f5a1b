/** The outputs' counters at `/metrics`, read from the dispatcher when scraped. */
import { Gauge, type Registry } from 'prom-client';
import type { AlertDispatcher } from './dispatcher.js';
import type { OutputStats } from './types.js';

const SERIES: Array<[string, string, keyof OutputStats]> = [
  ['strata_alert_output_delivered_total', 'Alerts an output delivered', 'delivered'],
  ['strata_alert_output_failed_attempts_total', 'Delivery attempts that failed (each retry counts)', 'failedAttempts'],
  ['strata_alert_output_dead_letters_total', 'Alerts given up after the last retry', 'deadLetters'],
  ['strata_alert_output_dropped_total', "Alerts dropped because the output's queue was full", 'dropped'],
  ['strata_alert_output_queued', 'Alerts waiting in the output\'s queue', 'queued'],
];

/** Labels: `owner` (a tenant id, or `provider`), `output` (its name), `type`. Counters restart with the daemon. */
export function registerOutputMetrics(registry: Registry, dispatcher: AlertDispatcher): void {
  for (const [name, help, key] of SERIES) {
    new Gauge({
      name, help, labelNames: ['owner', 'output', 'type'] as const, registers: [registry],
      collect() {
        this.reset();
        for (const { def, stats } of dispatcher.all()) {
          this.set({ owner: def.tenantId ?? 'provider', output: def.name, type: def.config.type }, stats[key] as number);
        }
      },
    });
  }
}
