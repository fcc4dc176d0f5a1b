/**
 * Where the CLI finds the API and its token. First match wins, per field:
 *
 * 1. flags `--url`, `--token`;
 * 2. environment `STRATA_URL`, `STRATA_TOKEN`;
 * 3. the config file `$STRATA_CONFIG`, else `~/.config/strata/config.json`
 *    (`{"url": "...", "token": "..."}`);
 * 4. for the token only: the provider-admin token file the daemon writes,
 *    `$STRATA_DATA_DIR/admin.token` or `/var/lib/strata/admin.token`, if this
 *    user can read it (root on the host, as with LXD's local socket).
 *
 * The URL defaults to `http://127.0.0.1:8470`, what `strata up` listens on.
 */
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { CliError } from './output.js';
import { messageOf } from '../core/errors.js';

export const DEFAULT_URL = 'http://127.0.0.1:8470';
export const DEFAULT_DATA_DIR = '/var/lib/strata';

export interface GlobalFlags {
  url?: string;
  token?: string;
  json?: boolean;
  reason?: string;
}

export interface CliConfig {
  url: string;
  token: string | null;
  json: boolean;
  reason: string | null;
}

function readConfigFile(path: string, required: boolean): { url?: string; token?: string } {
  if (!existsSync(path)) {
    if (required) throw new CliError(`config file ${path} does not exist`, 'STRATA_ERR_CONFIG');
    return {};
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new CliError(`config file ${path}: ${messageOf(e)}`, 'STRATA_ERR_CONFIG');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new CliError(`config file ${path}: expected a JSON object {"url", "token"}`, 'STRATA_ERR_CONFIG');
  }
  const { url, token } = parsed as Record<string, unknown>;
  for (const [k, v] of Object.entries({ url, token })) {
    if (v !== undefined && typeof v !== 'string') throw new CliError(`config file ${path}: "${k}" must be a string`, 'STRATA_ERR_CONFIG');
  }
  return { ...(url ? { url: url as string } : {}), ...(token ? { token: token as string } : {}) };
}

function readTokenFile(path: string): string | null {
  try {
    return readFileSync(path, 'utf8').trim() || null;
  } catch {
    return null; // not there, or not ours to read
  }
}

export function resolveConfig(flags: GlobalFlags, env: NodeJS.ProcessEnv = process.env, home: string = homedir()): CliConfig {
  const configPath = env.STRATA_CONFIG || join(home, '.config', 'strata', 'config.json');
  const file = readConfigFile(configPath, Boolean(env.STRATA_CONFIG));
  const url = flags.url || env.STRATA_URL || file.url || DEFAULT_URL;
  if (!/^https?:\/\/[^/]+/.test(url)) throw new CliError(`API URL '${url}' must start with http:// or https://`, 'STRATA_ERR_CONFIG');
  const token =
    flags.token || env.STRATA_TOKEN || file.token || readTokenFile(join(env.STRATA_DATA_DIR || DEFAULT_DATA_DIR, 'admin.token'));
  return { url: url.replace(/\/+$/, ''), token: token || null, json: Boolean(flags.json), reason: flags.reason?.trim() || null };
}
