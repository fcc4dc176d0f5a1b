/**
 * The warning pool: where interceptors' events wait for the evaluator.
 *
 * - Bounded: at most `capacity` warnings wait (default 65,536).
 * - Prioritised: `drain` hands out critical warnings first, then error, … info.
 * - Aggregating: an event identical to one still waiting (same kind, instance
 *   and key fields) within `aggregateWindowMs` (default 1 s) only bumps that
 *   warning's `count` — a flood of the same write is one warning, not 10,000.
 * - Back-pressure: `pressure` (0..1) and `record`'s answer tell producers
 *   to slow down before anything is lost.
 * - Never a silent loss: when full, a more urgent warning evicts the newest
 *   least urgent one; otherwise the incoming one is dropped. Each drop is
 *   counted per priority and `takeDropReport` hands the counts to the guard,
 *   which raises an alert about them.
 *
 * `record` is O(1) and never evaluates anything: evaluation happens later, off
 * the interceptor's path, when the guard drains the pool.
 */
import { PRIORITIES, priorityRank, type GuardEvent, type Priority } from '../core/guard-event.js';

export interface Warning {
  event: GuardEvent;
  /** How many identical events this warning stands for. */
  count: number;
  /** `time` of the first and of the latest event folded into it. */
  firstTime: number;
  lastTime: number;
}

export interface PoolOptions {
  capacity?: number;
  aggregateWindowMs?: number;
  /** The fields that make two events of a kind "identical"; default all of them. */
  aggregateFields?: Record<string, readonly string[]>;
  /** Fill level (0..1) from which `record` answers 'pressure'; default 0.75. */
  highWater?: number;
}

/** 'queued' or 'aggregated' — stored; 'pressure' — stored, but slow down; 'dropped' — lost and counted. */
export type RecordOutcome = 'queued' | 'aggregated' | 'pressure' | 'dropped';

export interface PoolStats {
  received: number;
  aggregated: number;
  dropped: number;
  droppedByPriority: Record<Priority, number>;
  waiting: number;
  capacity: number;
}

/** A waiting warning and its aggregation key. */
interface Pooled extends Warning { key: string }

/** A fixed-size ring of warnings of one priority: push and shift at the ends, pop from the back for eviction. */
class Ring {
  readonly #slots: (Pooled | undefined)[];
  #head = 0;
  length = 0;
  constructor(size: number) { this.#slots = new Array(size); }
  push(w: Pooled): void { this.#slots[(this.#head + this.length++) % this.#slots.length] = w; }
  shift(): Pooled | undefined {
    if (this.length === 0) return undefined;
    const w = this.#slots[this.#head];
    this.#slots[this.#head] = undefined;
    this.#head = (this.#head + 1) % this.#slots.length;
    this.length--;
    return w;
  }
  pop(): Pooled | undefined {
    if (this.length === 0) return undefined;
    const i = (this.#head + --this.length) % this.#slots.length;
    const w = this.#slots[i];
    this.#slots[i] = undefined;
    return w;
  }
}

const emptyCounts = (): Record<Priority, number> => Object.fromEntries(PRIORITIES.map((p) => [p, 0])) as Record<Priority, number>;

export class WarningPool {
  readonly capacity: number;
  readonly #windowMs: number;
  readonly #aggregateFields: Record<string, readonly string[]>;
  readonly #highWater: number;
  readonly #rings: Ring[];
  /** Waiting warnings by aggregation key; an entry leaves when its warning is drained or evicted. */
  readonly #byKey = new Map<string, Pooled>();
  #waiting = 0;
  #received = 0;
  #aggregated = 0;
  #dropped = 0;
  readonly #droppedByPriority = emptyCounts();
  /** Drops since the last `takeDropReport`. */
  #unreported = emptyCounts();

  constructor(opts: PoolOptions = {}) {
    this.capacity = opts.capacity ?? 65_536;
    this.#windowMs = opts.aggregateWindowMs ?? 1000;
    this.#aggregateFields = opts.aggregateFields ?? {};
    this.#highWater = opts.highWater ?? 0.75;
    this.#rings = PRIORITIES.map(() => new Ring(this.capacity));
  }

  /** Files one event. O(1); never throws on a full pool — it counts the drop instead. */
  record(event: GuardEvent): RecordOutcome {
    this.#received++;
    const key = this.#aggregationKey(event);
    const same = this.#byKey.get(key);
    if (same && event.time - same.firstTime <= this.#windowMs) {
      same.count++;
      if (event.time > same.lastTime) same.lastTime = event.time;
      this.#aggregated++;
      return 'aggregated';
    }
    const rank = priorityRank(event.priority ?? 'notice');
    if (this.#waiting >= this.capacity && !this.#evictBelow(rank)) {
      this.#countDrop(rank, 1);
      return 'dropped';
    }
    const warning: Pooled = { event, count: 1, firstTime: event.time, lastTime: event.time, key };
    this.#rings[rank]!.push(warning);
    this.#byKey.set(key, warning);
    this.#waiting++;
    return this.pressure >= this.#highWater ? 'pressure' : 'queued';
  }

  /** Takes up to `max` warnings, most urgent first, oldest first within a priority. */
  drain(max: number): Warning[] {
    const out: Warning[] = [];
    for (const ring of this.#rings) {
      while (out.length < max && ring.length > 0) out.push(this.#forget(ring.shift()!));
      if (out.length >= max) break;
    }
    return out;
  }

  /** Drops not yet reported, by priority, or null when there were none. Resets the counts. */
  takeDropReport(): { total: number; byPriority: Record<Priority, number> } | null {
    const byPriority = this.#unreported;
    const total = PRIORITIES.reduce((sum, p) => sum + byPriority[p], 0);
    if (total === 0) return null;
    this.#unreported = emptyCounts();
    return { total, byPriority };
  }

  /** How full the pool is, 0..1. */
  get pressure(): number { return this.#waiting / this.capacity; }

  get waiting(): number { return this.#waiting; }

  stats(): PoolStats {
    return {
      received: this.#received, aggregated: this.#aggregated, dropped: this.#dropped,
      droppedByPriority: { ...this.#droppedByPriority }, waiting: this.#waiting, capacity: this.capacity,
    };
  }

  /** Evicts the newest waiting warning less urgent than `rank`; false when there is none. */
  #evictBelow(rank: number): boolean {
    for (let r = this.#rings.length - 1; r > rank; r--) {
      const victim = this.#rings[r]!.pop();
      if (victim) {
        this.#forget(victim);
        this.#countDrop(r, victim.count);
        return true;
      }
    }
    return false;
  }

  /** Takes a warning out of the aggregation index. */
  #forget(w: Pooled): Warning {
    if (this.#byKey.get(w.key) === w) this.#byKey.delete(w.key);
    this.#waiting--;
    return w;
  }

  #countDrop(rank: number, events: number): void {
    const p = PRIORITIES[rank]!;
    this.#dropped += events;
    this.#droppedByPriority[p] += events;
    this.#unreported[p] += events;
  }

  #aggregationKey(e: GuardEvent): string {
    let key = `${e.kind}\u0000${e.tenantId ?? ''}\u0000${e.instanceId ?? ''}\u0000${e.priority ?? ''}`;
    const fields = this.#aggregateFields[e.kind];
    if (fields) for (const f of fields) key += `\u0000${String(e.fields[f] ?? '')}`;
    else for (const f in e.fields) key += `\u0000${f}=${String(e.fields[f])}`;
    return key;
  }
}
