/**
 * Instances' usage as the drivers report it, plus the one figure a single
 * reading cannot give: CPU cores in use now, the CPU time consumed between two
 * readings over the wall time between them (as `docker stats` computes its
 * CPU %). The previous reading of each instance is kept; when there is none
 * recent enough, a second reading is taken after a short pause, so the answer
 * always carries a real rate.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { InstanceUsage } from '../../levels/driver.js';
import type { DriverRegistry } from '../../levels/registry.js';
import type { Instance } from '../../store/types.js';

/** One instance's usage at one moment. */
export interface UsageSample {
  instance: Instance;
  /** null: its level reports no usage, or holds nothing for it. */
  usage: InstanceUsage | null;
  /** Cores busy on average since the previous reading (1.0 = one core); null without two readings. */
  cpuCores: number | null;
  sampledAt: Date;
}

interface Reading {
  at: number;
  cpuSeconds: number;
}

/** Pause before the second reading when there is no recent first one. */
const RATE_WINDOW_MS = 500;
/** A previous reading older than this says little about "now". */
const MAX_AGE_MS = 60_000;
/** Readings closer than this give a rate dominated by rounding. */
const MIN_GAP_MS = 200;

export class UsageSampler {
  readonly #last = new Map<string, Reading>();

  constructor(private readonly registry: DriverRegistry) {}

  /** The usage of one instance: no driver, or a driver without stats, gives null usage. */
  async read(instance: Instance): Promise<InstanceUsage | null> {
    let driver;
    try {
      driver = this.registry.forLevel(instance.level);
    } catch {
      return null; // its level is not available here: nothing to ask
    }
    if (!driver.stats) return null;
    return driver.stats(instance.id).catch(() => null);
  }

  /**
   * Usage of each instance, with its CPU rate. `rate: false` skips the second
   * reading (a Prometheus scrape computes rates itself from the counter).
   */
  async sample(instances: readonly Instance[], opts: { rate?: boolean } = {}): Promise<UsageSample[]> {
    const first = await Promise.all(instances.map(async (instance) => ({ instance, usage: await this.read(instance), at: Date.now() })));
    const needsSecond = opts.rate !== false && first.some((s) => s.usage?.cpuSeconds != null && !this.#recent(s.instance.id, s.at));
    if (needsSecond) {
      for (const s of first) this.#remember(s.instance.id, s.usage, s.at);
      await sleep(RATE_WINDOW_MS);
      const second = await Promise.all(instances.map(async (instance) => ({ instance, usage: await this.read(instance), at: Date.now() })));
      return second.map((s) => this.#withRate(s.instance, s.usage, s.at));
    }
    return first.map((s) => this.#withRate(s.instance, s.usage, s.at));
  }

  #recent(id: string, at: number): boolean {
    const prev = this.#last.get(id);
    return prev !== undefined && at - prev.at >= MIN_GAP_MS && at - prev.at <= MAX_AGE_MS;
  }

  #withRate(instance: Instance, usage: InstanceUsage | null, at: number): UsageSample {
    const prev = this.#last.get(instance.id);
    let cpuCores: number | null = null;
    if (usage?.cpuSeconds != null && prev && at - prev.at >= MIN_GAP_MS && at - prev.at <= MAX_AGE_MS && usage.cpuSeconds >= prev.cpuSeconds) {
      cpuCores = (usage.cpuSeconds - prev.cpuSeconds) / ((at - prev.at) / 1000);
    }
    // Keep the older reading while the new one is too close to it to give a rate on its own.
    if (!prev || at - prev.at >= MIN_GAP_MS || (usage?.cpuSeconds ?? 0) < prev.cpuSeconds) this.#remember(instance.id, usage, at);
    return { instance, usage, cpuCores, sampledAt: new Date(at) };
  }

  #remember(id: string, usage: InstanceUsage | null, at: number): void {
    if (usage?.cpuSeconds == null) {
      this.#last.delete(id);
      return;
    }
    this.#last.set(id, { at, cpuSeconds: usage.cpuSeconds });
    if (this.#last.size > 10_000) {
      // Deleted instances leave readings behind: drop the stale ones now and then.
      for (const [k, v] of this.#last) if (at - v.at > MAX_AGE_MS) this.#last.delete(k);
    }
  }
}
