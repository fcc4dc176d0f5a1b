/**
 * The OCI runtime binary (runc; crun where cgroup v2 is pure), with a state root
 * of the driver's own so `list` shows exactly the containers Strata made.
 *
 * A container is started in two steps, `create` then `start`: between them its
 * namespaces exist but the tenant's process has not run, which is when the driver
 * plugs the network namespace into the tenant's bridge.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CommandError, run, runLogged } from './exec.js';
import { execUserArgs, type ProcessUser } from './image-user.js';

export type RuntimeStatus = 'creating' | 'created' | 'running' | 'paused' | 'stopped';

export interface RuntimeContainer {
  id: string;
  pid: number;
  status: RuntimeStatus;
  bundle: string;
}

export class Runtime {
  constructor(readonly binary: string, readonly root: string) {}

  #args(...args: string[]): string[] {
    return ['--root', this.root, ...args];
  }

  /** Whether the state root exists (it does once anything was created). */
  rootExists(): boolean {
    return existsSync(this.root);
  }

  /** Whether the runtime has state for `id` (a container in any status), without running it. */
  holds(id: string): boolean {
    return existsSync(join(this.root, id));
  }

  async version(): Promise<string> {
    const { stdout } = await run(this.binary, ['--version']);
    return stdout.split('\n')[0]!.trim();
  }

  /**
   * Creates the container from `bundle`; its process gets stdout and stderr
   * appended to `logPath` (stdin is /dev/null). The runtime's own log goes to
   * `bundle/runtime.log`, whose last error is the message when creation fails.
   */
  async create(id: string, bundle: string, logPath: string): Promise<void> {
    const runtimeLog = join(bundle, 'runtime.log');
    const args = ['--log', runtimeLog, '--log-format', 'json', ...this.#args('create', '--bundle', bundle, '--pid-file', join(bundle, 'pid'), id)];
    const code = await runLogged(this.binary, args, logPath);
    if (code !== 0) throw new CommandError(this.binary, ['create', id], await lastRuntimeError(runtimeLog), code);
  }

  /**
   * Runs `args` in the container as its process user (or `opts.user`), under
   * the container's own seccomp profile, capabilities, no_new_privs and cgroups
   * (runc applies the container's config to every exec). Resolves with the exit
   * code and output; does not throw for a non-zero exit.
   */
  exec(id: string, args: readonly string[], opts: { env?: readonly string[]; timeoutMs?: number; user?: ProcessUser } = {}): Promise<ExecResult> {
    const flags = [...(opts.user ? execUserArgs(opts.user) : []), ...(opts.env ?? []).flatMap((e) => ['--env', e])];
    return new Promise((resolve, reject) => {
      const child = spawn(this.binary, this.#args('exec', ...flags, id, ...args), { stdio: ['ignore', 'pipe', 'pipe'] });
      const stdout: Buffer[] = [];
      const stderr: Buffer[] = [];
      child.stdout.on('data', (c: Buffer) => stdout.push(c));
      child.stderr.on('data', (c: Buffer) => stderr.push(c));
      const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 30_000);
      child.on('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        resolve({ exitCode: code ?? (signal ? 128 : 1), stdout: Buffer.concat(stdout).toString('utf8'), stderr: Buffer.concat(stderr).toString('utf8') });
      });
    });
  }

  async start(id: string): Promise<void> {
    await run(this.binary, this.#args('start', id));
  }

  async kill(id: string, signal: 'TERM' | 'KILL'): Promise<void> {
    await run(this.binary, this.#args('kill', id, signal));
  }

  async pause(id: string): Promise<void> {
    await run(this.binary, this.#args('pause', id));
  }

  async resume(id: string): Promise<void> {
    await run(this.binary, this.#args('resume', id));
  }

  /** Removes the container (and its cgroup); `force` kills it first. Deleting what is gone succeeds. */
  async delete(id: string, force = false): Promise<void> {
    try {
      await run(this.binary, this.#args('delete', ...(force ? ['--force'] : []), id));
    } catch (e) {
      if (e instanceof CommandError && /does not exist|not exist/.test(e.stderr)) return;
      throw e;
    }
  }

  /** The container's state, or null when the runtime holds no container with this id. */
  async state(id: string): Promise<RuntimeContainer | null> {
    try {
      const { stdout } = await run(this.binary, this.#args('state', id));
      return toContainer(JSON.parse(stdout) as RawState);
    } catch (e) {
      if (e instanceof CommandError && /does not exist|not exist/.test(e.stderr)) return null;
      throw e;
    }
  }

  async list(): Promise<RuntimeContainer[]> {
    const { stdout } = await run(this.binary, this.#args('list', '--format', 'json'));
    const raw = JSON.parse(stdout.trim() || 'null') as RawState[] | null;
    return (raw ?? []).map(toContainer);
  }
}

export interface ExecResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

interface RawState {
  id: string;
  pid: number;
  status: RuntimeStatus;
  bundle: string;
}

const toContainer = (raw: RawState): RuntimeContainer => ({ id: raw.id, pid: raw.pid, status: raw.status, bundle: raw.bundle });

async function lastRuntimeError(logPath: string): Promise<string> {
  try {
    const lines = (await readFile(logPath, 'utf8')).trim().split('\n').reverse();
    for (const line of lines) {
      const entry = JSON.parse(line) as { level?: string; msg?: string };
      if (entry.level === 'error' || entry.level === 'fatal') return entry.msg ?? line;
    }
  } catch {
    // no log: the runtime failed before writing one
  }
  return 'the runtime failed without a message';
}
