/**
 * The resource interceptor of the vm and emu levels, from outside the guest,
 * sampled every `intervalMs` (default 1 s) for each running VM:
 *
 * - `resource.cpu`: how busy its QEMU is. `cpu.cores` is QEMU's CPU use;
 *   `cpu.busy` the share of the interval its busiest thread (a spinning vCPU)
 *   was runnable — on a CPU or waiting for one (`/proc/<pid>/task/<tid>/schedstat`)
 *   — and `vcpu.sleeps` that thread's voluntary context switches. A vCPU whose
 *   guest idles halts and sleeps hundreds of times a second; one whose guest
 *   spins never leaves the run queue: busy ≈ 1 however little CPU a crowded
 *   host gives it (what the os level's miner rule reads from "never sleeps").
 *   Time its cgroup was held back by its CPU quota counts as runnable too, so
 *   a VM the guard throttled still shows what its guest does.
 * - `resource.memory`, only when there is news: its cgroup hit its limit
 *   (`mem.limit_hits`), the OOM killer ended QEMU in it (`mem.oom_kills`: the
 *   VM is gone), or its use is at `memoryShareWarn` (default 0.9) of the limit
 *   or above. v1 `memory.failcnt` / `memory.oom_control`, v2 `memory.events`.
 *   A VM that vanished is read once more, so an OOM kill is still reported.
 *
 * Reads only; nothing in the guest or QEMU waits on it.
 */
import { readFile, readdir } from 'node:fs/promises';
import { readVmMemoryStats, readVmThrottledNs, type VmMemoryStats } from '../cgroup.js';
import type { GuardEvent } from '../../../core/guard-event.js';
import type { Emit, Interceptor } from '../../../core/interceptor.js';
import type { VmTarget } from './targets.js';

export interface VmResourceInterceptorOptions {
  targets: () => Promise<VmTarget[]>;
  /** Default 1 s. */
  intervalMs?: number;
  /** Report memory use from this share of the cgroup's limit; default 0.9. */
  memoryShareWarn?: number;
  /** Default `/sys/fs/cgroup`. */
  cgroupRoot?: string;
}

interface ThreadSample { runnableNs: number; sleeps: number }
interface CpuSample { at: number; ticks: number; throttledNs: number; threads: Map<number, ThreadSample> }

const USER_HZ = 100;
const MIB = 1024 * 1024;
const round2 = (x: number): number => Math.round(x * 100) / 100;

/** CPU clock ticks (user + system) of a process, and per thread the ns it was runnable (run + run-queue wait) and its voluntary switches. */
async function sampleCpu(pid: number, cgroup: string, cgroupRoot?: string): Promise<CpuSample | null> {
  try {
    const stat = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]!.split(' ');
    const threads = new Map<number, ThreadSample>();
    for (const tid of await readdir(`/proc/${pid}/task`)) {
      const [sched, status] = await Promise.all([
        readFile(`/proc/${pid}/task/${tid}/schedstat`, 'utf8'), readFile(`/proc/${pid}/task/${tid}/status`, 'utf8'),
      ]).catch(() => [null, null]);
      if (!sched || !status) continue; // the thread just ended
      const [run, wait] = sched.split(' ').map(Number);
      threads.set(Number(tid), { runnableNs: run! + wait!, sleeps: Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(status)?.[1] ?? 0) });
    }
    const throttledNs = (await readVmThrottledNs(cgroup, cgroupRoot).catch(() => null)) ?? 0;
    return { at: performance.now(), ticks: Number(stat[11]) + Number(stat[12]), throttledNs, threads };
  } catch {
    return null; // QEMU exited
  }
}

export class VmResourceInterceptor implements Interceptor {
  readonly id = 'vm:resources';
  readonly #o: VmResourceInterceptorOptions;
  readonly #cpu = new Map<string, CpuSample>();
  /** instance id → its last memory reading and the target it belongs to (kept one round after it vanishes). */
  readonly #memory = new Map<string, { stats: VmMemoryStats; target: VmTarget }>();
  #timer: NodeJS.Timeout | undefined;
  #busy = false;
  #emit: Emit | undefined;

  constructor(o: VmResourceInterceptorOptions) {
    this.#o = o;
  }

  async start(emit: Emit): Promise<void> {
    this.#emit = emit;
    this.#timer = setInterval(() => { void this.#tick(); }, this.#o.intervalMs ?? 1000);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#emit = undefined;
  }

  async #tick(): Promise<void> {
    if (this.#busy) return;
    this.#busy = true;
    try {
      const targets = await this.#o.targets().catch(() => [] as VmTarget[]);
      const live = new Set(targets.map((t) => t.instanceId));
      for (const t of targets) {
        await this.#sampleCpu(t);
        await this.#sampleMemory(t);
      }
      for (const id of this.#cpu.keys()) if (!live.has(id)) this.#cpu.delete(id);
      for (const [id, { target }] of this.#memory) {
        if (live.has(id)) continue;
        await this.#sampleMemory(target); // its last words: an OOM kill shows after QEMU is gone
        this.#memory.delete(id);
      }
    } finally {
      this.#busy = false;
    }
  }

  async #sampleCpu(t: VmTarget): Promise<void> {
    const now = await sampleCpu(t.pid, t.cgroup, this.#o.cgroupRoot);
    const prev = this.#cpu.get(t.instanceId);
    if (!now) return;
    this.#cpu.set(t.instanceId, now);
    if (!prev || now.at <= prev.at) return;
    const elapsedS = (now.at - prev.at) / 1000;
    let busiest = { share: 0, sleeps: 0, tid: 0 };
    for (const [tid, s] of now.threads) {
      const before = prev.threads.get(tid);
      if (!before) continue;
      const share = (s.runnableNs - before.runnableNs) / 1e9 / elapsedS;
      if (share > busiest.share) busiest = { share, sleeps: s.sleeps - before.sleeps, tid };
    }
    const cores = (now.ticks - prev.ticks) / USER_HZ / elapsedS;
    const throttled = Math.max(0, now.throttledNs - prev.throttledNs) / 1e9 / elapsedS;
    this.#send(t, 'resource.cpu', 'info', {
      'cpu.cores': round2(cores), 'cpu.share': round2(cores / Math.max(1, t.vcpus)), 'cpu.busy': round2(Math.min(1, busiest.share + throttled)),
      'vcpu.sleeps': busiest.sleeps, 'proc.name': 'qemu', 'proc.pid': t.pid, 'proc.tid': busiest.tid,
    });
  }

  async #sampleMemory(t: VmTarget): Promise<void> {
    const stats = await readVmMemoryStats(t.cgroup, this.#o.cgroupRoot).catch(() => null);
    const prev = this.#memory.get(t.instanceId);
    if (!stats) return;
    this.#memory.set(t.instanceId, { stats, target: t });
    if (!prev) return;
    const hits = Math.max(0, stats.limitHits - prev.stats.limitHits);
    const kills = Math.max(0, stats.oomKills - prev.stats.oomKills);
    const share = stats.usageBytes / stats.limitBytes;
    if (hits === 0 && kills === 0 && share < (this.#o.memoryShareWarn ?? 0.9)) return;
    this.#send(t, 'resource.memory', kills > 0 ? 'error' : 'warning', {
      'mem.usage_mib': Math.round(stats.usageBytes / MIB), 'mem.limit_mib': Math.round(stats.limitBytes / MIB), 'mem.share': round2(share),
      'mem.limit_hits': hits, 'mem.oom_kills': kills,
    });
  }

  #send(t: VmTarget, kind: string, priority: GuardEvent['priority'], fields: GuardEvent['fields']): void {
    this.#emit?.({ time: Date.now(), tenantId: t.tenantId, instanceId: t.instanceId, level: t.level, kind, priority, fields });
  }
}
