/**
 * Where each kind of content lies in an image.
 *
 * The image is cut into fixed 64 MiB extents; each extent is cut into regions of
 * 4–128 blocks (256 KiB–8 MiB) whose lengths, kinds and variants are hashes of
 * (seed, extent, region number). Fixed extents are what make random access cheap:
 * the layout around any offset is computed from its extent alone, never by walking
 * the image from the start. Regions are long enough that some 4 MiB chunks are all
 * zero or all random, and short enough that many chunks mix kinds.
 *
 *   extent 0 (1024 blocks)                     extent 1
 *   |zero....|text.............|rand..|rep.....|text....|zero...
 *   region 0  region 1          region 2 …      region 0 …
 */

import { Domain, hashWords, highWord, lowWord } from './hash.js';
import {
  BLOCK_BYTES,
  CONTENT_KIND_NAMES,
  type ContentKind,
  type ContentKindName,
  type ImageSpec,
  normalizeSpec,
} from './image-spec.js';

/** Blocks per extent: 64 MiB. */
export const EXTENT_BLOCKS = 1024;
/** Shortest region: 256 KiB. */
export const MIN_REGION_BLOCKS = 4;
/** Longest region: 8 MiB. */
export const MAX_REGION_BLOCKS = 128;
/**
 * Distinct repeat "variants" per family. A repeat block's content is chosen by
 * (family, variant, block index mod {@link REPEAT_CYCLE_BLOCKS}), so a 4 MiB-aligned
 * chunk that lies wholly in repeat regions of the same variant is identical across
 * all images of the family: whole-chunk dedup, not just 64 KiB-block dedup.
 */
export const REPEAT_VARIANTS = 2;
/** Period of repeat content in blocks: one 4 MiB chunk. */
export const REPEAT_CYCLE_BLOCKS = 64;

/** The layout of one extent: kind and variant of each of its blocks. */
export interface ExtentLayout {
  readonly kinds: Uint8Array;
  readonly variants: Uint8Array;
  /** Block offsets (within the extent) where a region starts, plus EXTENT_BLOCKS at the end. */
  readonly regionStarts: readonly number[];
}

/**
 * Computes an extent's layout. Depends only on the seed and the mix: a longer image
 * with the same seed has the same layout on their common prefix.
 */
export function computeExtentLayout(
  seed: number,
  cumulativeMix: readonly [number, number, number, number],
  extent: number,
): ExtentLayout {
  const kinds = new Uint8Array(EXTENT_BLOCKS);
  const variants = new Uint8Array(EXTENT_BLOCKS);
  const regionStarts: number[] = [];
  const seedLo = lowWord(seed);
  const seedHi = highWord(seed);
  const extLo = lowWord(extent);
  const extHi = highWord(extent);
  const span = MAX_REGION_BLOCKS - MIN_REGION_BLOCKS + 1;
  let pos = 0;
  for (let region = 0; pos < EXTENT_BLOCKS; region++) {
    const length =
      MIN_REGION_BLOCKS + (hashWords(Domain.regionLength, seedLo, seedHi, extLo, extHi, region) % span);
    const u = hashWords(Domain.regionKind, seedLo, seedHi, extLo, extHi, region) / 4294967296;
    let kind = 0;
    while (kind < 3 && u >= (cumulativeMix[kind] as number)) kind++;
    const variant = hashWords(Domain.regionVariant, seedLo, seedHi, extLo, extHi, region) % REPEAT_VARIANTS;
    const end = Math.min(pos + length, EXTENT_BLOCKS);
    kinds.fill(kind, pos, end);
    variants.fill(variant, pos, end);
    regionStarts.push(pos);
    pos = end;
  }
  regionStarts.push(EXTENT_BLOCKS);
  return { kinds, variants, regionStarts };
}

/** A run of bytes of one content kind in the base (unmutated) image. */
export interface ImageRegion {
  readonly offsetBytes: number;
  readonly lengthBytes: number;
  readonly kind: ContentKindName;
}

/**
 * The content regions overlapping `[offsetBytes, offsetBytes + lengthBytes)`,
 * clipped to it, with adjacent regions of the same kind merged. Lets tests predict
 * which chunks are all-zero or incompressible without reading them, and lets a demo
 * show what an image is made of. Describes the base image: mutations are ignored.
 */
export function imageRegions(spec: ImageSpec, offsetBytes = 0, lengthBytes?: number): ImageRegion[] {
  const n = normalizeSpec(spec);
  if (!Number.isSafeInteger(offsetBytes) || offsetBytes < 0 || offsetBytes > n.sizeBytes) {
    throw new RangeError('offsetBytes must be a safe integer within the image');
  }
  const length = lengthBytes ?? n.sizeBytes - offsetBytes;
  if (!Number.isSafeInteger(length) || length < 0 || offsetBytes + length > n.sizeBytes) {
    throw new RangeError('lengthBytes must be a non-negative safe integer within the image');
  }
  const out: { offsetBytes: number; lengthBytes: number; kind: ContentKindName }[] = [];
  const end = offsetBytes + length;
  let pos = offsetBytes;
  let layoutExtent = -1;
  let layout: ExtentLayout | undefined;
  while (pos < end) {
    const block = Math.floor(pos / BLOCK_BYTES);
    const extent = Math.floor(block / EXTENT_BLOCKS);
    if (layout === undefined || layoutExtent !== extent) {
      layout = computeExtentLayout(n.seed, n.cumulativeMix, extent);
      layoutExtent = extent;
    }
    const inExtent = block - extent * EXTENT_BLOCKS;
    let r = 0;
    while ((layout.regionStarts[r + 1] as number) <= inExtent) r++;
    const regionEndBytes = (extent * EXTENT_BLOCKS + (layout.regionStarts[r + 1] as number)) * BLOCK_BYTES;
    const stop = Math.min(regionEndBytes, end);
    const kind = CONTENT_KIND_NAMES[layout.kinds[inExtent] as ContentKind];
    const last = out[out.length - 1];
    if (last !== undefined && last.kind === kind) last.lengthBytes += stop - pos;
    else out.push({ offsetBytes: pos, lengthBytes: stop - pos, kind });
    pos = stop;
  }
  return out;
}
