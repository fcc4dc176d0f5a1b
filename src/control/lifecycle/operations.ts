/**
 * Long work runs as an operation: the API answers 202 with the operation at once,
 * the caller polls `GET /v1/operations/:id` or waits with `?wait=SECONDS`.
 * Operations are rows in the store, so their outcome survives a restart; work that
 * was running when the daemon died is marked failed at the next start (the
 * reconciler then brings the instance to its desired state).
 */
import { StrataError, isStrataError, messageOf } from '../../core/errors.js';
import type { Store } from '../../store/store.js';
import type { Operation } from '../../store/types.js';
import type { EventBus } from '../../core/events.js';

export type Work = (progress: (fraction: number) => void) => Promise<Record<string, unknown> | void>;

export class OperationRunner {
  readonly #waiters = new Map<string, Set<(op: Operation) => void>>();
  readonly #inFlight = new Set<Promise<void>>();

  constructor(
    private readonly store: Store,
    private readonly events: EventBus,
    private readonly onFinish?: (op: Operation) => void,
  ) {}

  /** Marks operations left pending or running by a previous daemon as failed. */
  failInterrupted(): number {
    let n = 0;
    for (const status of ['pending', 'running'] as const) {
      for (const op of this.store.listOperations({ status, limit: 1_000_000 })) {
        this.store.updateOperation(op.id, {
          status: 'failed',
          error: { code: 'STRATA_ERR_UNAVAILABLE', message: 'interrupted by a daemon restart' },
        });
        n++;
      }
    }
    return n;
  }

  /** Creates the operation row and starts `work` in the background. */
  start(o: { tenantId: string | null; kind: string; target: string }, work: Work): Operation {
    const op = this.store.createOperation(o);
    const done = this.#execute(op, work);
    this.#inFlight.add(done);
    void done.finally(() => this.#inFlight.delete(done));
    return op;
  }

  async #execute(op: Operation, work: Work): Promise<void> {
    // Start after the caller's transaction: if it rolled back, the operation never existed.
    await new Promise<void>((resolve) => setImmediate(resolve));
    if (!this.store.getOperation(op.id)) return;
    try {
      this.#update(op.id, { status: 'running' });
      const result = await work((fraction) => this.#update(op.id, { progress: Math.max(0, Math.min(1, fraction)) }));
      this.#finish(this.#update(op.id, { status: 'succeeded', progress: 1, result: result ?? null }));
    } catch (e) {
      const error = isStrataError(e)
        ? { code: e.code, message: e.message }
        : { code: 'STRATA_ERR_DRIVER', message: messageOf(e) };
      this.#finish(this.#update(op.id, { status: 'failed', error }));
    }
  }

  #update(id: string, patch: Parameters<Store['updateOperation']>[1]): Operation {
    const op = this.store.updateOperation(id, patch);
    this.events.publish('operation', `operation.${op.status}`, op.tenantId, { operation: op });
    return op;
  }

  #finish(op: Operation): void {
    this.onFinish?.(op);
    for (const resolve of this.#waiters.get(op.id) ?? []) resolve(op);
    this.#waiters.delete(op.id);
  }

  /** Resolves with the operation once finished, or as it stands after `seconds`. */
  async wait(id: string, seconds: number): Promise<Operation> {
    const op = this.store.getOperation(id);
    if (!op) throw new StrataError('STRATA_ERR_NOT_FOUND', `operation '${id}' not found`);
    if (op.status === 'succeeded' || op.status === 'failed' || seconds <= 0) return op;
    return new Promise<Operation>((resolve) => {
      const set = this.#waiters.get(id) ?? new Set();
      this.#waiters.set(id, set);
      const timer = setTimeout(() => {
        set.delete(finish);
        resolve(this.store.getOperation(id)!);
      }, seconds * 1000);
      const finish = (done: Operation): void => {
        clearTimeout(timer);
        resolve(done);
      };
      set.add(finish);
    });
  }

  /** Waits for every operation in flight (graceful shutdown). */
  async drain(): Promise<void> {
    await Promise.allSettled([...this.#inFlight]);
  }
}
