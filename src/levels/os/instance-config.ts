/**
 * The `config` of an os instance spec, and the checks an os spec passes before
 * anything is queued: the API runs them (through the level module) and the
 * driver again at create, for specs that did not come through the API.
 */
import { z } from 'zod';
import { StrataError } from '../../core/errors.js';
import { validationError, zodValidationError } from '../../core/validation.js';
import type { LevelInput } from '../module.js';

export const osInstanceConfigSchema = z.object({
  /** The command; default: the image's. */
  args: z.array(z.string().max(4096)).min(1).max(256).optional(),
  /** Extra environment, added to (and overriding) the image's. */
  env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/), z.string().max(8192)).optional(),
  /** The port the gateway proxies to; default: the image's. Also exported as PORT. */
  port: z.number().int().min(1).max(65_535).optional(),
  /** A data volume of this many MiB at /data (at most the instance's diskMiB). */
  volumeMiB: z.number().int().min(16).optional(),
  /** The user the process runs as ("1000:1000", "www-data" …); default: the image's `User`, else root. */
  user: z.string().min(1).max(256).optional(),
}).strict();
export type OsInstanceConfig = z.output<typeof osInstanceConfigSchema>;

/** The spec's config, checked against the instance's limits; `STRATA_ERR_VALIDATION` naming the field otherwise. */
export function parseOsInput(input: LevelInput): OsInstanceConfig {
  const parsed = osInstanceConfigSchema.safeParse(input.config);
  if (!parsed.success) {
    throw zodValidationError(parsed.error, ['config']);
  }
  const config = parsed.data;
  if (config.volumeMiB !== undefined && config.volumeMiB > input.limits.diskMiB) {
    throw validationError('config.volumeMiB', `${config.volumeMiB} exceeds the instance's diskMiB ${input.limits.diskMiB}`);
  }
  if (input.source === null) throw validationError('source', 'an os instance needs an image as its source');
  return config;
}
