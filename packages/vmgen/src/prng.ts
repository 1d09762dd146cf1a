/**
 * xoshiro128**, a small fast PRNG with 128 bits of state.
 *
 * The testkit needs hundreds of MB/s of reproducible noise in plain JavaScript:
 * `Math.random` is neither seeded nor reproducible and `crypto` per byte is far too
 * slow. xoshiro128** needs only 32-bit shifts, xors and `Math.imul`, so V8 keeps it
 * in registers, and it writes whole 32-bit words into an `Int32Array` view.
 */

import { Domain, hashWords, highWord, lowWord } from './hash.js';

/** True when typed-array words are stored little-endian (every mainstream CPU). */
export const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * A reseedable xoshiro128** generator. One instance is reused for many blocks (via
 * {@link Xoshiro128.seedFromWords}) so generation allocates nothing per block.
 */
export class Xoshiro128 {
  #s0 = 0;
  #s1 = 0;
  #s2 = 0;
  #s3 = 0;

  constructor(s0: number, s1: number, s2: number, s3: number) {
    this.seed(s0, s1, s2, s3);
  }

  /** Sets the raw state; the all-zero state (a fixed point) is replaced. */
  seed(s0: number, s1: number, s2: number, s3: number): void {
    this.#s0 = s0 | 0;
    this.#s1 = s1 | 0;
    this.#s2 = s2 | 0;
    this.#s3 = s3 | 0;
    if ((this.#s0 | this.#s1 | this.#s2 | this.#s3) === 0) this.#s0 = 0x9e3779b9 | 0;
  }

  /**
   * Seeds all 128 bits from a hashed tuple: four independent hashes, so two blocks
   * of a multi-TiB image practically never share a stream (a 32-bit seed would make
   * collisions likely from a few GiB on, and with them accidental dedup).
   */
  seedFromWords(salt: number, a: number, b: number, c: number, d: number, e: number): void {
    const lanes = salt * 4;
    this.seed(
      hashWords(lanes, a, b, c, d, e),
      hashWords(lanes + 1, a, b, c, d, e),
      hashWords(lanes + 2, a, b, c, d, e),
      hashWords(lanes + 3, a, b, c, d, e),
    );
  }

  /** The next output as an unsigned 32-bit integer. */
  nextUint32(): number {
    const s1 = this.#s1;
    const m = Math.imul(s1, 5);
    const result = Math.imul((m << 7) | (m >>> 25), 9);
    const t = s1 << 9;
    let s0 = this.#s0;
    let s2 = this.#s2;
    let s3 = this.#s3;
    let n1 = s1;
    s2 ^= s0;
    s3 ^= n1;
    n1 ^= s2;
    s0 ^= s3;
    s2 ^= t;
    s3 = (s3 << 11) | (s3 >>> 21);
    this.#s0 = s0;
    this.#s1 = n1;
    this.#s2 = s2;
    this.#s3 = s3;
    return result >>> 0;
  }

  /** Fills `out[start..end)` with successive outputs; the hot loop of random data. */
  fill(out: Int32Array, start = 0, end = out.length): void {
    let s0 = this.#s0;
    let s1 = this.#s1;
    let s2 = this.#s2;
    let s3 = this.#s3;
    for (let i = start; i < end; i++) {
      const m = Math.imul(s1, 5);
      out[i] = Math.imul((m << 7) | (m >>> 25), 9);
      const t = s1 << 9;
      s2 ^= s0;
      s3 ^= s1;
      s1 ^= s2;
      s0 ^= s3;
      s2 ^= t;
      s3 = (s3 << 11) | (s3 >>> 21);
    }
    this.#s0 = s0;
    this.#s1 = s1;
    this.#s2 = s2;
    this.#s3 = s3;
  }
}

/**
 * Fills `bytes` (whose byteOffset and length must be multiples of 4) with the
 * generator's output in little-endian word order, whatever the host's byte order,
 * so the bytes are the same on every machine.
 */
export function fillRandomWords(rng: Xoshiro128, bytes: Uint8Array): void {
  const words = new Int32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >>> 2);
  rng.fill(words);
  if (!LITTLE_ENDIAN) Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).swap32();
}

/**
 * Deterministic pseudo-random bytes for tests: payloads, keys, nonces. The same
 * seed always gives the same bytes, and a shorter result is a prefix of a longer one.
 *
 * @param seed non-negative safe integer
 * @param lengthBytes non-negative safe integer
 */
export function randomBytes(seed: number, lengthBytes: number): Buffer {
  if (typeof seed !== 'number') throw new TypeError('seed must be a non-negative safe integer');
  if (!Number.isSafeInteger(seed) || seed < 0)
    throw new RangeError('seed must be a non-negative safe integer');
  if (typeof lengthBytes !== 'number') throw new TypeError('lengthBytes must be a non-negative safe integer');
  if (!Number.isSafeInteger(lengthBytes) || lengthBytes < 0) {
    throw new RangeError('lengthBytes must be a non-negative safe integer');
  }
  const rng = new Xoshiro128(0, 0, 0, 0);
  rng.seedFromWords(Domain.randomBytes, lowWord(seed), highWord(seed), 0, 0, 0);
  // Buffer.alloc is never pooled, so the storage is 4-byte aligned for the word view.
  const out = Buffer.alloc(Math.ceil(lengthBytes / 4) * 4);
  fillRandomWords(rng, out);
  return out.subarray(0, lengthBytes);
}

/**
 * A tiny seeded generator of floats in [0, 1) (mulberry32) for test traces, fuzzers and
 * the demo's guest: the same seed replays the same sequence.
 */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}
