/**
 * Running the host tools the driver drives (runc, ip, nft, mount, mkfs): argument
 * arrays only, never a shell, and a failure becomes a `StrataError` carrying the
 * command and its stderr.
 */
import { execFile, spawn } from 'node:child_process';
import { closeSync, constants, openSync } from 'node:fs';
import { StrataError } from '../../core/errors.js';
import { spawner } from './spawner.js';

export interface RunResult {
  stdout: string;
  stderr: string;
}

export class CommandError extends StrataError {
  constructor(readonly command: string, readonly args: readonly string[], readonly stderr: string, readonly exitCode: number | null) {
    super('STRATA_ERR_DRIVER', `${command} ${args.join(' ')} failed: ${stderr.trim().split('\n').slice(-3).join(' / ') || `exit ${exitCode}`}`, {
      command, exitCode,
    });
    this.name = 'CommandError';
  }
}

/**
 * Runs `command` with `args`; resolves with its output, rejects with `CommandError` on a non-zero exit.
 * Started by the spawn helper (`spawner.ts`: cheap forks), or here where there is none.
 */
export async function run(command: string, args: readonly string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<RunResult> {
  if (spawner) {
    const r = await spawner.run({ command, args, timeoutMs: opts.timeoutMs ?? 60_000, ...(opts.input !== undefined ? { input: opts.input } : {}) });
    if (r.code === 0) return { stdout: r.stdout, stderr: r.stderr };
    throw new CommandError(command, args, r.stderr || r.error || '', r.code);
  }
  return new Promise((resolve, reject) => {
    const child = execFile(command, args, { timeout: opts.timeoutMs ?? 60_000, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' }, (error, stdout, stderr) => {
      if (error) {
        const code = typeof error.code === 'number' ? error.code : null;
        reject(new CommandError(command, args, stderr || error.message, code));
      } else resolve({ stdout, stderr });
    });
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

/** Like `run`, but a failure is returned as false instead of thrown: for teardown steps that may find nothing to remove. */
export async function runQuietly(command: string, args: readonly string[]): Promise<boolean> {
  try {
    await run(command, args);
    return true;
  } catch {
    return false;
  }
}

/**
 * Runs `command` with stdin from /dev/null and stdout and stderr appended to
 * `logPath` (created 0640); resolves with its exit code (null: killed).
 */
export async function runLogged(command: string, args: readonly string[], logPath: string): Promise<number | null> {
  if (spawner) {
    const r = await spawner.run({ command, args, logPath });
    if (r.error !== undefined && r.code === null) throw new CommandError(command, args, r.error, null);
    return r.code;
  }
  const fd = openSync(logPath, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT, 0o640);
  try {
    return await new Promise((resolve, reject) => {
      const child = spawn(command, args, { stdio: ['ignore', fd, fd] });
      child.on('error', reject);
      child.on('exit', (code) => resolve(code));
    });
  } finally {
    closeSync(fd);
  }
}
