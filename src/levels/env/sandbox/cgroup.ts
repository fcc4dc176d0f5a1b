/**
 * A cgroup per isolate host: memory, CPU and pids limits, so one host cannot
 * starve the machine whatever its isolates do.
 *
 * Works with cgroup v1 (the memory, cpu and pids hierarchies under
 * /sys/fs/cgroup/<controller>, as on these hybrid machines) and with a pure
 * cgroup v2 tree (/sys/fs/cgroup with those controllers enabled). Hosts join
 * their cgroup before they exec node (see `command.ts`), so no tenant code ever
 * runs outside it.
 */
import { existsSync, readdirSync, readFileSync, rmdirSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { isAlive } from '../../../core/proc.js';

export interface CgroupLimits {
  memoryBytes: number;
  /** CPU quota in cores (1.5 = one and a half cores). */
  cpus: number;
  pids: number;
}

/** One host's cgroup. */
export interface HostCgroup {
  /** `cgroup.procs` files the host's first process writes its pid into. */
  readonly procsFiles: string[];
  /** Memory charged to the cgroup now, in bytes; null if unreadable. */
  memoryBytes(): number | null;
  /** Kills what is left inside and removes the cgroup. */
  remove(): Promise<void>;
}

const ROOT = '/sys/fs/cgroup';
const PARENT = 'strata-env';
const V1_CONTROLLERS = ['memory', 'cpu', 'pids'] as const;

export type CgroupMode = 'v1' | 'v2';

/** Which cgroup interface can hold hosts here, or null (not root, or controllers missing). */
export function detectCgroups(): CgroupMode | null {
  if (process.getuid?.() !== 0) return null;
  const controllers = tryRead(join(ROOT, 'cgroup.controllers'));
  if (controllers !== null) {
    const have = controllers.trim().split(/\s+/);
    return ['memory', 'cpu', 'pids'].every((c) => have.includes(c)) ? 'v2' : null;
  }
  return V1_CONTROLLERS.every((c) => existsSync(join(ROOT, c, 'cgroup.procs'))) ? 'v1' : null;
}

/** Creates the cgroup `name` (unique per host) under `strata-env/` with `limits`. */
export function createHostCgroup(mode: CgroupMode, name: string, limits: CgroupLimits): HostCgroup {
  const period = 100_000;
  const quota = Math.max(1000, Math.round(limits.cpus * period));
  if (mode === 'v2') {
    const parent = join(ROOT, PARENT);
    mkdirSync(parent, { recursive: true });
    enableV2Controllers(parent);
    const dir = join(parent, name);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'memory.max'), String(limits.memoryBytes));
    if (existsSync(join(dir, 'memory.swap.max'))) writeFileSync(join(dir, 'memory.swap.max'), '0');
    writeFileSync(join(dir, 'cpu.max'), `${quota} ${period}`);
    writeFileSync(join(dir, 'pids.max'), String(limits.pids));
    return {
      procsFiles: [join(dir, 'cgroup.procs')],
      memoryBytes: () => numberIn(join(dir, 'memory.current')),
      remove: () => removeDirs([dir]),
    };
  }
  const dirs = V1_CONTROLLERS.map((c) => join(ROOT, c, PARENT, name));
  for (const dir of dirs) mkdirSync(dir, { recursive: true });
  const [memory, cpu, pids] = dirs as [string, string, string];
  writeFileSync(join(memory, 'memory.limit_in_bytes'), String(limits.memoryBytes));
  writeFileSync(join(cpu, 'cpu.cfs_period_us'), String(period));
  writeFileSync(join(cpu, 'cpu.cfs_quota_us'), String(quota));
  writeFileSync(join(pids, 'pids.max'), String(limits.pids));
  return {
    procsFiles: dirs.map((d) => join(d, 'cgroup.procs')),
    memoryBytes: () => numberIn(join(memory, 'memory.usage_in_bytes')),
    remove: () => removeDirs(dirs),
  };
}

/**
 * Removes host cgroups left by a daemon that died (their name starts with its
 * pid, and that pid is gone). Cgroups of live daemons are left alone.
 */
export async function removeStaleCgroups(mode: CgroupMode): Promise<void> {
  const parents = mode === 'v2' ? [join(ROOT, PARENT)] : V1_CONTROLLERS.map((c) => join(ROOT, c, PARENT));
  for (const parent of parents) {
    let names: string[];
    try { names = readdirSync(parent, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name); } catch { continue; }
    const stale = names.filter((n) => { const pid = Number(n.split('-')[0]); return Number.isInteger(pid) && pid > 0 && !isAlive(pid); });
    await removeDirs(stale.map((n) => join(parent, n)));
  }
}

/** rmdir each cgroup, killing stragglers first; a cgroup whose processes are still exiting is retried briefly. */
async function removeDirs(dirs: string[]): Promise<void> {
  for (const dir of dirs) {
    for (let attempt = 0; attempt < 50; attempt++) {
      for (const pid of (tryRead(join(dir, 'cgroup.procs')) ?? '').split('\n').filter(Boolean)) {
        try { process.kill(Number(pid), 'SIGKILL'); } catch { /* already gone */ }
      }
      try { rmdirSync(dir); break; } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') break;
        if (code !== 'EBUSY' || attempt === 49) throw e;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  }
}

function enableV2Controllers(parent: string): void {
  const want = ['memory', 'cpu', 'pids'];
  for (const dir of [ROOT, parent]) {
    const enabled = (tryRead(join(dir, 'cgroup.subtree_control')) ?? '').split(/\s+/);
    const missing = want.filter((c) => !enabled.includes(c));
    if (missing.length > 0) writeFileSync(join(dir, 'cgroup.subtree_control'), missing.map((c) => `+${c}`).join(' '));
  }
}

function tryRead(path: string): string | null {
  try { return readFileSync(path, 'utf8'); } catch { return null; }
}

function numberIn(path: string): number | null {
  const text = tryRead(path);
  const n = text === null ? Number.NaN : Number(text.trim());
  return Number.isFinite(n) ? n : null;
}
