/**
 * Starting and ending QEMU processes — the jailer idea of Firecracker, with what
 * Debian has: `/bin/sh` joins the VM's cgroup (so no QEMU instruction runs
 * outside it), then `setpriv` drops to the unprivileged VM user with no
 * capabilities, an empty bounding set and no_new_privs, and execs QEMU. The pid
 * stays the same through both execs. QEMU is detached, so it outlives a daemon
 * crash; the daemon finds it again by its pidfile and /proc.
 */
import { spawn } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { StrataError } from '../../core/errors.js';
import type { CommandLine } from './cmdline.js';

export interface VmUser {
  name: string;
  uid: number;
  gid: number;
}

/** The unprivileged account QEMU runs as: `strata-vm` (made by the setup step), else `nobody`. */
export function vmUser(passwd = readPasswd()): VmUser | null {
  const entries = passwd.split('\n').map((l) => l.split(':'));
  for (const name of ['strata-vm', 'nobody']) {
    const e = entries.find((f) => f[0] === name);
    if (e && e[2] && e[3]) return { name, uid: Number(e[2]), gid: Number(e[3]) };
  }
  return null;
}

function readPasswd(): string {
  try {
    return readFileSync('/etc/passwd', 'utf8');
  } catch {
    return '';
  }
}

const JOIN_CGROUP_AND_EXEC = 'for f in $STRATA_CGROUP_PROCS; do echo $$ > "$f" || exit 97; done; exec "$@"';

/** The argv of the launcher: sh (join cgroups) → setpriv (drop privileges) → QEMU. Pure, for tests. */
export function launcherArgv(cmd: CommandLine, user: VmUser): string[] {
  return [
    '/bin/sh', '-c', JOIN_CGROUP_AND_EXEC, 'strata-vm-launch',
    'setpriv', `--reuid=${user.uid}`, `--regid=${user.gid}`, '--clear-groups', '--inh-caps=-all', '--bounding-set=-all', '--no-new-privs', '--',
    cmd.binary, ...cmd.args,
  ];
}

export interface LaunchOptions {
  cmd: CommandLine;
  user: VmUser;
  cgroupProcs: string[];
  /** QEMU's own stdout/stderr (not the guest console). */
  logFd: number;
  /** Becomes fd 3 in QEMU, for `-incoming fd:3`. */
  incomingFd?: number;
}

/** Starts QEMU detached; returns its pid. */
export function launchQemu(o: LaunchOptions): number {
  const [file, ...args] = launcherArgv(o.cmd, o.user) as [string, ...string[]];
  const child = spawn(file, args, {
    detached: true,
    stdio: ['ignore', o.logFd, o.logFd, ...(o.incomingFd === undefined ? [] : [o.incomingFd])],
    env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', STRATA_CGROUP_PROCS: o.cgroupProcs.join(' ') },
  });
  child.on('error', () => undefined);
  child.unref();
  if (child.pid === undefined) throw new StrataError('STRATA_ERR_DRIVER', `could not start ${o.cmd.binary}`);
  return child.pid;
}

/** Whether `pid` is a live QEMU whose command line contains `marker` (its QMP socket path): guards against pid reuse. */
export async function isQemu(pid: number, marker: string): Promise<boolean> {
  try {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8');
    return cmdline.includes(marker) && cmdline.includes('qemu-system-');
  } catch {
    return false;
  }
}

/**
 * Pids of live QEMU processes whose command line contains `needle`, with their
 * command lines. Every process's `comm` is read synchronously first (it needs
 * no lock on the process's memory, so it cannot stall the daemon, and a
 * thread-pool round trip per process made the scan ~10× slower: ~27 ms for 120
 * processes on a loaded host, on the path of every start and restore); only
 * QEMUs have their command line read.
 */
export async function findQemus(needle: string): Promise<Array<{ pid: number; cmdline: string[] }>> {
  const candidates = readdirSync('/proc').filter((name) => /^\d+$/.test(name) && readComm(name).startsWith('qemu-system-'));
  const found: Array<{ pid: number; cmdline: string[] }> = [];
  for (const name of candidates) {
    const raw = await readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '');
    if (!raw.includes('qemu-system-') || !raw.includes(needle)) continue;
    found.push({ pid: Number(name), cmdline: raw.split('\0').filter(Boolean) });
  }
  return found;
}

function readComm(pid: string): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'latin1');
  } catch {
    return ''; // exited meanwhile
  }
}

/** Waits until `pid` no longer is the QEMU with `marker`; false on timeout. */
export async function waitForExit(pid: number, marker: string, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (await isQemu(pid, marker)) {
    if (Date.now() >= deadline) return false;
    await sleep(20);
  }
  return true;
}

/** SIGKILL, then wait for the process to be gone. */
export async function killQemu(pid: number, marker: string): Promise<void> {
  if (!(await isQemu(pid, marker))) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    return;
  }
  if (!(await waitForExit(pid, marker, 5_000))) throw new StrataError('STRATA_ERR_DRIVER', `QEMU pid ${pid} survived SIGKILL`, { pid });
}
