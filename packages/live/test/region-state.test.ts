import test from 'ava';
import { RegionEvent, RegionState, RegionStates, stateName } from '../src/region-state.js';

const ALL_EVENTS = Object.values(RegionEvent);

/** From `state`, which events are legal, and where they lead (the documented table). */
const EXPECTED: Record<string, Record<string, string>> = {
  REMOTE_PRISTINE: { 'fill-started': 'REMOTE_DIRTY', 'zero-filled': 'LOCAL_KNOWN_ZERO' },
  REMOTE_DIRTY: { 'fill-started': 'REMOTE_DIRTY', filled: 'LOCAL' },
  LOCAL: { 'guest-write': 'LOCAL' },
  LOCAL_KNOWN_ZERO: { 'guest-write': 'LOCAL' },
};
const EVENT_NAMES = ['fill-started', 'filled', 'zero-filled', 'guest-write'];

/** A fresh RegionStates whose region 0 is in `state` (reached through legal transitions). */
function inState(state: RegionState): RegionStates {
  const states = new RegionStates(1);
  if (state === RegionState.REMOTE_DIRTY) states.transition(0, RegionEvent.FILL_STARTED);
  if (state === RegionState.LOCAL) {
    states.transition(0, RegionEvent.FILL_STARTED);
    states.transition(0, RegionEvent.FILLED);
  }
  if (state === RegionState.LOCAL_KNOWN_ZERO) states.transition(0, RegionEvent.ZERO_FILLED);
  return states;
}

test('every (state, event) pair follows the table; illegal ones throw and leave the state unchanged', (t) => {
  for (const state of Object.values(RegionState)) {
    for (const event of ALL_EVENTS) {
      const states = inState(state);
      t.is(states.get(0), state);
      const expected = EXPECTED[stateName(state)]![EVENT_NAMES[event]!];
      if (expected === undefined) {
        t.throws(() => states.transition(0, event), {
          message: `region 0: illegal transition ${stateName(state)} --${EVENT_NAMES[event]}-->`,
        });
        t.is(states.get(0), state);
      } else {
        const becameLocal = states.transition(0, event);
        t.is(stateName(states.get(0)), expected);
        t.is(becameLocal, state < RegionState.LOCAL && expected.startsWith('LOCAL'));
        t.is(states.isLocal(0), expected.startsWith('LOCAL'));
      }
    }
  }
});

test('a resumed map: local bits are LOCAL, the others REMOTE_DIRTY (they may hold an interrupted write); bits round-trip', (t) => {
  const bits = Uint8Array.from([0b0000_0101, 0b0000_0010]);
  const states = new RegionStates(10, bits);
  const names = Array.from({ length: 10 }, (_, i) => stateName(states.get(i)));
  t.deepEqual(names, [
    'LOCAL',
    'REMOTE_DIRTY',
    'LOCAL',
    'REMOTE_DIRTY',
    'REMOTE_DIRTY',
    'REMOTE_DIRTY',
    'REMOTE_DIRTY',
    'REMOTE_DIRTY',
    'REMOTE_DIRTY',
    'LOCAL',
  ]);
  t.is(states.localCount, 3);
  t.deepEqual(states.snapshotBits(), bits);
  bits[0] = 0; // the states keep their own copy
  t.true(states.isLocal(0));
  t.throws(() => states.transition(0, RegionEvent.FILL_STARTED), {
    message: /illegal transition LOCAL --fill-started-->/,
  });
  t.throws(() => states.get(10), { instanceOf: RangeError });
});
