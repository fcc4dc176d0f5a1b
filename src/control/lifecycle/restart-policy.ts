/**
 * The restart policy of an instance, at any level: what the reconciler does when
 * the instance's process dies while it should run (as Docker's `--restart`):
 *
 *   "no"          leave it dead (the default); it is then meant to be stopped
 *   "on-failure"  start it again unless it is known to have exited with status 0
 *   "always"      start it again
 *
 * It lives in the instance's config as `restart`, a key of the control plane's,
 * not the level's: `driverSpec` takes it out before a driver sees the config, so
 * drivers keep their strict config schemas.
 *
 * Restarts back off exponentially (1 s, 2 s, 4 s … at most 5 min), and the
 * back-off starts over once a restarted instance has stayed up for a while.
 */
import { z } from 'zod';
import { StrataError } from '../../core/errors.js';
import { validationError } from '../../core/validation.js';
import type { InstanceSpec } from '../../levels/driver.js';

export const RESTART_POLICIES = ['no', 'on-failure', 'always'] as const;
export type RestartPolicy = (typeof RESTART_POLICIES)[number];
export const RestartPolicySchema = z.enum(RESTART_POLICIES);

/** The config key the policy lives under. */
export const RESTART_KEY = 'restart';

/** The policy in an instance's config; STRATA_ERR_VALIDATION for anything but the three values. */
export function parseRestartPolicy(config: Record<string, unknown>): RestartPolicy {
  const raw = config[RESTART_KEY];
  if (raw === undefined) return 'no';
  const parsed = RestartPolicySchema.safeParse(raw);
  if (!parsed.success) {
    throw validationError('config.restart', `must be one of ${RESTART_POLICIES.map((p) => `"${p}"`).join(', ')}`);
  }
  return parsed.data;
}

/** The policy of a stored instance; an unreadable value (never accepted at the edge) counts as "no". */
export function restartPolicyOf(config: Record<string, unknown>): RestartPolicy {
  const parsed = RestartPolicySchema.safeParse(config[RESTART_KEY] ?? 'no');
  return parsed.success ? parsed.data : 'no';
}

/** An instance's config as its level sees it: without the control plane's own keys. */
export function levelConfig(config: Record<string, unknown>): Record<string, unknown> {
  if (!(RESTART_KEY in config)) return config;
  const { [RESTART_KEY]: _policy, ...rest } = config;
  return rest;
}

/** The spec as its driver gets it: without the control plane's own config keys. */
export function driverSpec(spec: InstanceSpec): InstanceSpec {
  return RESTART_KEY in spec.config ? { ...spec, config: levelConfig(spec.config) } : spec;
}

/** Whether a process that died with `exitCode` (undefined: not known) is started again under `policy`. */
export function shouldRestart(policy: RestartPolicy, exitCode: number | undefined): boolean {
  if (policy === 'always') return true;
  if (policy === 'on-failure') return exitCode !== 0;
  return false;
}

export interface BackoffOptions {
  /** Delay before the first restart; doubles with each one after. Default 1 s. */
  baseMs?: number;
  /** The longest delay. Default 5 min. */
  maxMs?: number;
  /** An instance up this long since its last restart has its back-off start over. Default 60 s. */
  resetAfterMs?: number;
}

interface Track {
  /** Restarts since the back-off last started over. */
  consecutive: number;
  /** Every restart this tracker made. */
  total: number;
  /** When the last restart was made (ms since epoch). */
  startedAt: number;
  /** No restart before this time. */
  notBefore: number;
  /** A death is recorded and no restart made since. */
  pending: boolean;
}

/** The reconciler's memory of the restarts it made, per instance (lost with the daemon; the counts also go into the instance's info). */
export class RestartBackoff {
  readonly #tracks = new Map<string, Track>();
  readonly #baseMs: number;
  readonly #maxMs: number;
  readonly #resetAfterMs: number;

  constructor(opts: BackoffOptions = {}) {
    this.#baseMs = opts.baseMs ?? 1_000;
    this.#maxMs = opts.maxMs ?? 300_000;
    this.#resetAfterMs = opts.resetAfterMs ?? 60_000;
  }

  /** Records a death at `now`; returns when the next restart may be made. */
  died(id: string, now: number): number {
    const t = this.#tracks.get(id) ?? { consecutive: 0, total: 0, startedAt: 0, notBefore: 0, pending: false };
    if (t.consecutive > 0 && now - t.startedAt >= this.#resetAfterMs) t.consecutive = 0;
    t.notBefore = now + Math.min(this.#maxMs, this.#baseMs * 2 ** t.consecutive);
    t.pending = true;
    this.#tracks.set(id, t);
    return t.notBefore;
  }

  /** Milliseconds until a restart of `id` may be made; 0 when it may be made now. */
  waitMs(id: string, now: number): number {
    return Math.max(0, (this.#tracks.get(id)?.notBefore ?? 0) - now);
  }

  /** Records a restart at `now`; returns the total restarts of `id`. */
  restarted(id: string, now: number): number {
    const t = this.#tracks.get(id) ?? { consecutive: 0, total: 0, startedAt: 0, notBefore: 0, pending: false };
    t.consecutive++;
    t.total++;
    t.startedAt = now;
    t.pending = false;
    this.#tracks.set(id, t);
    return t.total;
  }

  /** Whether `id` died and has not been restarted since. */
  pending(id: string): boolean {
    return this.#tracks.get(id)?.pending ?? false;
  }

  total(id: string): number {
    return this.#tracks.get(id)?.total ?? 0;
  }

  forget(id: string): void {
    this.#tracks.delete(id);
  }
}
