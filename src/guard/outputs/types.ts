/**
 * What an alert output is: where the guard's alerts go beyond the audit log
 * and the event stream (as Falcosidekick forwards Falco's). The API validates
 * these shapes (zod, strict) before they reach the guard; here they are typed.
 */
import type { Priority } from '../../core/guard-event.js';
import type { Alert } from '../actuator.js';

/** A webhook: one signed JSON POST per alert. */
export interface WebhookConfig {
  type: 'webhook';
  url: string;
  /** Per attempt; default 5 s. */
  timeoutMs: number;
  /** Attempts after the first before the alert is dead-lettered; default 5. */
  retries: number;
  /** Extra request headers (e.g. a receiver's own token); never ours (`x-strata-*`, content-type). */
  headers: Record<string, string>;
}

/** Syslog (RFC 5424): a datagram per alert over UDP, or octet-counted frames (RFC 6587) over TCP. */
export interface SyslogConfig {
  type: 'syslog';
  transport: 'udp' | 'tcp';
  host: string;
  port: number;
  /** 0-23; default 16 (local0). */
  facility: number;
  /** MSG part: the alert as JSON (default), or its one-line output text. */
  format: 'json' | 'text';
  timeoutMs: number;
}

/** A file of JSON lines under the data dir (provider outputs only). */
export interface FileConfig {
  type: 'file';
  /** Relative to `<data dir>/alerts/`. */
  path: string;
}

export type OutputConfig = WebhookConfig | SyslogConfig | FileConfig;
export type OutputType = OutputConfig['type'];
export const OUTPUT_TYPES: readonly OutputType[] = ['webhook', 'syslog', 'file'];

/** Which alerts an output takes: at least this urgent, and (when listed) only these rules. */
export interface OutputFilter {
  minPriority: Priority | null;
  rules: string[] | null;
}

/** One configured output as the dispatcher runs it. `tenantId` null: the provider's (every alert). */
export interface OutputDefinition {
  id: string;
  tenantId: string | null;
  name: string;
  config: OutputConfig;
  filter: OutputFilter;
  /** The webhook's signing secret (opened from the store). */
  secret: string | null;
}

/** Counters of one output since the daemon started. */
export interface OutputStats {
  /** Alerts waiting in the output's queue. */
  queued: number;
  delivered: number;
  /** Attempts that failed (each retry counts). */
  failedAttempts: number;
  /** Alerts given up after the last retry. */
  deadLetters: number;
  /** Alerts refused because the queue was full. */
  dropped: number;
  lastError: string | null;
  lastErrorAt: string | null;
  lastDeliveredAt: string | null;
}

/** The outcome of one attempt: ok, or an error and whether another attempt may succeed. */
export type Attempt = { ok: true } | { ok: false; error: string; retry: boolean };

/** Something that sends one alert somewhere. */
export interface Sink {
  /** `body` is the alert as JSON, made once for every output. Never throws: a failure is an Attempt. */
  send(body: string, alert: Alert): Promise<Attempt>;
  close(): Promise<void>;
}
