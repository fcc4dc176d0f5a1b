/**
 * Messages between the supervisor and its workers (JSON over the fork IPC
 * channel; listening sockets travel as handles beside a `handle` message).
 *
 * Order on a fresh worker: init → handle* → config. An update is handle* for
 * new listeners, then one `config` (the whole configuration, when listeners
 * changed) or `sites` (only the sites that changed) that the worker applies in
 * one step (swap the route table, listen on new handles, drain removed
 * listeners) before it answers `applied`.
 */
import type { ResolvedOptions } from './config.js';
import type { MetricJson } from './metrics.js';
import type { CertificateConfig, GatewayConfig, SiteRoute } from './types.js';
import type { SecurityCount } from './security.js';

export type ToWorker =
  | { type: 'init'; opts: ResolvedOptions }
  | { type: 'handle'; listener: string }
  | { type: 'config'; version: number; config: GatewayConfig }
  /**
   * `remove`: site keys (routes.ts siteKey); `upsert`: new or changed routes;
   * `certificates`: new or changed certificates and ids of removed ones (null: none changed).
   */
  | {
    type: 'sites'; version: number; upsert: SiteRoute[]; remove: string[]; trustedProxies: string[];
    certificates: { upsert: CertificateConfig[]; remove: string[] } | null;
  }
  | { type: 'metrics'; request: number }
  /** The access log was renamed away (rotated): open its path anew, then answer `reopened`. */
  | { type: 'reopen-log'; request: number }
  | { type: 'close'; graceMs: number };

export type FromWorker =
  /** `failed`: listeners this worker could not listen on (e.g. EADDRINUSE, found only at listen time). */
  | { type: 'applied'; version: number; failed: Array<{ listener: string; error: string }> }
  | { type: 'metrics'; request: number; metrics: MetricJson[] }
  | { type: 'reopened'; request: number }
  | { type: 'warning'; message: string; details?: Record<string, unknown> }
  /** Refusals since the last such message (security.ts), for the guard. */
  | { type: 'security'; counts: SecurityCount[] };
