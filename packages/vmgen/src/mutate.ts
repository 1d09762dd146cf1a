/**
 * Small deterministic changes on top of an image, for incremental-backup tests.
 *
 * A layer of `changes` ranges of `changeBytes` each is spread over the image: the
 * image is cut into `changes` equal strata and range i starts at a hashed offset
 * inside stratum i. Ranges are therefore disjoint, sorted, and the ones touching any
 * offset are found in O(1). Each changed byte is the base byte XOR a non-zero mask
 * byte, so *every* byte in a reported range differs from the parent image and no
 * byte outside one does: a test can assert the exact set of dirty chunks.
 */

import { Domain, hashWords, highWord, lowWord, unitFloat } from './hash.js';
import {
  BLOCK_BYTES,
  checkMutation,
  checkNonNegativeInteger,
  checkPositiveInteger,
  type ImageSpec,
  type MutationSpec,
  normalizeSpec,
} from './image-spec.js';
import { fillRandomWords, Xoshiro128 } from './prng.js';

/** A half-open byte range `[offsetBytes, offsetBytes + lengthBytes)`. */
export interface ByteRange {
  readonly offsetBytes: number;
  readonly lengthBytes: number;
}

/** Options of {@link mutate}. */
export interface MutateOptions {
  /** Chooses where the changes go and what they write. */
  readonly seed: number;
  /** Number of changed ranges. */
  readonly changes: number;
  /** Length of each changed range; 4096 (one guest page / FS block) by default. */
  readonly changeBytes?: number;
}

/** Default change size: one 4 KiB file-system block, the usual unit a guest rewrites. */
export const DEFAULT_CHANGE_BYTES = 4096;

/**
 * A spec whose bytes equal `spec`'s except in `changes` small ranges, as a guest
 * would leave a disk between two backups. Mutations stack: mutating a mutated spec
 * adds a layer. {@link changedRanges} tells which ranges the last layer changed.
 */
export function mutate(spec: ImageSpec, options: MutateOptions): ImageSpec {
  const base = normalizeSpec(spec);
  if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object');
  const seed = checkNonNegativeInteger(options.seed, 'seed');
  const changes = checkNonNegativeInteger(options.changes, 'changes');
  const changeBytes = checkPositiveInteger(options.changeBytes ?? DEFAULT_CHANGE_BYTES, 'changeBytes');
  const layer = checkMutation({ seed, changes, changeBytes }, base.sizeBytes, 'mutation');
  return { ...spec, mutations: [...(spec.mutations ?? []), layer] };
}

/** Geometry of one layer, precomputed for an image size. */
export interface CompiledMutation {
  readonly seedLo: number;
  readonly seedHi: number;
  readonly changes: number;
  readonly changeBytes: number;
  readonly stratumBytes: number;
}

/** Precomputes a validated layer's geometry for an image of `sizeBytes`. */
export function compileMutation(layer: MutationSpec, sizeBytes: number): CompiledMutation {
  return {
    seedLo: lowWord(layer.seed),
    seedHi: highWord(layer.seed),
    changes: layer.changes,
    changeBytes: layer.changeBytes,
    stratumBytes: layer.changes === 0 ? 0 : Math.floor(sizeBytes / layer.changes),
  };
}

function rangeStart(m: CompiledMutation, index: number): number {
  const iLo = lowWord(index);
  const iHi = highWord(index);
  const u = unitFloat(
    hashWords(Domain.mutationOffset, m.seedLo, m.seedHi, iLo, iHi, 0),
    hashWords(Domain.mutationOffset, m.seedLo, m.seedHi, iLo, iHi, 1),
  );
  return index * m.stratumBytes + Math.floor(u * (m.stratumBytes - m.changeBytes + 1));
}

/**
 * The ranges in which `spec` differs from the spec it was mutated from (its last
 * mutation layer), sorted and disjoint; empty for an unmutated spec. Every byte in
 * them differs from the parent.
 */
export function changedRanges(spec: ImageSpec): ByteRange[] {
  const n = normalizeSpec(spec);
  const last = n.mutations[n.mutations.length - 1];
  if (last === undefined) return [];
  const m = compileMutation(last, n.sizeBytes);
  const out: ByteRange[] = [];
  for (let i = 0; i < m.changes; i++) out.push({ offsetBytes: rangeStart(m, i), lengthBytes: m.changeBytes });
  return out;
}

const maskBytes = new Uint8Array(BLOCK_BYTES);
const maskRng = new Xoshiro128(0, 0, 0, 0);

/**
 * XORs the masks of all layers onto `target`, which holds the image bytes starting
 * at `offsetBytes`. Only the 64 KiB mask pieces that overlap `target` are generated.
 */
export function applyMutations(
  layers: readonly CompiledMutation[],
  target: Uint8Array,
  offsetBytes: number,
): void {
  const end = offsetBytes + target.length;
  if (target.length === 0) return;
  for (const m of layers) {
    if (m.changes === 0) continue;
    const firstStratum = Math.min(Math.floor(offsetBytes / m.stratumBytes), m.changes - 1);
    const lastStratum = Math.min(Math.floor((end - 1) / m.stratumBytes), m.changes - 1);
    for (let i = firstStratum; i <= lastStratum; i++) {
      const start = rangeStart(m, i);
      const from = Math.max(start, offsetBytes);
      const to = Math.min(start + m.changeBytes, end);
      if (from >= to) continue;
      xorMask(m, i, from - start, to - start, target, from - offsetBytes);
    }
  }
}

/** XORs mask bytes `[qFrom, qTo)` of range `index` onto `target` at `targetPos`. */
function xorMask(
  m: CompiledMutation,
  index: number,
  qFrom: number,
  qTo: number,
  target: Uint8Array,
  targetPos: number,
): void {
  let q = qFrom;
  let t = targetPos;
  while (q < qTo) {
    const piece = Math.floor(q / BLOCK_BYTES);
    const inPiece = q - piece * BLOCK_BYTES;
    const n = Math.min(BLOCK_BYTES - inPiece, qTo - q);
    const neededBytes = Math.ceil((inPiece + n) / 4) * 4;
    maskRng.seedFromWords(Domain.mutationMask, m.seedLo, m.seedHi, lowWord(index), highWord(index), piece);
    fillRandomWords(maskRng, maskBytes.subarray(0, neededBytes));
    for (let k = 0; k < n; k++) {
      const v = maskBytes[inPiece + k] as number;
      target[t + k] = (target[t + k] as number) ^ (v === 0 ? 0xa5 : v);
    }
    q += n;
    t += n;
  }
}
