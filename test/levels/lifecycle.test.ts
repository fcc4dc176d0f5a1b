/**
 * The state machine, pinned: every pair of states and every action in every state.
 * The expected tables are written out here, apart from lifecycle.ts, so a change
 * to the machine has to be made twice — on purpose.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InvalidStateTransition } from '../../src/core/errors.js';
import { ACTIONS, STATES, assertTransition, canTransition, checkAction, type InstanceState, type LifecycleAction } from '../../src/levels/lifecycle.js';

const ALLOWED: Record<InstanceState, InstanceState[]> = {
  creating: ['stopped', 'failed', 'deleted'],
  stopped: ['running', 'failed', 'deleted'],
  running: ['stopped', 'paused', 'failed'],
  paused: ['running', 'stopped', 'failed'],
  failed: ['stopped', 'running', 'deleted'],
  deleted: [],
};

/** action → (state it is allowed from → state it leads to). */
const ACTION_TABLE: Record<LifecycleAction, Partial<Record<InstanceState, InstanceState>>> = {
  start: { stopped: 'running', failed: 'running' },
  stop: { running: 'stopped', paused: 'stopped' },
  pause: { running: 'paused' },
  resume: { paused: 'running' },
  delete: { stopped: 'deleted', failed: 'deleted', creating: 'deleted' },
  restore: { stopped: 'stopped', failed: 'stopped' },
  snapshot: { stopped: 'stopped', running: 'running', paused: 'paused' },
};

for (const from of STATES) {
  for (const to of STATES) {
    const allowed = ALLOWED[from].includes(to);
    test(`${from} → ${to} is ${allowed ? 'allowed' : 'refused'}`, () => {
      assert.equal(canTransition(from, to), allowed);
      if (allowed) assert.doesNotThrow(() => assertTransition(from, to));
      else {
        assert.throws(() => assertTransition(from, to), (e: unknown) => {
          assert.ok(e instanceof InvalidStateTransition);
          assert.equal(e.code, 'STRATA_ERR_INVALID_STATE_TRANSITION');
          assert.equal(e.status, 409);
          assert.deepEqual(e.details, { from, to });
          return true;
        });
      }
    });
  }
}

test('no state moves to itself, and nothing leaves deleted or returns to creating', () => {
  for (const s of STATES) assert.equal(canTransition(s, s), false, s);
  for (const s of STATES) assert.equal(canTransition('deleted', s), false);
  for (const s of STATES) assert.equal(canTransition(s, 'creating'), false);
});

test('the action table covers exactly the expected actions', () => {
  assert.deepEqual(Object.keys(ACTIONS).sort(), Object.keys(ACTION_TABLE).sort());
});

for (const action of Object.keys(ACTION_TABLE) as LifecycleAction[]) {
  for (const state of STATES) {
    const leadsTo = ACTION_TABLE[action][state];
    test(`${action} from ${state} ${leadsTo ? `leads to ${leadsTo}` : 'is refused'}`, () => {
      if (leadsTo) assert.equal(checkAction(state, action), leadsTo);
      else {
        assert.throws(() => checkAction(state, action), (e: unknown) => {
          assert.ok(e instanceof InvalidStateTransition);
          assert.equal(e.code, 'STRATA_ERR_INVALID_STATE_TRANSITION');
          assert.equal((e.details as { action?: string }).action, action);
          assert.equal(e.message, `cannot ${action} an instance that is ${state}`);
          return true;
        });
      }
    });
  }
}

test('every action that changes the state is an allowed transition', () => {
  for (const [action, rules] of Object.entries(ACTION_TABLE)) {
    for (const [from, to] of Object.entries(rules) as Array<[InstanceState, InstanceState]>) {
      if (from !== to) assert.ok(canTransition(from, to), `${action}: ${from} → ${to}`);
    }
  }
});
