/**
 * Integer hashing that turns (seed, index, …) tuples into well-mixed 32-bit words.
 *
 * Every content decision in the testkit (region lengths, region kinds, PRNG states)
 * is a pure function of such a tuple, which is what makes any byte of an image
 * computable on its own. Only 32-bit integer operations and `Math.imul` are used, so
 * the results are identical on every machine and Node version.
 */

const C1 = 0xcc9e2d51;
const C2 = 0x1b873593;
const TWO_POW_32 = 4294967296;
const TWO_POW_53 = 9007199254740992;

function mixIn(h: number, k: number): number {
  let x = Math.imul(k, C1);
  x = (x << 15) | (x >>> 17);
  x = Math.imul(x, C2);
  let y = h ^ x;
  y = (y << 13) | (y >>> 19);
  return (Math.imul(y, 5) + 0xe6546b64) | 0;
}

/** MurmurHash3's finaliser: spreads every input bit over the whole word. */
export function fmix32(h: number): number {
  let x = h ^ (h >>> 16);
  x = Math.imul(x, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  x ^= x >>> 16;
  return x >>> 0;
}

/**
 * Hashes a salt (the "domain", so different uses of the same tuple never collide)
 * and five 32-bit words into one unsigned 32-bit word. Fixed arity keeps the hot
 * callers free of array allocation.
 */
export function hashWords(salt: number, a: number, b: number, c: number, d: number, e: number): number {
  let h = salt | 0;
  h = mixIn(h, a);
  h = mixIn(h, b);
  h = mixIn(h, c);
  h = mixIn(h, d);
  h = mixIn(h, e);
  return fmix32(h ^ 20);
}

/** Low 32 bits of a non-negative safe integer, exact for every value up to 2^53. */
export function lowWord(n: number): number {
  return n >>> 0;
}

/** High 21 bits of a non-negative safe integer, exact for every value up to 2^53. */
export function highWord(n: number): number {
  return Math.floor(n / TWO_POW_32);
}

/**
 * A uniform float in [0, 1) with 53 random bits, from two hashed words. Used where a
 * choice spans more than 2^32 values (offsets in multi-TiB images).
 */
export function unitFloat(hi: number, lo: number): number {
  return ((hi >>> 5) * 67108864 + (lo >>> 6)) / TWO_POW_53;
}

/** Domain salts: one per use of {@link hashWords}, never reused. */
export const Domain = {
  regionLength: 0x1001,
  regionKind: 0x1002,
  regionVariant: 0x1003,
  textBlock: 0x2001,
  randomBlock: 0x2002,
  familyBlock: 0x2003,
  dictionary: 0x2004,
  mutationOffset: 0x3001,
  mutationMask: 0x3002,
  randomBytes: 0x4001,
  deriveSeed: 0x5001,
} as const;
