/**
 * What an `env` instance and the `env` driver can be told, validated with zod at
 * the driver's edge and typed inside.
 *
 * Instance config (`InstanceSpec.config`) is strict: an unknown key is refused.
 * Every limit has a default a hello-world handler never hits and a ceiling the
 * provider sets in `EnvDriverOptions`.
 */
import { z } from 'zod';
import { StrataError } from '../../core/errors.js';
import { validationError, zodValidationError } from '../../core/validation.js';

/** Largest handler module accepted, in bytes. */
export const MAX_CODE_BYTES = 1024 * 1024;

const HostPort = z.string().regex(/^[A-Za-z0-9.-]+(:\d{1,5})?$|^\[[0-9a-fA-F:]+\](:\d{1,5})?$/, 'host or host:port');

export const EnvInstanceConfig = z.object({
  /** Inline handler code, instead of `source` (a path to a handler file). */
  code: z.string().min(1).max(MAX_CODE_BYTES).optional(),
  /** CPU-time limit of one run of tenant code (a handler call, or a continuation after a host call or timer). */
  cpuMs: z.number().int().min(1).max(30_000).default(50),
  /** Wall-time limit of one request, awaiting included; then 504. */
  wallMs: z.number().int().min(10).max(300_000).default(30_000),
  /** Requests handled at once; more wait in the queue. */
  concurrency: z.number().int().min(1).max(1024).default(32),
  /** Requests waiting for a free slot; more get 503. */
  queue: z.number().int().min(0).max(100_000).default(256),
  /** Largest request body accepted (then 413). */
  maxBodyBytes: z.number().int().min(0).max(32 * 1024 * 1024).default(1024 * 1024),
  /** Outbound hosts `fetch` may reach ("host" or "host:port"); empty: fetch is refused. */
  outbound: z.array(HostPort).max(64).default([]),
  /** Plain-text variables, visible to the handler as `env.NAME`. */
  vars: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/), z.string().max(64 * 1024)).default({}),
  /** KV namespace inside the tenant's store; default: the instance's name. */
  kvNamespace: z.string().regex(/^[A-Za-z0-9_.-]{1,128}$/).optional(),
  /** Loopback port to serve on; default: a free one, kept for the instance's life. */
  port: z.number().int().min(1).max(65535).optional(),
}).strict();
export type EnvInstanceConfig = z.infer<typeof EnvInstanceConfig>;

export interface EnvDriverOptions {
  /** Where instances, tenant KV stores, logs and snapshots live. Default `/var/lib/strata/env`. */
  stateDir?: string;
  /** Shared isolate hosts kept running. Default: 2. */
  hosts?: number;
  /** A host is replaced after this many requests. Default 1,000,000. */
  recycleAfterRequests?: number;
  /** A host is replaced when its RSS passes this. Default 1536 MiB. */
  recycleRssMiB?: number;
  /** cgroup memory limit of one host process. Default 2048 MiB. */
  hostMemoryMiB?: number;
  /** cgroup CPU quota of one host process, in cores. Default: all cores. */
  hostCpus?: number;
  /** cgroup pids limit of one host process (threads count). Default 256. */
  hostPids?: number;
  /** Heap-limit ceiling for one isolate, whatever the instance's memoryMiB. Default 128. */
  maxIsolateMemoryMiB?: number;
  /** Host crashes with a tenant's requests in flight before that tenant gets a host of its own. Default 2. */
  crashStrikes?: number;
  /** First uid/gid for host processes; host slot n runs as uidBase + n. Default 64100. */
  uidBase?: number;
  /** Hosts to which any instance's `outbound` may point; default: loopback only. */
  outboundPolicy?: (host: string, port: number) => boolean;
  /** Turn off the OS sandbox around hosts (namespaces, uid, seccomp, cgroups); for machines without root. */
  sandbox?: boolean;
  /** Every call tenant code makes across the isolate boundary (see host-calls.ts). */
  onHostCall?: (event: import('./host-calls.js').HostCallEvent) => void;
}

/** A handler comes from exactly one place: a file (`source`) or inline (`config.code`). */
export function checkHandlerSource(source: string | null | undefined, inline: string | undefined): void {
  if ((source === null || source === undefined || source === '') === (inline === undefined)) {
    throw validationError('source', 'give exactly one of source (a handler file) or config.code');
  }
}

/** Parses an instance's config; a `StrataError` naming the first bad field otherwise. */
export function parseInstanceConfig(raw: Record<string, unknown>): EnvInstanceConfig {
  const parsed = EnvInstanceConfig.safeParse(raw);
  if (parsed.success) return parsed.data;
  throw zodValidationError(parsed.error, ['config']);
}
