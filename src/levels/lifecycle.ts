/**
 * The one lifecycle state machine shared by every level:
 *
 *   creating → stopped ⇄ running ⇄ paused,  any → failed,  stopped|failed|creating → deleted
 *
 * Allowed transitions live in one table; everything else throws
 * `InvalidStateTransition`. The control plane checks an action here before it asks
 * a driver, so no driver ever sees a call that makes no sense in its state.
 */
import { InvalidStateTransition } from '../core/errors.js';
import type { InstanceState } from '../store/types.js';

export { STATES, DESIRED_STATES, type InstanceState, type DesiredState } from '../store/types.js';

const TRANSITIONS: Readonly<Record<InstanceState, readonly InstanceState[]>> = {
  creating: ['stopped', 'failed', 'deleted'],
  stopped: ['running', 'failed', 'deleted'],
  running: ['stopped', 'paused', 'failed'],
  paused: ['running', 'stopped', 'failed'],
  failed: ['stopped', 'running', 'deleted'],
  deleted: [],
};

export const canTransition = (from: InstanceState, to: InstanceState): boolean => TRANSITIONS[from].includes(to);

export function assertTransition(from: InstanceState, to: InstanceState, action?: string): void {
  if (!canTransition(from, to)) throw new InvalidStateTransition(from, to, action);
}

/** Lifecycle actions and the state each one leads to. */
export const ACTIONS = {
  start: { to: 'running', from: ['stopped', 'failed'] },
  stop: { to: 'stopped', from: ['running', 'paused'] },
  pause: { to: 'paused', from: ['running'] },
  resume: { to: 'running', from: ['paused'] },
  delete: { to: 'deleted', from: ['stopped', 'failed', 'creating'] },
  restore: { to: 'stopped', from: ['stopped', 'failed'] },
  snapshot: { to: null, from: ['stopped', 'running', 'paused'] },
} as const satisfies Record<string, { to: InstanceState | null; from: readonly InstanceState[] }>;

export type LifecycleAction = keyof typeof ACTIONS;

/** Throws unless `action` is allowed from `state`; returns the state it leads to. */
export function checkAction(state: InstanceState, action: LifecycleAction): InstanceState {
  const rule = ACTIONS[action];
  if (!(rule.from as readonly InstanceState[]).includes(state)) {
    throw new InvalidStateTransition(state, rule.to ?? state, action);
  }
  return rule.to ?? state;
}
