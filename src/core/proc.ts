/**
 * Watching a process from the host through /proc: whether it still lives,
 * whether it would hear SIGTERM, the CPU time it used, and waiting for it to end.
 */
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

const POLL_MS = 10;
/** Bit of SIGTERM (15) in the SigCgt mask of /proc/PID/status. */
const SIGTERM_BIT = 1n << 14n;

const readProc = (pid: number, file: string): string | null => {
  try {
    return readFileSync(`/proc/${pid}/${file}`, 'utf8');
  } catch {
    return null;
  }
};

/** USER_HZ: the unit of /proc/PID/stat's times; 100 on every Linux architecture Strata runs on. */
const CLOCK_TICKS_PER_S = 100;

/** CPU time (user + system, all its threads) `pid` used, in ns; null when it is gone. */
export function processCpuNs(pid: number): number | null {
  const stat = readProc(pid, 'stat');
  if (stat === null) return null;
  // The command name (field 2) may hold spaces and parentheses: count fields after its closing one.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(fields[11]), stime = Number(fields[12]);
  return Number.isFinite(utime) && Number.isFinite(stime) ? ((utime + stime) * 1e9) / CLOCK_TICKS_PER_S : null;
}

/** Whether `pid` exists and is not a zombie (a zombie has ended; it only waits to be reaped). */
export function isAlive(pid: number): boolean {
  const stat = readProc(pid, 'stat');
  if (stat === null) return false;
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  return state !== 'Z' && state !== 'X';
}

/**
 * Whether `pid` has a handler for SIGTERM. The init process of a pid namespace
 * ignores every signal it does not handle (except SIGKILL from outside), so
 * sending TERM to one without a handler and waiting out the grace period only
 * wastes the grace period.
 */
export function catchesSigterm(pid: number): boolean {
  const status = readProc(pid, 'status');
  const line = status?.split('\n').find((l) => l.startsWith('SigCgt:'));
  return line !== undefined && (BigInt(`0x${line.slice('SigCgt:'.length).trim()}`) & SIGTERM_BIT) !== 0n;
}

/** Resolves true once `pid` is gone, false if it still lives after `timeoutMs`. */
export async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isAlive(pid)) {
    if (Date.now() >= deadline) return false;
    await sleep(POLL_MS);
  }
  return true;
}
