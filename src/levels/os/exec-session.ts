/**
 * Interactive `exec` into a running container: a live process whose stdin,
 * stdout and stderr stream, with or without a terminal.
 *
 * Both ways go through `runc exec`, which applies the container's own config to
 * the new process — its namespaces, cgroup, user, capabilities, seccomp profile,
 * no_new_privs and rlimits — so an exec'd process is confined exactly as the
 * container's init is (as `OsDriver.run` is), and runs as the container's
 * process user (the image's `User`) unless another user, already resolved and
 * inside the tenant's id range, is asked for.
 *
 * - Without a TTY, runc runs in the foreground and hands its pipes to the process
 *   as fds 0, 1 and 2; its exit code is the process's.
 * - With a TTY, runc makes the pseudoterminal inside the container and sends its
 *   master end over `--console-socket` (SCM_RIGHTS). Node cannot receive file
 *   descriptors, so the small helper `exec-tty` (C, built by the setup step) does:
 *   it receives the master, relays it to its own stdio, resizes it on request
 *   (control lines on fd 3), and — a child subreaper, since `--console-socket`
 *   needs a detached runc — waits for the process and exits with its code.
 *   Why not a Node pty module or `script(1)`: both only give runc a terminal of
 *   their own to copy from (a second pty in the path), and `script` cannot
 *   resize; the helper is a few hundred lines of C on libc alone, built like
 *   the env level's seccomp helper.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PassThrough, type Readable, type Writable } from 'node:stream';
import { StrataError } from '../../core/errors.js';
import { identityUnder, signalIdentity, type ProcessIdentity } from '../../core/process-identity.js';
import type { ExecOptions, ExecSession } from '../driver.js';
import { execUserArgs, type ProcessUser } from './image-user.js';

/** Built by scripts/setup.d/25-os-exec-tty.sh next to this file in dist/. */
export const EXEC_TTY_HELPER = fileURLToPath(new URL('./exec-tty', import.meta.url));

const DEFAULT_COLS = 80;
const DEFAULT_ROWS = 24;
const PID_POLL_MS = 10;
const SIGNALS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15 };

export interface ExecTarget {
  /** The runtime binary and its state root (`runc --root`). */
  binary: string;
  root: string;
  id: string;
  /** Another user than the container's own (resolved: `ExecOptions.user` is a name or id). */
  user?: ProcessUser;
}

/** Starts `argv` in the container; resolves once the process (or runc) has been spawned. */
export async function startExecSession(target: ExecTarget, argv: readonly string[], opts: ExecOptions): Promise<ExecSession> {
  if (argv.length === 0) throw new StrataError('STRATA_ERR_VALIDATION', 'exec needs a command', { field: 'argv' });
  if (opts.tty && !existsSync(EXEC_TTY_HELPER)) {
    throw new StrataError('STRATA_ERR_UNAVAILABLE', `exec --tty needs the helper ${EXEC_TTY_HELPER} (built by the setup step: npm run setup)`);
  }
  // Private to this session: the pid file, and with a TTY the console socket runc connects to.
  const dir = await mkdtemp(join(tmpdir(), 'strata-exec-'));
  const pidFile = join(dir, 'pid');
  const runcArgs = [
    '--root', target.root, 'exec', '--pid-file', pidFile,
    ...(target.user ? execUserArgs(target.user) : []),
    ...(opts.env ?? []).flatMap((e) => ['--env', e]),
    ...(opts.cwd ? ['--cwd', opts.cwd] : []),
  ];
  let child: ChildProcess;
  if (opts.tty) {
    const socket = join(dir, 'console.sock');
    const cols = String(opts.cols ?? DEFAULT_COLS);
    const rows = String(opts.rows ?? DEFAULT_ROWS);
    child = spawn(EXEC_TTY_HELPER, [socket, pidFile, cols, rows, '--', target.binary, ...runcArgs, '--tty', '--detach', '--console-socket', socket, target.id, ...argv], {
      stdio: ['pipe', 'pipe', 'pipe', 'pipe'],
    });
  } else {
    child = spawn(target.binary, [...runcArgs, target.id, ...argv], { stdio: ['pipe', 'pipe', 'pipe'] });
  }
  const control = opts.tty ? (child.stdio[3] as Writable) : null;
  control?.on('error', () => undefined);
  child.stdin!.on('error', () => undefined);

  // With a TTY the helper's stderr carries only failures (runc's, or its own): shown on the terminal stream.
  const stdout = opts.tty ? merged(child.stdout!, child.stderr!) : child.stdout!;

  const exit = new Promise<number>((resolve) => {
    child.on('error', () => resolve(127));
    child.on('close', (code, signal) => {
      resolve(code ?? 128 + (signal ? (SIGNALS[signal] ?? 0) : 0));
      void rm(dir, { recursive: true, force: true });
    });
  });

  // The process's identity, taken as soon as runc writes its pid: killing by the pid file's number
  // later could hit whatever process got that number after ours exited and was reaped.
  let started: ProcessIdentity | null = null;
  const capture = (): ProcessIdentity | null => {
    if (started || child.pid === undefined) return started;
    let pid: number;
    try {
      pid = Number(readFileSync(pidFile, 'utf8').trim());
    } catch {
      return null;
    }
    if (pid > 0) started = identityUnder(pid, child.pid);
    return started;
  };
  const watcher = setInterval(() => {
    if (capture() || child.exitCode !== null || child.signalCode !== null) clearInterval(watcher);
  }, PID_POLL_MS);
  watcher.unref();
  child.on('close', () => clearInterval(watcher));

  return {
    stdin: child.stdin!,
    stdout,
    stderr: opts.tty ? null : child.stderr!,
    exit,
    resize(cols: number, rows: number): void {
      if (!control || control.destroyed) return;
      if (!Number.isInteger(cols) || !Number.isInteger(rows) || cols < 1 || rows < 1 || cols > 10_000 || rows > 10_000) return;
      control.write(`${cols} ${rows}\n`);
    },
    kill(): void {
      if (child.exitCode !== null || child.signalCode !== null) return;
      // The process itself (runc does not forward SIGKILL), if it is still the one runc started; then its runner, in case it never started it.
      const id = capture();
      if (id) signalIdentity(id, 'SIGKILL');
      child.kill(opts.tty ? 'SIGTERM' : 'SIGKILL');
    },
  };
}

/** One stream of two, ended when both have ended. */
function merged(a: Readable, b: Readable): Readable {
  const out = new PassThrough();
  let open = 2;
  for (const s of [a, b]) {
    s.pipe(out, { end: false });
    s.on('end', () => {
      if (--open === 0) out.end();
    });
  }
  return out;
}
