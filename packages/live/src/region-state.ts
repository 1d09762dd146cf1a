/**
 * The state of each region of a live-restore target, as one enum and one transition table
 * (after nbdkit's cache filter, which keeps one NOT_CACHED/CLEAN/DIRTY state per block).
 *
 * ```
 *                   fill-started                  filled
 *  REMOTE_PRISTINE ──────────────▶ REMOTE_DIRTY ──────────▶ LOCAL ◀──┐
 *        │                          │      ▲                 │       │ guest-write
 *        │ zero-filled              └──────┘                 └───────┘
 *        ▼                        fill-started
 *  LOCAL_KNOWN_ZERO ──────────────────────────────────────▶ LOCAL
 *                              guest-write
 * ```
 *
 * Every byte written into a region not local is preceded by fill-started, so a region
 * that may hold partial bytes is never taken for a hole.
 *
 * Only "is it local" is persisted (one bit per region in the allocation map, format
 * unchanged): a resumed region with its bit set is LOCAL, one without is REMOTE_DIRTY,
 * because an interrupted fill or write may have left bytes in it.
 */
import { RegionBitmap } from './alloc-map.js';

/** What a region of the target holds. */
export const RegionState = {
  /** Not local; the target region is a hole nothing was written to (a target this process created). */
  REMOTE_PRISTINE: 0,
  /** Not local; the target region may hold part of an interrupted fill or write (after a restart or a failed store). */
  REMOTE_DIRTY: 1,
  /** Local: the target holds the region's content (the backup's bytes with any guest writes on top). */
  LOCAL: 2,
  /** Local and known to read as zeroes without any byte written (reported as a hole). */
  LOCAL_KNOWN_ZERO: 3,
} as const;
export type RegionState = (typeof RegionState)[keyof typeof RegionState];

/** What happens to a region. */
export const RegionEvent = {
  /** Bytes are about to be written into a region not local (a fill, or a guest write that fills it). */
  FILL_STARTED: 0,
  /** The region's full content was written: it is local. */
  FILLED: 1,
  /** A pristine region is known to read as zeroes (a zero chunk, or a whole-region zeroing): local without a write. */
  ZERO_FILLED: 2,
  /** The guest wrote into a local region. */
  GUEST_WRITE: 3,
} as const;
export type RegionEvent = (typeof RegionEvent)[keyof typeof RegionEvent];

const STATE_NAMES = ['REMOTE_PRISTINE', 'REMOTE_DIRTY', 'LOCAL', 'LOCAL_KNOWN_ZERO'] as const;
const EVENT_NAMES = ['fill-started', 'filled', 'zero-filled', 'guest-write'] as const;

/** `REMOTE_DIRTY` for 1: for messages and tests. */
export function stateName(state: RegionState): string {
  return STATE_NAMES[state] ?? `state ${state}`;
}

/** `fill-started` for 0. */
export function eventName(event: RegionEvent): string {
  return EVENT_NAMES[event] ?? `event ${event}`;
}

const X = -1; // an illegal transition
const S = RegionState;
/** TRANSITIONS[state][event] = the next state, or X. Rows: states; columns: events in RegionEvent order. */
const TRANSITIONS: readonly (readonly number[])[] = [
  //                   FILL_STARTED     FILLED   ZERO_FILLED          GUEST_WRITE
  /* REMOTE_PRISTINE */ [S.REMOTE_DIRTY, X, S.LOCAL_KNOWN_ZERO, X],
  /* REMOTE_DIRTY    */ [S.REMOTE_DIRTY, S.LOCAL, X, X],
  /* LOCAL           */ [X, X, X, S.LOCAL],
  /* LOCAL_KNOWN_ZERO*/ [X, X, X, S.LOCAL],
];

/** True for LOCAL and LOCAL_KNOWN_ZERO (what the allocation map records). */
export function isLocalState(state: RegionState): boolean {
  return state >= RegionState.LOCAL;
}

/**
 * The states of every region of one drive. {@link transition} is the only way to change
 * one; it throws on an illegal transition (a bug: e.g. a fill of a region already local
 * would overwrite guest data). The persisted bitmap is kept in step.
 */
export class RegionStates {
  readonly #states: Uint8Array;
  readonly #bitmap: RegionBitmap;

  /**
   * `persisted`: the bitmap read from the map (regions local), or undefined for a target
   * this process creates (every region pristine).
   */
  constructor(
    readonly regionCount: number,
    persisted?: Uint8Array,
  ) {
    this.#bitmap = new RegionBitmap(
      regionCount,
      persisted === undefined ? undefined : Uint8Array.from(persisted),
    );
    this.#states = new Uint8Array(regionCount);
    for (let i = 0; i < regionCount; i++) {
      this.#states[i] =
        persisted === undefined
          ? RegionState.REMOTE_PRISTINE
          : this.#bitmap.has(i)
            ? RegionState.LOCAL
            : RegionState.REMOTE_DIRTY;
    }
  }

  get(i: number): RegionState {
    const state = this.#states[i];
    if (state === undefined) throw new RangeError(`region ${i} is out of range (0…${this.regionCount - 1})`);
    return state as RegionState;
  }

  isLocal(i: number): boolean {
    return this.#bitmap.has(i);
  }

  /**
   * Applies `event` to region `i`; returns true when the region became local by it.
   * Throws an Error naming the region, state and event when the table forbids it.
   */
  transition(i: number, event: RegionEvent): boolean {
    const from = this.get(i);
    const to = TRANSITIONS[from]?.[event] ?? X;
    if (to === X) {
      throw new Error(`region ${i}: illegal transition ${stateName(from)} --${eventName(event)}-->`);
    }
    this.#states[i] = to;
    return isLocalState(to as RegionState) && this.#bitmap.set(i);
  }

  /** Regions local now. */
  get localCount(): number {
    return this.#bitmap.count;
  }

  get complete(): boolean {
    return this.#bitmap.complete;
  }

  /** A copy of the bitmap of local regions, as the map file stores it. */
  snapshotBits(): Uint8Array {
    return this.#bitmap.snapshot();
  }
}
