/**
 * What every guard interceptor is: a source of events with a lifecycle. An
 * interceptor only observes — it never blocks or denies what it sees — and
 * hands each event to `emit`, which files it in the warning pool and returns
 * at once.
 */
import type { GuardEvent } from './guard-event.js';

export type Emit = (event: GuardEvent) => void;

export interface Interceptor {
  /** e.g. 'fs:instance:i_123'; unique within one guard. */
  readonly id: string;
  start(emit: Emit): Promise<void>;
  /** Releases what `start` took; safe to call after a failed or partial start. */
  stop(): Promise<void>;
}
