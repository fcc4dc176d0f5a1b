/**
 * The level-specific part of an instance spec (`InstanceSpec.config`) for `vm`
 * and `emu`, strict: an unknown key is an error, not a silent default.
 *
 *   { "arch": "aarch64", "port": 8080, "command": "httpd -f -p 8080 -h /www" }
 *
 * - `arch`: guest architecture; `vm` takes only the host's, `emu` either.
 *   Default: the host's.
 * - `port`: the guest port the gateway reaches (default 80, where the default
 *   service, busybox httpd on /www, listens).
 * - `command`: a shell command (busybox sh) that replaces the default service.
 */
import { z } from 'zod';
import { StrataError } from '../../core/errors.js';
import { zodValidationError } from '../../core/validation.js';
import { GUEST_ARCHES, type GuestArch } from './cmdline.js';

export const vmConfigSchema = z.object({
  arch: z.enum(GUEST_ARCHES).optional(),
  port: z.number().int().min(1).max(65535).default(80),
  command: z.string().min(1).max(2048).optional(),
}).strict();

export interface VmConfig {
  arch: GuestArch;
  port: number;
  command: string | null;
}

export function parseVmConfig(raw: Record<string, unknown>, defaultArch: GuestArch): VmConfig {
  const parsed = vmConfigSchema.safeParse(raw);
  if (!parsed.success) {
    throw zodValidationError(parsed.error, ['config']);
  }
  return { arch: parsed.data.arch ?? defaultArch, port: parsed.data.port, command: parsed.data.command ?? null };
}

/**
 * The config of a spec at a QEMU level that runs `arches` guests (the first is
 * the default); `STRATA_ERR_VALIDATION` naming what is wrong otherwise.
 */
export function parseQemuInput(raw: Record<string, unknown>, level: string, arches: readonly GuestArch[]): VmConfig {
  const config = parseVmConfig(raw, arches[0]!);
  if (!arches.includes(config.arch)) {
    throw new StrataError('STRATA_ERR_VALIDATION', `level ${level} runs ${arches.join(', ')} guests, not ${config.arch}`, { arch: config.arch, field: 'config.arch' });
  }
  return config;
}
