/**
 * The shared state machine as the reconciler walks it: which driver call takes
 * an instance one step toward its desired state, where that step leads, and
 * whether an observed state can follow a recorded one at all. Pure functions of
 * states; the reconciler (`reconciler.ts`) does the calls, locks and writes.
 */
import type { DriverOperation } from '../../levels/driver.js';
import { STATES, assertTransition, canTransition, checkAction, type DesiredState, type InstanceState } from '../../levels/lifecycle.js';

/** A driver call the reconciler makes. */
export type Step = 'create' | 'start' | 'stop' | 'pause' | 'resume';

/** Running or paused: a process (or guest) exists. */
export const isAlive = (state: InstanceState): boolean => state === 'running' || state === 'paused';

/**
 * The next driver call that brings an instance one step closer to `desired`, or
 * null when it is there (or cannot get there with this driver). `missing` means
 * the driver holds nothing for the instance.
 */
export function nextStep(current: InstanceState | 'missing', desired: DesiredState, supports: ReadonlySet<DriverOperation>): Step | null {
  if (current === 'missing' || current === 'creating') return 'create';
  if (current === 'deleted') return null;
  switch (desired) {
    case 'running':
      if (current === 'stopped' || current === 'failed') return 'start';
      if (current === 'paused' && supports.has('resume')) return 'resume';
      return null;
    case 'stopped':
      return isAlive(current) ? 'stop' : null;
    case 'paused':
      if (current === 'stopped' || current === 'failed') return 'start';
      if (current === 'running' && supports.has('pause')) return 'pause';
      return null;
  }
}

/**
 * Whether the state machine can lead from `from` to `to` at all. Observed states
 * are facts: a daemon that died between create and start finds `running` where
 * the store says `creating`, and records it if some path of allowed transitions
 * leads there.
 */
export function isReachable(from: InstanceState, to: InstanceState): boolean {
  const seen = new Set<InstanceState>([from]);
  const queue: InstanceState[] = [from];
  for (let state = queue.shift(); state !== undefined; state = queue.shift()) {
    if (state === to) return true;
    for (const next of STATES) {
      if (!seen.has(next) && canTransition(state, next)) {
        seen.add(next);
        queue.push(next);
      }
    }
  }
  return false;
}

/** The state a step leads to, checked against the shared state machine. */
export function stepTarget(state: InstanceState, step: Step): InstanceState {
  if (step === 'create') {
    // A recreated instance exists but does not run, whatever the store last saw.
    if (state !== 'stopped') assertTransition(state, 'stopped', 'create');
    return 'stopped';
  }
  return checkAction(state, step);
}
