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
 *
 * A session the guard must know (`ExecOptions.mark`, every session started
 * through the API) starts under a *runner*: a shell on the host that opens an
 * audit session of its own (writes its `/proc/self/loginuid`; the kernel gives
 * it a fresh session id, which every process it starts inherits, in the
 * container too), reports that id on a socket (fd 4), and waits there. The
 * daemon binds the id to the session (`mark`), and only then tells the runner
 * to go on: it closes the socket and execs runc (or the TTY helper). So the
 * session is known before anything of it runs (see `guard/sessions.ts`).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PassThrough, type Duplex, type Readable, type Writable } from 'node:stream';
import { StrataError } from '../../core/errors.js';
import { validationError } from '../../core/validation.js';
import { identityUnder, signalIdentity, type ProcessIdentity } from '../../core/process-identity.js';
import type { ExecOptions, ExecSession } from '../driver.js';
import { execUserArgs, type ProcessUser } from './image-user.js';

/** Built by scripts/setup.d/25-os-exec-tty.sh next to this file in dist/. */
export const EXEC_TTY_HELPER = fileURLToPath(new URL('./exec-tty', import.meta.url));

const DEFAULT_COLS = 80;
const DEFAULT_ROWS = 24;
const PID_POLL_MS = 10;
const SIGNALS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15 };

/**
 * The runner (`sh -c RUNNER strata-session LOGINUID CMD…`): opens its audit
 * session, reports its id on fd 4, waits for `go` there, then becomes CMD.
 * Exit 125 when the kernel refused the audit session (no audit support, or
 * loginuid made immutable) or the daemon said anything but `go`.
 */
const RUNNER = 'echo "$1" > /proc/self/loginuid || exit 125; read -r sid < /proc/self/sessionid; ' +
  'echo "$sid" >&4 && read -r go <&4 && [ "$go" = go ] || exit 125; exec 4<&-; shift; exec "$@"';
/** The runner's fd for the exchange with the daemon (0-2 are the session's stdio, 3 the TTY helper's control). */
const HANDSHAKE_FD = 4;
/** How long the runner may take to report its mark. */
const MARK_TIMEOUT_MS = 10_000;

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
  if (argv.length === 0) throw validationError('argv', 'exec needs a command');
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
  let command: string[];
  if (opts.tty) {
    const socket = join(dir, 'console.sock');
    const cols = String(opts.cols ?? DEFAULT_COLS);
    const rows = String(opts.rows ?? DEFAULT_ROWS);
    command = [EXEC_TTY_HELPER, socket, pidFile, cols, rows, '--', target.binary, ...runcArgs, '--tty', '--detach', '--console-socket', socket, target.id, ...argv];
  } else {
    command = [target.binary, ...runcArgs, target.id, ...argv];
  }
  const stdio: ('pipe' | 'ignore')[] = ['pipe', 'pipe', 'pipe', opts.tty ? 'pipe' : 'ignore'];
  const child = opts.mark
    ? spawn('/bin/sh', ['-c', RUNNER, 'strata-session', String(process.geteuid?.() ?? 0), ...command], { stdio: [...stdio, 'pipe'] })
    : spawn(command[0]!, command.slice(1), { stdio });
  if (opts.mark) {
    try {
      await markAndRelease(child, opts.mark);
    } catch (err) {
      child.kill('SIGKILL');
      await rm(dir, { recursive: true, force: true });
      throw err;
    }
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

/**
 * Reads the runner's audit session id, hands it to `mark` (which registers
 * it), then releases the runner. Rejects — the runner not released — when the
 * runner cannot report one or `mark` throws.
 */
async function markAndRelease(child: ChildProcess, mark: NonNullable<ExecOptions['mark']>): Promise<void> {
  const channel = child.stdio[HANDSHAKE_FD] as Duplex;
  channel.on('error', () => undefined);
  let onClose: ((code: number | null) => void) | undefined;
  const line = await new Promise<string>((resolve, reject) => {
    let got = '';
    const timer = setTimeout(() => reject(new Error(`no answer within ${MARK_TIMEOUT_MS} ms`)), MARK_TIMEOUT_MS);
    channel.on('data', (d: Buffer) => {
      got += d.toString();
      if (!got.includes('\n')) return;
      clearTimeout(timer);
      channel.removeAllListeners('data');
      resolve(got.split('\n')[0]!.trim());
    });
    // 'close': its stdio is closed too, so what it said on stderr is buffered, unread (the session's reader is not attached yet).
    onClose = (code) => {
      clearTimeout(timer);
      const said = String(child.stderr?.read() ?? '').trim();
      reject(new Error(`the runner exited (${code})${said ? `: ${said}` : ''}`));
    };
    child.once('close', onClose);
  }).finally(() => child.off('close', onClose!)).catch((err: Error) => {
    throw new StrataError('STRATA_ERR_UNAVAILABLE', `the exec session could not be marked for the guard (an audit session of the kernel, /proc/self/loginuid): ${err.message}`, undefined, { cause: err });
  });
  const execId = Number(line);
  if (!/^\d+$/.test(line) || !(execId > 0) || execId === 0xffff_ffff) {
    throw new StrataError('STRATA_ERR_UNAVAILABLE', `the exec session could not be marked for the guard: its runner reported ${JSON.stringify(line)}`);
  }
  await mark({ execId, runnerPid: child.pid! });
  channel.end('go\n');
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
