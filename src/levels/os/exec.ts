/**
 * Running the host tools the driver drives (runc, ip, nft, mount, mkfs): argument
 * arrays only, never a shell, and a failure becomes a `StrataError` carrying the
 * command and its stderr.
 */
import { execFile } from 'node:child_process';
import { StrataError } from '../../errors.js';

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

/** Runs `command` with `args`; resolves with its output, rejects with `CommandError` on a non-zero exit. */
export function run(command: string, args: readonly string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<RunResult> {
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
