/**
 * Hands events to the guard off the caller's path: `push` only appends to a
 * buffer; one `setImmediate` per burst emits the whole batch. So a source on a
 * hot path (the isolate boundary, QMP's socket reader) pays an array push per
 * event, and the guard's pool sees them a turn of the event loop later.
 */
import type { GuardEvent } from './guard-event.js';
import type { Emit } from './interceptor.js';

export class EventBatch {
  #buffer: GuardEvent[] = [];
  #scheduled: NodeJS.Immediate | undefined;

  constructor(private readonly emit: Emit) {}

  push(event: GuardEvent): void {
    this.#buffer.push(event);
    this.#scheduled ??= setImmediate(this.flush);
  }

  /** Emits what is buffered now. */
  readonly flush = (): void => {
    clearImmediate(this.#scheduled);
    this.#scheduled = undefined;
    const batch = this.#buffer;
    this.#buffer = [];
    for (const e of batch) this.emit(e);
  };
}
