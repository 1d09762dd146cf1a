/**
 * Random access to image bytes: the core every other entry point is built on.
 *
 * Any byte range is produced block by block (64 KiB); each block is a pure function
 * of (spec, block index) via the extent layout, so a range deep inside a 4 TiB
 * image costs the same as one at its start and needs no memory beyond one block.
 */

import { Domain, highWord, lowWord } from './hash.js';
import {
  BLOCK_BYTES,
  ContentKind,
  type ImageSpec,
  type NormalizedSpec,
  normalizeSpec,
} from './image-spec.js';
import { computeExtentLayout, EXTENT_BLOCKS, type ExtentLayout, REPEAT_CYCLE_BLOCKS } from './layout.js';
import { applyMutations, type CompiledMutation, compileMutation } from './mutate.js';
import { fillRandomWords, Xoshiro128 } from './prng.js';
import { fillText, type TextDictionary, textDictionary } from './text.js';

const EXTENT_CACHE_ENTRIES = 4;

/** A validated spec with everything needed per block precomputed. */
class CompiledImage {
  readonly spec: NormalizedSpec;
  readonly seedLo: number;
  readonly seedHi: number;
  readonly familyLo: number;
  readonly familyHi: number;
  readonly mutations: readonly CompiledMutation[];
  readonly #extents = new Map<number, ExtentLayout>();

  constructor(spec: NormalizedSpec) {
    this.spec = spec;
    this.seedLo = lowWord(spec.seed);
    this.seedHi = highWord(spec.seed);
    this.familyLo = lowWord(spec.family);
    this.familyHi = highWord(spec.family);
    this.mutations = spec.mutations.map((m) => compileMutation(m, spec.sizeBytes));
  }

  /** Looked up per block rather than held, so the shared LRU in text.ts stays bounded. */
  get textDictionary(): TextDictionary {
    return textDictionary(this.spec.seed);
  }

  get familyDictionary(): TextDictionary {
    return textDictionary(this.spec.family);
  }

  extentLayout(extent: number): ExtentLayout {
    const hit = this.#extents.get(extent);
    if (hit !== undefined) return hit;
    const layout = computeExtentLayout(this.spec.seed, this.spec.cumulativeMix, extent);
    this.#extents.set(extent, layout);
    if (this.#extents.size > EXTENT_CACHE_ENTRIES) {
      const oldest = this.#extents.keys().next();
      if (oldest.done !== true) this.#extents.delete(oldest.value);
    }
    return layout;
  }
}

const COMPILED_CACHE_ENTRIES = 16;
const compiledCache = new Map<string, CompiledImage>();

/**
 * Validates and compiles a spec, memoised by its normalised JSON so callers may
 * pass fresh but equal objects (e.g. received from a worker) at no extra cost.
 */
function compile(spec: ImageSpec): CompiledImage {
  const normalized = normalizeSpec(spec);
  const key = JSON.stringify(normalized);
  const hit = compiledCache.get(key);
  if (hit !== undefined) return hit;
  const compiled = new CompiledImage(normalized);
  compiledCache.set(key, compiled);
  if (compiledCache.size > COMPILED_CACHE_ENTRIES) {
    const oldest = compiledCache.keys().next();
    if (oldest.done !== true) compiledCache.delete(oldest.value);
  }
  return compiled;
}

const blockRng = new Xoshiro128(0, 0, 0, 0);
const scratch = new Uint8Array(BLOCK_BYTES);

/**
 * Writes the full 64 KiB of base block `block` into `out` (64 KiB, 4-byte aligned).
 * Content never depends on the image size, so images differing only in size share
 * their common prefix.
 */
function generateBlock(
  img: CompiledImage,
  kind: number,
  variant: number,
  block: number,
  out: Uint8Array,
): void {
  const bLo = lowWord(block);
  const bHi = highWord(block);
  switch (kind) {
    case ContentKind.zero:
      out.fill(0);
      return;
    case ContentKind.random:
      blockRng.seedFromWords(Domain.randomBlock, img.seedLo, img.seedHi, bLo, bHi, 0);
      fillRandomWords(blockRng, out);
      return;
    case ContentKind.text:
      blockRng.seedFromWords(Domain.textBlock, img.seedLo, img.seedHi, bLo, bHi, 0);
      fillText(img.textDictionary, blockRng, out, 0, BLOCK_BYTES);
      return;
    default: {
      // Repeat: one of REPEAT_VARIANTS × REPEAT_CYCLE_BLOCKS blocks of the family pool,
      // half of them text, half random.
      const id = variant * REPEAT_CYCLE_BLOCKS + (block % REPEAT_CYCLE_BLOCKS);
      blockRng.seedFromWords(Domain.familyBlock, img.familyLo, img.familyHi, id, 0, 0);
      if (id % 2 === 0) fillText(img.familyDictionary, blockRng, out, 0, BLOCK_BYTES);
      else fillRandomWords(blockRng, out);
    }
  }
}

function fillBase(img: CompiledImage, target: Uint8Array, offsetBytes: number): void {
  const length = target.length;
  let pos = 0;
  while (pos < length) {
    const abs = offsetBytes + pos;
    const block = Math.floor(abs / BLOCK_BYTES);
    const inBlock = abs - block * BLOCK_BYTES;
    const n = Math.min(BLOCK_BYTES - inBlock, length - pos);
    const extent = Math.floor(block / EXTENT_BLOCKS);
    const layout = img.extentLayout(extent);
    const inExtent = block - extent * EXTENT_BLOCKS;
    const kind = layout.kinds[inExtent] as number;
    if (kind === ContentKind.zero) {
      target.fill(0, pos, pos + n);
    } else if (n === BLOCK_BYTES && ((target.byteOffset + pos) & 3) === 0) {
      generateBlock(img, kind, layout.variants[inExtent] as number, block, target.subarray(pos, pos + n));
    } else {
      generateBlock(img, kind, layout.variants[inExtent] as number, block, scratch);
      target.set(scratch.subarray(inBlock, inBlock + n), pos);
    }
    pos += n;
  }
}

/**
 * Fills `target` with the image bytes starting at `offsetBytes`, without generating
 * anything before them: the reference a reader's output is compared against, at
 * any offset of an image of any size.
 *
 * @throws RangeError if the range reaches past the end of the image
 */
export function fillImage(spec: ImageSpec, target: Uint8Array, offsetBytes: number): void {
  const img = compile(spec);
  if (!(target instanceof Uint8Array)) throw new TypeError('target must be a Uint8Array');
  if (typeof offsetBytes !== 'number') throw new TypeError('offsetBytes must be a non-negative safe integer');
  if (!Number.isSafeInteger(offsetBytes) || offsetBytes < 0) {
    throw new RangeError('offsetBytes must be a non-negative safe integer');
  }
  if (offsetBytes + target.length > img.spec.sizeBytes) {
    throw new RangeError(
      `range [${offsetBytes}, ${offsetBytes + target.length}) is outside the image of ${img.spec.sizeBytes} bytes`,
    );
  }
  fillBase(img, target, offsetBytes);
  if (img.mutations.length > 0) applyMutations(img.mutations, target, offsetBytes);
}

/**
 * The image bytes `[offsetBytes, offsetBytes + lengthBytes)` in a new Buffer; see
 * {@link fillImage}.
 */
export function imageBytes(spec: ImageSpec, offsetBytes: number, lengthBytes: number): Buffer {
  if (typeof lengthBytes !== 'number') throw new TypeError('lengthBytes must be a non-negative safe integer');
  if (!Number.isSafeInteger(lengthBytes) || lengthBytes < 0) {
    throw new RangeError('lengthBytes must be a non-negative safe integer');
  }
  // Unpooled, so its storage is 4-byte aligned and whole blocks are generated in
  // place rather than through the scratch block; every byte is overwritten below.
  const out = Buffer.allocUnsafeSlow(lengthBytes);
  fillImage(spec, out, offsetBytes);
  return out;
}
