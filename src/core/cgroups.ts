/**
 * Control groups, v1 and v2: the one place that knows the files of the cpu,
 * memory and pids controllers, so every level limits, reads and removes its
 * groups the same way. What a level puts where (its parent, names, limits) is
 * the level's own policy.
 *
 * Modes: `v2` when the unified hierarchy is mounted at the top with its
 * controllers (`/sys/fs/cgroup/cgroup.controllers`); otherwise `v1`, which
 * covers hybrid machines (these ones): the v1 controllers under
 * `/sys/fs/cgroup/<controller>` and an unified hierarchy without controllers
 * at `/sys/fs/cgroup/unified`, where runc still gives each container a group —
 * the group whose id the kernel reports per task.
 *
 * A group is named by its path below the hierarchy's top (`strata-vm/vm-1`),
 * the same in every hierarchy. Creating one is synchronous: cgroupfs writes
 * never wait for a disk, and a caller can then make the group and start the
 * process that joins it in one turn.
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { readFile, readdir, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { processCpuNs } from './proc.js';

export const CGROUP_FS = '/sys/fs/cgroup';
/** The CFS period every Strata group uses; quotas are in this unit. */
export const CPU_PERIOD_US = 100_000;
/** The kernel's smallest CFS quota; a smaller one is refused with EINVAL. */
const MIN_QUOTA_US = 1000;

export type CgroupMode = 'v1' | 'v2';

/** The controllers whose limits Strata sets. On v1 each is a hierarchy of its own. */
export const LIMITED_CONTROLLERS = ['cpu', 'memory', 'pids'] as const;
export type Controller = (typeof LIMITED_CONTROLLERS)[number] | 'cpuacct' | 'io';

/** v2 only when the unified hierarchy is mounted at the top and has controllers; hybrid machines are v1. */
export function cgroupMode(fsRoot = CGROUP_FS): CgroupMode {
  return existsSync(join(fsRoot, 'cgroup.controllers')) ? 'v2' : 'v1';
}

/** The mode, when the cpu, memory and pids controllers are all there to limit a group; null otherwise. */
export function limitingCgroupMode(fsRoot = CGROUP_FS): CgroupMode | null {
  const controllers = readText(join(fsRoot, 'cgroup.controllers'));
  if (controllers !== null) {
    const have = controllers.trim().split(/\s+/);
    return LIMITED_CONTROLLERS.every((c) => have.includes(c)) ? 'v2' : null;
  }
  return LIMITED_CONTROLLERS.every((c) => existsSync(join(fsRoot, c, 'cgroup.procs'))) ? 'v1' : null;
}

/** The unified (v2) hierarchy: the top on v2, `unified/` on hybrid machines; null where none is mounted. */
export function unifiedHierarchy(mode: CgroupMode, fsRoot = CGROUP_FS): string | null {
  const dir = mode === 'v2' ? fsRoot : join(fsRoot, 'unified');
  return existsSync(join(dir, 'cgroup.procs')) ? dir : null;
}

/**
 * The id of a group in the unified hierarchy — what the kernel reports per task
 * (bpf_get_current_cgroup_id) — or null where there is none. The id is the
 * directory's inode number: kernfs gives every node a 64-bit id that is never
 * handed out again.
 */
export function unifiedCgroupId(path: string, mode: CgroupMode, fsRoot = CGROUP_FS): string | null {
  const unified = mode === 'v2' ? fsRoot : join(fsRoot, 'unified');
  try {
    return statSync(join(unified, path), { bigint: true }).ino.toString();
  } catch {
    return null;
  }
}

/** A CPU count as a CFS quota: at least the kernel's minimum. */
export const cpuQuotaUs = (cpus: number): number => Math.max(MIN_QUOTA_US, Math.round(cpus * CPU_PERIOD_US));

/** Limits of a group; null leaves one unlimited. */
export interface CgroupLimits {
  /** CPUs (1.5 = one and a half cores). */
  cpus: number | null;
  memoryBytes: number | null;
  pids: number | null;
  /** Also forbid swap where the kernel accounts it (v2 `memory.swap.max`). */
  noSwap?: boolean;
}

export interface CreateOptions {
  /**
   * v2: enable the controllers in the group itself too, for groups whose
   * children are made by someone else (runc's containers below a tenant's group).
   */
  delegate?: boolean;
  /** v2: controllers to enable besides cpu, memory and pids, where the kernel has them. */
  extraControllers?: readonly Controller[];
}

/** Live figures of a group (null where a controller's file is missing). */
export interface CgroupStats {
  cpuUsageNs: number | null;
  memoryBytes: number | null;
  pids: number | null;
  oomKills: number | null;
}

/** A group's memory against its limit, and the kernel's own counts of limit hits and OOM kills (both cumulative). */
export interface CgroupMemory {
  usageBytes: number;
  limitBytes: number;
  /** Times the group hit its limit (v1 `memory.failcnt`, v2 `memory.events` max). */
  limitHits: number;
  /** Processes the OOM killer ended in it (`oom_kill` of v1 `memory.oom_control`, v2 `memory.events`). */
  oomKills: number;
}

export interface RemoveOptions {
  /** SIGKILL what is still in the group before each attempt. */
  kill?: boolean;
  /** Tries while the group is busy (EBUSY: its last processes are still tearing down their memory). */
  attempts?: number;
  intervalMs?: number;
}

/** One group, by its path below the top of each hierarchy. */
export class Cgroup {
  readonly path: string;

  constructor(path: string, readonly mode: CgroupMode = cgroupMode(), readonly fsRoot = CGROUP_FS) {
    this.path = path.replace(/^\/+/, '');
  }

  /** The group's directory holding `controller`'s files (the one directory on v2). */
  dir(controller: Controller): string {
    return this.mode === 'v2' ? join(this.fsRoot, this.path) : join(this.fsRoot, controller, this.path);
  }

  /** Its directories in the hierarchies Strata limits: one per controller on v1, one on v2. */
  get dirs(): string[] {
    return this.mode === 'v2' ? [join(this.fsRoot, this.path)] : LIMITED_CONTROLLERS.map((c) => this.dir(c));
  }

  /** The `cgroup.procs` files a process writes its pid into to join the group. */
  get procsFiles(): string[] {
    return this.dirs.map((d) => join(d, 'cgroup.procs'));
  }

  /** Creates the group (and its parents) where missing, and writes its limits. */
  create(limits: CgroupLimits, opts: CreateOptions = {}): this {
    for (const dir of this.dirs) mkdirSync(dir, { recursive: true });
    if (this.mode === 'v2') this.#enableControllers(opts);
    const memory = this.dir('memory');
    const pids = this.dir('pids');
    if (this.mode === 'v1') {
      writeFileSync(join(memory, 'memory.limit_in_bytes'), limits.memoryBytes === null ? '-1' : String(limits.memoryBytes));
      writeFileSync(join(this.dir('cpu'), 'cpu.cfs_period_us'), String(CPU_PERIOD_US));
      writeFileSync(join(this.dir('cpu'), 'cpu.cfs_quota_us'), limits.cpus === null ? '-1' : String(cpuQuotaUs(limits.cpus)));
    } else {
      writeFileSync(join(memory, 'memory.max'), limits.memoryBytes === null ? 'max' : String(limits.memoryBytes));
      if (limits.noSwap && existsSync(join(memory, 'memory.swap.max'))) writeFileSync(join(memory, 'memory.swap.max'), '0');
      writeFileSync(join(this.dir('cpu'), 'cpu.max'), `${limits.cpus === null ? 'max' : cpuQuotaUs(limits.cpus)} ${CPU_PERIOD_US}`);
    }
    writeFileSync(join(pids, 'pids.max'), limits.pids === null ? 'max' : String(limits.pids));
    return this;
  }

  /** Sets the CPU quota to `cpus` CPUs; takes effect at once on what runs inside. */
  async setCpu(cpus: number): Promise<void> {
    const quota = cpuQuotaUs(cpus);
    if (this.mode === 'v1') await writeFile(join(this.dir('cpu'), 'cpu.cfs_quota_us'), String(quota));
    else await writeFile(join(this.dir('cpu'), 'cpu.max'), `${quota} ${CPU_PERIOD_US}`);
  }

  /** The CPU quota in CPUs, or null when unlimited. */
  async cpuLimit(): Promise<number | null> {
    const dir = this.dir('cpu');
    if (this.mode === 'v1') {
      const quota = Number((await readFile(join(dir, 'cpu.cfs_quota_us'), 'utf8')).trim());
      const period = Number((await readFile(join(dir, 'cpu.cfs_period_us'), 'utf8')).trim());
      return quota < 0 ? null : quota / period;
    }
    const [quota, period] = (await readFile(join(dir, 'cpu.max'), 'utf8')).trim().split(/\s+/);
    return quota === 'max' ? null : Number(quota) / Number(period);
  }

  /**
   * Sets the memory limit with no swap on top (v1 memsw = limit where the
   * kernel accounts swap, v2 unchanged swap). On v1 the memsw limit may never be
   * below the memory limit, so a raise writes memsw first and a cut writes it
   * last. Takes effect at once on what runs inside.
   */
  async setMemory(bytes: number): Promise<void> {
    const dir = this.dir('memory');
    if (this.mode === 'v2') {
      await writeFile(join(dir, 'memory.max'), String(bytes));
      return;
    }
    const memsw = join(dir, 'memory.memsw.limit_in_bytes');
    const hasMemsw = existsSync(memsw); // absent where the kernel does no swap accounting
    const current = Number((await readFile(join(dir, 'memory.limit_in_bytes'), 'utf8')).trim());
    const raise = bytes > current;
    if (raise && hasMemsw) await writeFile(memsw, String(bytes));
    await writeFile(join(dir, 'memory.limit_in_bytes'), String(bytes));
    if (!raise && hasMemsw) await writeFile(memsw, String(bytes));
  }

  /** The memory limit in bytes; null when unlimited or unreadable. */
  async memoryLimit(): Promise<number | null> {
    const text = await readFile(join(this.dir('memory'), this.mode === 'v1' ? 'memory.limit_in_bytes' : 'memory.max'), 'utf8').catch(() => null);
    const n = toNumber(text);
    // v1 reports "unlimited" as a page-rounded LONG_MAX; v2 as "max" (not a number).
    return n === null || n >= 2 ** 62 ? null : n;
  }

  /** Nanoseconds the group was held back by its CPU quota (cumulative); null when it is gone. */
  async throttledNs(): Promise<number | null> {
    const text = await readFile(join(this.dir('cpu'), 'cpu.stat'), 'utf8').catch(() => null);
    if (text === null) return null;
    const v2 = this.mode === 'v2';
    const m = (v2 ? /^throttled_usec (\d+)$/m : /^throttled_time (\d+)$/m).exec(text);
    return m ? Number(m[1]) * (v2 ? 1000 : 1) : 0;
  }

  /** Memory charged to the group now, in bytes; null if unreadable. */
  memoryUsage(): number | null {
    return toNumber(readText(join(this.dir('memory'), this.mode === 'v2' ? 'memory.current' : 'memory.usage_in_bytes')));
  }

  /** The group's memory counters; null when it does not exist (any more). */
  async memory(): Promise<CgroupMemory | null> {
    const dir = this.dir('memory');
    const read = (file: string): Promise<string> => readFile(join(dir, file), 'utf8');
    try {
      if (this.mode === 'v2') {
        const [current, max, events] = await Promise.all([read('memory.current'), read('memory.max'), read('memory.events')]);
        const limit = max.trim() === 'max' ? Number.MAX_SAFE_INTEGER : Number(max);
        return { usageBytes: Number(current), limitBytes: limit, limitHits: keyed(events, 'max') ?? 0, oomKills: keyed(events, 'oom_kill') ?? 0 };
      }
      const [usage, limit, failcnt, oom] = await Promise.all([
        read('memory.usage_in_bytes'), read('memory.limit_in_bytes'), read('memory.failcnt'), read('memory.oom_control'),
      ]);
      return { usageBytes: Number(usage), limitBytes: Number(limit), limitHits: Number(failcnt), oomKills: keyed(oom, 'oom_kill') ?? 0 };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
  }

  /** CPU time, memory, tasks and OOM kills. */
  async stats(): Promise<CgroupStats> {
    const at = (controller: Controller, file: string): Promise<string | null> => readFile(join(this.dir(controller), file), 'utf8').catch(() => null);
    if (this.mode === 'v1') {
      const oom = await at('memory', 'memory.oom_control');
      return {
        cpuUsageNs: toNumber(await at('cpuacct', 'cpuacct.usage')) ?? (await this.#processesCpuNs()),
        memoryBytes: toNumber(await at('memory', 'memory.usage_in_bytes')),
        pids: toNumber(await at('pids', 'pids.current')),
        oomKills: oom === null ? null : keyed(oom, 'oom_kill'),
      };
    }
    const cpu = await at('cpu', 'cpu.stat');
    const events = await at('memory', 'memory.events');
    const usageUs = cpu === null ? null : keyed(cpu, 'usage_usec');
    return {
      cpuUsageNs: usageUs === null ? null : usageUs * 1000,
      memoryBytes: toNumber(await at('memory', 'memory.current')),
      pids: toNumber(await at('pids', 'pids.current')),
      oomKills: events === null ? null : keyed(events, 'oom_kill'),
    };
  }

  /**
   * v1 groups made by Strata itself live in the cpu, memory and pids
   * hierarchies only (cpuacct is a hierarchy of its own on hybrid machines):
   * their CPU time is that of the processes in them now, from /proc. Null
   * when the group is gone or empty.
   */
  async #processesCpuNs(): Promise<number | null> {
    const procs = await readFile(join(this.dir('cpu'), 'cgroup.procs'), 'utf8').catch(() => null);
    const pids = (procs ?? '').split('\n').filter(Boolean).map(Number);
    if (pids.length === 0) return null;
    return pids.reduce((sum, pid) => sum + (processCpuNs(pid) ?? 0), 0);
  }

  /**
   * Removes the group from the limited hierarchies; one whose last processes
   * are still exiting is retried while it answers EBUSY (default: 5 s). Missing
   * is fine; any other refusal is thrown.
   */
  async remove(opts: RemoveOptions = {}): Promise<void> {
    const attempts = opts.attempts ?? 100;
    for (const dir of this.dirs) {
      for (let attempt = 1; ; attempt++) {
        if (opts.kill) killAll(dir);
        try {
          await rmdir(dir);
          break;
        } catch (e) {
          const code = (e as NodeJS.ErrnoException).code;
          if (code === 'ENOENT') break;
          if (code !== 'EBUSY' || attempt >= attempts) throw e;
          await sleep(opts.intervalMs ?? 50);
        }
      }
    }
  }

  /**
   * Removes the group from every mounted hierarchy (runc makes its containers'
   * groups in all of them, named and unified ones included), its empty
   * children first. Returns false while something still lives in it.
   */
  async removeEverywhere(): Promise<boolean> {
    let removedAll = true;
    for (const hierarchy of hierarchies(this.mode, this.fsRoot)) {
      const dir = join(hierarchy, this.path);
      if (!existsSync(dir)) continue;
      try {
        // A crash between runc's mkdir and its cleanup may leave a child.
        for (const entry of await readdir(dir, { withFileTypes: true })) {
          if (entry.isDirectory()) await rmdir(join(dir, entry.name)).catch(() => undefined);
        }
        await rmdir(dir);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') removedAll = false;
      }
    }
    return removedAll;
  }

  /** v2: the controllers on in every ancestor's `cgroup.subtree_control`, top down, so the group gets them (and its children, when delegated). */
  #enableControllers(opts: CreateOptions): void {
    const parts = this.path.split('/').filter(Boolean);
    for (let depth = 0; depth < parts.length + (opts.delegate ? 1 : 0); depth++) {
      this.#enableIn(join(this.fsRoot, ...parts.slice(0, depth)), opts.extraControllers ?? []);
    }
  }

  #enableIn(dir: string, extra: readonly Controller[]): void {
    const available = (readText(join(dir, 'cgroup.controllers')) ?? '').split(/\s+/);
    const enabled = (readText(join(dir, 'cgroup.subtree_control')) ?? '').split(/\s+/);
    const missing = [...LIMITED_CONTROLLERS, ...extra].filter((c) => available.includes(c) && !enabled.includes(c));
    if (missing.length > 0) writeFileSync(join(dir, 'cgroup.subtree_control'), missing.map((c) => `+${c}`).join(' '));
  }
}

/**
 * Whether the kernel weighs block I/O per group: v1 shows `blkio.weight` (CFQ)
 * or `blkio.bfq.*` (BFQ) in the blkio hierarchy; v2 has the io controller.
 * Kernels with only mq-deadline/kyber/none have neither, and runc fails on a weight.
 */
export function hasIoWeight(mode: CgroupMode, fsRoot = CGROUP_FS): boolean {
  if (mode === 'v2') return (readText(join(fsRoot, 'cgroup.controllers')) ?? '').split(/\s+/).includes('io');
  try {
    return readdirSync(join(fsRoot, 'blkio')).some((f) => f === 'blkio.weight' || f.startsWith('blkio.bfq.'));
  } catch {
    return false;
  }
}

/** Every mounted hierarchy: the top on v2; on v1 one per controller, plus named ones (name=systemd) and the unified one of hybrid machines. */
export function hierarchies(mode: CgroupMode, fsRoot = CGROUP_FS): string[] {
  return mode === 'v2' ? [fsRoot] : readdirSync(fsRoot).map((h) => join(fsRoot, h));
}

function killAll(dir: string): void {
  for (const pid of (readText(join(dir, 'cgroup.procs')) ?? '').split('\n').filter(Boolean)) {
    try { process.kill(Number(pid), 'SIGKILL'); } catch { /* already gone */ }
  }
}

function readText(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

const toNumber = (text: string | null): number | null => {
  if (text === null) return null;
  const n = Number(text.trim());
  return Number.isFinite(n) ? n : null;
};

/** The value of `key` in a "key value" per line file (cpu.stat, memory.events, memory.oom_control). */
const keyed = (text: string, key: string): number | null => {
  const line = text.split('\n').find((l) => l.startsWith(`${key} `));
  return line === undefined ? null : Number(line.slice(key.length + 1));
};
