/** Runs the `strata` CLI (bin/strata) as a user would: its own process, only the environment given. */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const STRATA_BIN = fileURLToPath(new URL('../../../bin/strata', import.meta.url));

export interface CliRun { code: number; stdout: string; stderr: string }

/** `strata ARGS` against `url` with `token`, HOME set to `home` (no config of the machine's user leaks in). */
export function runStrata(args: string[], env: { url: string; token: string; home: string }): Promise<CliRun> {
  return new Promise((resolve) => {
    execFile(process.execPath, [STRATA_BIN, ...args], {
      env: { PATH: process.env.PATH ?? '', HOME: env.home, STRATA_URL: env.url, STRATA_TOKEN: env.token }, timeout: 30_000,
    }, (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr }));
  });
}
