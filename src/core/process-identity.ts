/**
 * A process named so that the name cannot pass to another process: its pid
 * together with its start time (`/proc/<pid>/stat` field 22, clock ticks since
 * boot). A pid alone is handed to the next process once the first is reaped;
 * the pair never is. Node 20 has no pidfd API in core, so a process the daemon
 * did not spawn itself is signalled only after its identity is checked again
 * (the remaining window between that read and `kill` is one system call).
 */
import { readFileSync } from 'node:fs';

export interface ProcessIdentity {
  pid: number;
  /** Start time in clock ticks since boot, as the kernel prints it. */
  startTime: string;
}

interface ProcStat {
  ppid: number;
  startTime: string;
}

/** The fields of `/proc/<pid>/stat` used here; null when the process is gone. */
export function procStat(pid: number): ProcStat | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // The name (field 2) is in parentheses and may hold spaces or ')': the fields after it start past the last ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const ppid = Number(fields[1]);
  const startTime = fields[19];
  return Number.isInteger(ppid) && startTime !== undefined ? { ppid, startTime } : null;
}

/**
 * `pid`'s identity, only if it descends from `ancestor` within `hops`
 * generations (e.g. a process runc started for us, reparented to our subreaper):
 * a pid that was already reused by an unrelated process is not taken.
 */
export function identityUnder(pid: number, ancestor: number, hops = 3): ProcessIdentity | null {
  const own = procStat(pid);
  if (!own) return null;
  let parent = own.ppid;
  for (let i = 0; i < hops && parent > 1; i++) {
    if (parent === ancestor) return { pid, startTime: own.startTime };
    const up = procStat(parent);
    if (!up) return null;
    parent = up.ppid;
  }
  return null;
}

/** Sends `signal` to the process only if it is still the one `id` named; false when it is gone (or its pid now names another). */
export function signalIdentity(id: ProcessIdentity, signal: NodeJS.Signals): boolean {
  if (procStat(id.pid)?.startTime !== id.startTime) return false;
  try {
    process.kill(id.pid, signal);
    return true;
  } catch {
    return false;
  }
}
