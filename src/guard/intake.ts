/**
 * The guard's intake: its interceptors and the warning pool they file events
 * into. It depends on nothing the guard reacts with, so the parts that feed the
 * guard (the integrity monitor adds and removes its file interceptors here) can
 * be built before the actuator's target — which in turn restores through them.
 * The guard (`guard.ts`) drains the pool: `ingest` only files an event and
 * tells the one consumer that there is work.
 */
import type { GuardEvent } from '../core/guard-event.js';
import type { Interceptor } from '../core/interceptor.js';
import { WarningPool, type PoolOptions, type RecordOutcome } from './pool.js';

export class GuardIntake {
  readonly pool: WarningPool;
  readonly #interceptors = new Map<string, Interceptor>();
  #running = false;
  #onWork: (() => void) | undefined;

  constructor(pool?: PoolOptions) {
    this.pool = new WarningPool(pool);
  }

  /** The guard that drains the pool; one per intake. */
  consume(onWork: () => void): void {
    if (this.#onWork) throw new RangeError('the guard intake already has a consumer');
    this.#onWork = onWork;
  }

  /** Adds an interceptor; started now if the intake runs, else by `start`. Ids must be unique. */
  async addInterceptor(interceptor: Interceptor): Promise<void> {
    if (this.#interceptors.has(interceptor.id)) throw new RangeError(`interceptor '${interceptor.id}' is already registered`);
    this.#interceptors.set(interceptor.id, interceptor);
    if (this.#running) await interceptor.start(this.ingest);
  }

  async removeInterceptor(id: string): Promise<void> {
    const interceptor = this.#interceptors.get(id);
    this.#interceptors.delete(id);
    await interceptor?.stop();
  }

  async start(): Promise<void> {
    this.#running = true;
    for (const i of this.#interceptors.values()) await i.start(this.ingest);
  }

  async stop(): Promise<void> {
    this.#running = false;
    await Promise.all([...this.#interceptors.values()].map((i) => i.stop()));
  }

  /** Files one event; O(1), never evaluates. The answer is the pool's back-pressure signal. */
  readonly ingest = (event: GuardEvent): RecordOutcome => {
    const outcome = this.pool.record(event);
    this.#onWork?.();
    return outcome;
  };
}
