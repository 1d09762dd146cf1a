import test from 'ava';
import fc from 'fast-check';
import { Chunker, chunkLengths, DEFAULT_DYNAMIC_AVG_BYTES } from '../src/index.js';
import { CHUNKER_WINDOW_BYTES } from '../src/internal.js';
import { xorshift32Bytes } from './helpers.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const AVG = 64 * KiB;

/*
 * Golden vectors computed with an independent Rust implementation of the PBS chunker
 * (pbs-datastore/src/chunker.rs), average 64 KiB.
 */

function counterBuffer(): Buffer {
  const buf = Buffer.alloc(MiB);
  for (let i = 0; i < MiB / 4; i++) buf.writeUInt32LE(i, 4 * i);
  return buf;
}

const XORSHIFT_4MIB = xorshift32Bytes(4 * MiB, 1);

test('xorshift32 generator: first outputs of seed 1', (t) => {
  // x = 1 → 270369 → 67634689 → … (the Marsaglia xorshift32 sequence), low bytes.
  t.deepEqual([...xorshift32Bytes(3, 1)], [270369 & 0xff, 67634689 & 0xff, 2647435461 & 0xff]);
});

test('golden: 1 MiB little-endian u32 counter', (t) => {
  t.deepEqual(chunkLengths(counterBuffer(), AVG), [143377, 262144, 262144, 262144, 118767]);
});

test('golden: 1 MiB of zeros cuts at the maximum size', (t) => {
  t.deepEqual(chunkLengths(Buffer.alloc(MiB), AVG), [262144, 262144, 262144, 262144]);
});

test('golden: 4 MiB of xorshift32(seed 1)', (t) => {
  const lengths = chunkLengths(XORSHIFT_4MIB, AVG);
  t.is(lengths.length, 67);
  t.deepEqual(lengths.slice(0, 5), [118279, 49494, 16621, 62859, 32169]);
  t.deepEqual(lengths.slice(-2), [20246, 12130]);
  t.is(
    lengths.reduce((a, b) => a + b, 0),
    4 * MiB,
  );
});

/** Boundaries (positions after each cut) of `data` fed to one Chunker in pieces of the given sizes. */
function streamedLengths(data: Uint8Array, avgBytes: number, pieceSizes: readonly number[]): number[] {
  const chunker = new Chunker(avgBytes);
  const lengths: number[] = [];
  let chunkStart = 0;
  let pos = 0;
  let p = 0;
  while (pos < data.length) {
    const size = pieceSizes[p++ % pieceSizes.length]!;
    let piece = data.subarray(pos, Math.min(pos + size, data.length));
    while (piece.length > 0) {
      const cut = chunker.scan(piece);
      if (cut === 0) {
        pos += piece.length;
        break;
      }
      if (cut < 1 || cut > piece.length) throw new Error(`scan returned ${cut} for ${piece.length} bytes`);
      pos += cut;
      lengths.push(pos - chunkStart);
      chunkStart = pos;
      piece = piece.subarray(cut);
    }
  }
  if (chunkStart < data.length) lengths.push(data.length - chunkStart);
  return lengths;
}

test('golden vector holds when fed in tiny and window-sized pieces', (t) => {
  const expected = chunkLengths(XORSHIFT_4MIB, AVG);
  const pieces = [1, 3, CHUNKER_WINDOW_BYTES - 1, CHUNKER_WINDOW_BYTES, CHUNKER_WINDOW_BYTES + 1, 7, 4093];
  t.deepEqual(streamedLengths(XORSHIFT_4MIB, AVG, pieces), expected);
  t.deepEqual(streamedLengths(counterBuffer(), AVG, [1, 2, 5]), [143377, 262144, 262144, 262144, 118767]);
});

test('scan returns 0 while no boundary is reached and reports cuts within the given data', (t) => {
  const chunker = new Chunker(AVG);
  t.is(chunker.scan(new Uint8Array(0)), 0);
  t.is(chunker.scan(new Uint8Array(AVG / 4 - 1)), 0, 'nothing cuts below the minimum');
  const zeros = new Uint8Array(4 * AVG);
  const cut = chunker.scan(zeros);
  t.is(cut, 4 * AVG - (AVG / 4 - 1), 'zeros cut exactly at the maximum, counted from the chunk start');
  t.is(chunker.scan(zeros.subarray(1)), 0, 'a new chunk started after the cut');
  t.is(chunker.scan(zeros.subarray(0, 1)), 1, 'and ends at its maximum size');
});

test('defaults and size limits', (t) => {
  t.is(DEFAULT_DYNAMIC_AVG_BYTES, 4 * MiB);
  const chunker = new Chunker();
  t.is(chunker.avgBytes, 4 * MiB);
  t.is(chunker.minBytes, MiB);
  t.is(chunker.maxBytes, 16 * MiB);
  const small = new Chunker(AVG);
  t.is(small.minBytes, 16 * KiB);
  t.is(small.maxBytes, 256 * KiB);
  t.deepEqual(chunkLengths(new Uint8Array(0), AVG), []);
  t.deepEqual(chunkLengths(new Uint8Array(100), AVG), [100]);
});

test('invalid avgBytes is a RangeError', (t) => {
  for (const avg of [0, -65536, 1, 32 * KiB, 65535, 3 * 64 * KiB, 2 ** 29, 1.5, Number.NaN, 64 * KiB + 0.5]) {
    t.throws(() => new Chunker(avg), { instanceOf: RangeError }, `avgBytes ${avg}`);
    t.throws(() => chunkLengths(new Uint8Array(10), avg), { instanceOf: RangeError }, `avgBytes ${avg}`);
  }
  t.notThrows(() => new Chunker(64 * KiB));
  t.notThrows(() => new Chunker(2 ** 28));
});

// ---- properties ----

/** Inputs with different entropy: random, zeros, a small alphabet, a repeating pattern. */
function makeInput(kind: number, length: number, seed: number): Uint8Array {
  const random = xorshift32Bytes(length, seed);
  switch (kind) {
    case 0:
      return random;
    case 1:
      return Buffer.alloc(length);
    case 2:
      return random.map((b) => b & 0x03);
    default: {
      const period = (seed % 5000) + 1;
      return random.map((_, i) => random[i % period]!);
    }
  }
}

test('property: boundaries do not depend on how the input is split into scan() calls', (t) => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 0xffffffff }),
      fc.integer({ min: 0, max: 3 }),
      fc.integer({ min: 0, max: 768 * KiB }),
      fc.array(fc.oneof(fc.integer({ min: 1, max: 80 }), fc.integer({ min: 1, max: 300 * KiB })), {
        minLength: 1,
        maxLength: 12,
      }),
      (seed, kind, length, pieces) => {
        const data = makeInput(kind, length, seed);
        const whole = chunkLengths(data, AVG);
        const streamed = streamedLengths(data, AVG, pieces);
        if (JSON.stringify(whole) !== JSON.stringify(streamed)) {
          throw new Error(`whole ${whole} streamed ${streamed}`);
        }
      },
    ),
    { numRuns: 30 },
  );
  t.pass();
});

test('property: chunk lengths lie in [avg/4, avg*4] (last one ≤ avg*4) and sum to the input', (t) => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 0xffffffff }),
      fc.integer({ min: 0, max: 3 }),
      fc.integer({ min: 0, max: 1536 * KiB }),
      fc.constantFrom(64 * KiB, 128 * KiB),
      (seed, kind, length, avg) => {
        const lengths = chunkLengths(makeInput(kind, length, seed), avg);
        let sum = 0;
        lengths.forEach((l, i) => {
          sum += l;
          const last = i === lengths.length - 1;
          if (l > avg * 4 || l < (last ? 1 : avg / 4)) throw new Error(`chunk ${i} has length ${l}`);
        });
        if (sum !== length) throw new Error(`lengths sum to ${sum}, not ${length}`);
      },
    ),
    { numRuns: 30 },
  );
  t.pass();
});

function boundariesOf(lengths: readonly number[]): number[] {
  const out: number[] = [];
  let end = 0;
  for (const l of lengths) {
    end += l;
    out.push(end);
  }
  return out;
}

/** Applies an edit at `at`: overwrite, insert or delete `n` bytes. Returns the new data and the shift. */
function edit(data: Buffer, kind: 'overwrite' | 'insert' | 'delete', at: number, n: number) {
  const bytes = xorshift32Bytes(n, at + n + 12345).map((b) => b ^ 0x5a);
  switch (kind) {
    case 'overwrite': {
      const copy = Buffer.from(data);
      for (let i = 0; i < n; i++) copy[at + i] = copy[at + i]! ^ (bytes[i]! | 1);
      return { edited: copy, shift: 0 };
    }
    case 'insert':
      return { edited: Buffer.concat([data.subarray(0, at), bytes, data.subarray(at)]), shift: n };
    case 'delete':
      return { edited: Buffer.concat([data.subarray(0, at), data.subarray(at + n)]), shift: -n };
  }
}

const DEDUP_MARGIN = 1 * MiB; // four maximum-size chunks

test('property: a local edit leaves chunks far before and far after unchanged (dedup)', (t) => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 0xffffffff }),
      fc.constantFrom('overwrite' as const, 'insert' as const, 'delete' as const),
      fc.integer({ min: 1536 * KiB, max: 2 * MiB }),
      fc.integer({ min: 1, max: 100 }),
      (seed, kind, at, n) => {
        const data = xorshift32Bytes(4 * MiB, seed);
        const { edited, shift } = edit(data, kind, at, n);
        const before = boundariesOf(chunkLengths(data, AVG));
        const after = new Set(boundariesOf(chunkLengths(edited, AVG)));
        for (const b of before) {
          if (b <= at && !after.has(b)) throw new Error(`boundary ${b} before the edit at ${at} moved`);
          if (b >= at + n + DEDUP_MARGIN && b < data.length && !after.has(b + shift)) {
            throw new Error(`boundary ${b} far after the edit at ${at} did not move by ${shift}`);
          }
        }
      },
    ),
    { numRuns: 8 },
  );
  t.pass();
});

test('dedup example: one inserted byte in the middle of 4 MiB changes only the chunks around it', (t) => {
  const at = 2 * MiB + 12345;
  const { edited } = edit(XORSHIFT_4MIB, 'insert', at, 1);
  const key = (data: Buffer, lengths: number[]) => {
    const keys: string[] = [];
    let start = 0;
    for (const l of lengths) {
      keys.push(data.subarray(start, start + l).toString('base64'));
      start += l;
    }
    return keys;
  };
  const original = key(XORSHIFT_4MIB, chunkLengths(XORSHIFT_4MIB, AVG));
  const changed = key(edited, chunkLengths(edited, AVG));
  const shared = new Set(original);
  const fresh = changed.filter((c) => !shared.has(c));
  t.is(original.length, 67);
  t.true(fresh.length >= 1, 'the chunk holding the edit is new');
  t.true(fresh.length <= 2, `only the chunks around the edit are new, got ${fresh.length}`);
  t.true(changed.length - fresh.length >= 64, 'the rest deduplicates');
});
