/**
 * The description of a synthetic disk image, and its validation.
 *
 * An {@link ImageSpec} is a plain JSON value rather than a class so benchmarks can
 * print it, tests can log it, and worker threads can receive it by structured clone:
 * everything else in the testkit is a pure function of the spec.
 */

/** Size of the unit in which content is chosen: a 64 KiB block. */
export const BLOCK_BYTES = 65536;

/**
 * Relative weights of the four kinds of content. Weights need not sum to 1 (they are
 * normalised); a missing kind weighs 0. Weights apply to regions, whose lengths do
 * not depend on their kind, so they are also the expected fractions of bytes.
 */
export interface ContentMix {
  /** Unallocated disk: all-zero bytes (holes in a sparse file, trivially dedup'd chunks). */
  readonly zero?: number;
  /** File-system-like text and records; compresses about 3–4× with DEFLATE. */
  readonly text?: number;
  /** Incompressible noise, like compressed media or encrypted files. */
  readonly random?: number;
  /** 64 KiB blocks drawn from a pool shared by every image of the same family. */
  readonly repeat?: number;
}

/** The mix used when a spec has none: a half-full, typical VM disk. */
export const DEFAULT_MIX: Readonly<Required<ContentMix>> = Object.freeze({
  zero: 0.3,
  text: 0.4,
  random: 0.2,
  repeat: 0.1,
});

/**
 * One layer of small deterministic changes on top of an image, for incremental
 * backup tests. Created by `mutate`; layers apply in order.
 */
export interface MutationSpec {
  readonly seed: number;
  /** Number of changed ranges; they are disjoint and spread over the whole image. */
  readonly changes: number;
  /** Length of each changed range. */
  readonly changeBytes: number;
}

/**
 * A synthetic VM-like disk image: its bytes are a pure function of this object.
 * Treat it as immutable; derive new specs with spreads or `mutate`.
 */
export interface ImageSpec {
  /** Exact image length; need not be a multiple of anything. */
  readonly sizeBytes: number;
  /** Chooses layout and content. Same seed (and mix, family) ⇒ same bytes. */
  readonly seed: number;
  /** Content proportions; {@link DEFAULT_MIX} when absent. */
  readonly mix?: ContentMix;
  /**
   * Images of the same family share their pool of repeated blocks, so drives of
   * one VM (or VMs cloned from one template) dedup against each other. Defaults to
   * the seed, i.e. no sharing.
   */
  readonly family?: number;
  /** Changes applied on top of the base image, oldest first. */
  readonly mutations?: readonly MutationSpec[];
}

/** Content kinds, numbered as stored in layout tables. */
export const ContentKind = {
  zero: 0,
  text: 1,
  random: 2,
  repeat: 3,
} as const;

/** One of the {@link ContentKind} values. */
export type ContentKind = (typeof ContentKind)[keyof typeof ContentKind];

/** Names of the kinds, indexed by {@link ContentKind}. */
export const CONTENT_KIND_NAMES = ['zero', 'text', 'random', 'repeat'] as const;

/** Name of a content kind, as used in {@link ContentMix}. */
export type ContentKindName = (typeof CONTENT_KIND_NAMES)[number];

/** A spec with every default filled in and every field checked. */
export interface NormalizedSpec {
  readonly sizeBytes: number;
  readonly seed: number;
  readonly family: number;
  /** Cumulative normalised weights of zero, text, random, repeat (last is 1). */
  readonly cumulativeMix: readonly [number, number, number, number];
  readonly mutations: readonly MutationSpec[];
}

/** Throws TypeError (wrong type) or RangeError (bad value) unless `value` is a non-negative safe integer. */
export function checkNonNegativeInteger(value: unknown, name: string): number {
  if (typeof value !== 'number') throw new TypeError(`${name} must be a non-negative safe integer`);
  if (!Number.isSafeInteger(value) || value < 0)
    throw new RangeError(`${name} must be a non-negative safe integer`);
  return value;
}

/** Throws TypeError (wrong type) or RangeError (bad value) unless `value` is a positive safe integer. */
export function checkPositiveInteger(value: unknown, name: string): number {
  if (typeof value !== 'number') throw new TypeError(`${name} must be a positive safe integer`);
  if (!Number.isSafeInteger(value) || value <= 0)
    throw new RangeError(`${name} must be a positive safe integer`);
  return value;
}

function checkWeight(value: unknown, name: string): number {
  if (value === undefined) return 0;
  if (typeof value !== 'number') throw new TypeError(`${name} must be a non-negative finite number`);
  if (!Number.isFinite(value) || value < 0)
    throw new RangeError(`${name} must be a non-negative finite number`);
  return value;
}

/**
 * Validates a mix and returns its cumulative normalised weights. Unknown keys are
 * rejected so a typo (`randm`) does not silently give a different image.
 */
export function normalizeMix(mix: unknown): [number, number, number, number] {
  if (typeof mix !== 'object' || mix === null || Array.isArray(mix)) {
    throw new TypeError('mix must be an object of non-negative weights');
  }
  for (const key of Object.keys(mix)) {
    if (!(CONTENT_KIND_NAMES as readonly string[]).includes(key)) {
      throw new TypeError(`mix has an unknown kind "${key}" (expected ${CONTENT_KIND_NAMES.join(', ')})`);
    }
  }
  const m = mix as Record<string, unknown>;
  const zero = checkWeight(m.zero, 'mix.zero');
  const text = checkWeight(m.text, 'mix.text');
  const random = checkWeight(m.random, 'mix.random');
  const repeat = checkWeight(m.repeat, 'mix.repeat');
  const total = zero + text + random + repeat;
  if (!(total > 0) || !Number.isFinite(total))
    throw new RangeError('mix must have at least one positive weight');
  return [zero / total, (zero + text) / total, (zero + text + random) / total, 1];
}

/** Validates one mutation layer against the image size it applies to. */
export function checkMutation(layer: unknown, sizeBytes: number, name: string): MutationSpec {
  if (typeof layer !== 'object' || layer === null) throw new TypeError(`${name} must be an object`);
  const l = layer as Record<string, unknown>;
  const seed = checkNonNegativeInteger(l.seed, `${name}.seed`);
  const changes = checkNonNegativeInteger(l.changes, `${name}.changes`);
  const changeBytes = checkPositiveInteger(l.changeBytes, `${name}.changeBytes`);
  if (changes > 0 && changeBytes > Math.floor(sizeBytes / changes)) {
    throw new RangeError(`${name}: changes × changeBytes must not exceed sizeBytes (${sizeBytes})`);
  }
  return { seed, changes, changeBytes };
}

/** Validates a spec and fills in its defaults; every public entry point goes through here. */
export function normalizeSpec(spec: ImageSpec): NormalizedSpec {
  if (typeof spec !== 'object' || spec === null) throw new TypeError('spec must be an ImageSpec object');
  const sizeBytes = checkNonNegativeInteger(spec.sizeBytes, 'sizeBytes');
  const seed = checkNonNegativeInteger(spec.seed, 'seed');
  const family = spec.family === undefined ? seed : checkNonNegativeInteger(spec.family, 'family');
  const cumulativeMix = normalizeMix(spec.mix ?? DEFAULT_MIX);
  const rawMutations: unknown = spec.mutations ?? [];
  if (!Array.isArray(rawMutations)) throw new TypeError('mutations must be an array');
  const mutations = rawMutations.map((layer: unknown, i) =>
    checkMutation(layer, sizeBytes, `mutations[${i}]`),
  );
  return { sizeBytes, seed, family, cumulativeMix, mutations };
}
