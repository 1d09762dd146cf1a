import { createHash } from 'node:crypto';
import test from 'ava';
import fc from 'fast-check';
import {
  type ChunkIndex,
  DEFAULT_FIXED_CHUNK_BYTES,
  DynamicIndex,
  FixedIndex,
  readDynamicIndex,
  readFixedIndex,
  readIndex,
  writeDynamicIndex,
  writeFixedIndex,
} from '../src/index.js';
import { DYNAMIC_ENTRY_BYTES, INDEX_HEADER_BYTES } from '../src/internal.js';
import { atOddOffset } from './helpers.js';

const FIXED_MAGIC = [47, 127, 65, 237, 145, 253, 15, 205];
const DYNAMIC_MAGIC = [28, 145, 78, 165, 25, 186, 179, 205];
const KiB = 1024;
const MiB = 1024 * KiB;
const UUID = Buffer.from('00112233445566778899aabbccddeeff', 'hex');

function sha256(data: Uint8Array): Buffer {
  return createHash('sha256').update(data).digest();
}

/** Digest number i: recognisable and distinct. */
function digestNo(i: number): Buffer {
  return sha256(Buffer.from(`chunk ${i}`));
}

function digestsOf(count: number): Buffer {
  return Buffer.concat(Array.from({ length: count }, (_, i) => digestNo(i)));
}

// ---- fixed index ----

function fixedSample(sizeBytes = 3 * 64 * KiB + 100, chunkSizeBytes = 64 * KiB): Buffer {
  const count = Math.ceil(sizeBytes / chunkSizeBytes);
  return writeFixedIndex({
    sizeBytes,
    chunkSizeBytes,
    digests: digestsOf(count),
    ctime: 1623146298,
    uuid: UUID,
  });
}

/** Rewrites index_csum of a fixed index so a test can isolate another check. */
function withFixedCsum(fidx: Buffer): Buffer {
  sha256(fidx.subarray(INDEX_HEADER_BYTES)).copy(fidx, 32);
  return fidx;
}

test('fixed index header fields sit at the offsets of formats.md', (t) => {
  const size = 3 * 64 * KiB + 100;
  const fidx = fixedSample(size);
  const digests = digestsOf(4);
  t.is(INDEX_HEADER_BYTES, 4096);
  t.is(fidx.byteLength, 4096 + 4 * 32);
  t.deepEqual([...fidx.subarray(0, 8)], FIXED_MAGIC);
  t.deepEqual(fidx.subarray(8, 24), UUID);
  t.is(fidx.readBigInt64LE(24), 1623146298n);
  t.deepEqual(fidx.subarray(32, 64), sha256(digests), 'index_csum = SHA-256(d1 ‖ d2 ‖ …)');
  t.is(fidx.readBigUInt64LE(64), BigInt(size));
  t.is(fidx.readBigUInt64LE(72), 65536n);
  t.true(
    fidx.subarray(80, 4096).every((b) => b === 0),
    'reserved bytes are zero',
  );
  t.deepEqual(fidx.subarray(4096), digests);
});

test('fixed index write → read round trip', (t) => {
  const size = 3 * 64 * KiB + 100;
  const index = readFixedIndex(fixedSample(size));
  t.true(index instanceof FixedIndex);
  t.is(index.kind, 'fixed');
  t.deepEqual(index.uuid, UUID);
  t.is(index.ctime, 1623146298);
  t.deepEqual(index.indexCsum, sha256(digestsOf(4)));
  t.is(index.sizeBytes, size);
  t.is(index.chunkSizeBytes, 64 * KiB);
  t.is(index.chunkCount, 4);
  for (let i = 0; i < 4; i++) {
    t.deepEqual(index.digestAt(i), digestNo(i));
    t.is(index.chunkStart(i), i * 64 * KiB);
  }
  t.is(index.chunkEnd(2), 3 * 64 * KiB);
  t.is(index.chunkEnd(3), size, 'the last chunk is short');
  t.is(index.chunkIndexAt(0), 0);
  t.is(index.chunkIndexAt(64 * KiB - 1), 0);
  t.is(index.chunkIndexAt(64 * KiB), 1);
  t.is(index.chunkIndexAt(size - 1), 3);
  t.deepEqual(readFixedIndex(atOddOffset(fixedSample(size))).indexCsum, index.indexCsum);
});

test('fixed index: negative ctime, empty image, exact multiple, default 4 MiB chunks', (t) => {
  const neg = readFixedIndex(
    writeFixedIndex({ sizeBytes: 64 * KiB, chunkSizeBytes: 64 * KiB, digests: digestsOf(1), ctime: -5 }),
  );
  t.is(neg.ctime, -5);
  const empty = readFixedIndex(
    writeFixedIndex({ sizeBytes: 0, chunkSizeBytes: 64 * KiB, digests: Buffer.alloc(0) }),
  );
  t.is(empty.chunkCount, 0);
  t.is(empty.sizeBytes, 0);
  t.deepEqual(empty.indexCsum, sha256(Buffer.alloc(0)));
  const exact = readFixedIndex(fixedSample(8 * MiB, 4 * MiB));
  t.is(exact.chunkCount, 2);
  t.is(exact.chunkEnd(1), 8 * MiB);
  t.is(DEFAULT_FIXED_CHUNK_BYTES, 4 * MiB);
  const uuid = readFixedIndex(
    writeFixedIndex({ sizeBytes: 1, chunkSizeBytes: 64 * KiB, digests: digestsOf(1) }),
  ).uuid;
  t.is(uuid.byteLength, 16);
  t.false(
    uuid.every((b) => b === 0),
    'a random uuid by default',
  );
});

test('writeFixedIndex rejects bad arguments with RangeError', (t) => {
  const digests = digestsOf(1);
  for (const chunkSizeBytes of [0, 32 * KiB, 96 * KiB, 8 * MiB, 64 * KiB + 0.5]) {
    t.throws(() => writeFixedIndex({ sizeBytes: 1, chunkSizeBytes, digests }), { instanceOf: RangeError });
  }
  t.throws(() => writeFixedIndex({ sizeBytes: -1, chunkSizeBytes: 64 * KiB, digests }), {
    instanceOf: RangeError,
  });
  t.throws(() => writeFixedIndex({ sizeBytes: 64 * KiB + 1, chunkSizeBytes: 64 * KiB, digests }), {
    instanceOf: RangeError,
  });
  t.throws(
    () => writeFixedIndex({ sizeBytes: 1, chunkSizeBytes: 64 * KiB, digests, uuid: Buffer.alloc(15) }),
    {
      instanceOf: RangeError,
    },
  );
});

test('fixed index: shorter than its header is ERR_LR_INDEX_TRUNCATED', (t) => {
  const fidx = fixedSample();
  for (const length of [0, 8, 4095]) {
    t.throws(() => readFixedIndex(fidx.subarray(0, length)), { code: 'ERR_LR_INDEX_TRUNCATED' });
  }
});

test('fixed index: wrong magic is ERR_LR_BAD_MAGIC', (t) => {
  const fidx = fixedSample();
  Buffer.from(DYNAMIC_MAGIC).copy(fidx, 0);
  t.throws(() => readFixedIndex(fidx), { code: 'ERR_LR_BAD_MAGIC' });
  const flipped = fixedSample();
  flipped[7] = flipped[7]! ^ 1;
  t.throws(() => readFixedIndex(flipped), { code: 'ERR_LR_BAD_MAGIC' });
});

test('fixed index: chunk size zero or not a power of two is ERR_LR_INDEX_BAD_CHUNK_SIZE', (t) => {
  for (const chunkSize of [0n, 3n * 65536n, 65535n, 65537n, 2n ** 40n]) {
    const fidx = fixedSample();
    fidx.writeBigUInt64LE(chunkSize, 72);
    t.throws(() => readFixedIndex(fidx), { code: 'ERR_LR_INDEX_BAD_CHUNK_SIZE' }, `chunk size ${chunkSize}`);
  }
});

test('fixed index: file length ≠ 4096 + ceil(size/chunk)·32 is ERR_LR_INDEX_LENGTH_MISMATCH', (t) => {
  const fidx = fixedSample();
  const extra = withFixedCsum(Buffer.concat([fidx, digestNo(99)]));
  t.throws(() => readFixedIndex(extra), { code: 'ERR_LR_INDEX_LENGTH_MISMATCH' });
  const short = withFixedCsum(Buffer.from(fidx.subarray(0, fidx.byteLength - 32)));
  t.throws(() => readFixedIndex(short), { code: 'ERR_LR_INDEX_LENGTH_MISMATCH' });
  const ragged = Buffer.from(fidx.subarray(0, fidx.byteLength - 1));
  t.throws(() => readFixedIndex(ragged), { code: 'ERR_LR_INDEX_LENGTH_MISMATCH' });
  const bigger = fixedSample();
  bigger.writeBigUInt64LE(4n * 65536n + 1n, 64); // needs 5 digests, has 4
  t.throws(() => readFixedIndex(bigger), { code: 'ERR_LR_INDEX_LENGTH_MISMATCH' });
  const halfChunk = fixedSample();
  halfChunk.writeBigUInt64LE(32768n, 72); // twice the digests needed
  t.throws(() => readFixedIndex(halfChunk), { code: 'ERR_LR_INDEX_LENGTH_MISMATCH' });
});

test('fixed index: a changed digest or checksum is ERR_LR_INDEX_CSUM_MISMATCH', (t) => {
  for (const at of [32, 63, 4096, 4096 + 3 * 32 + 31]) {
    const fidx = fixedSample();
    fidx[at] = fidx[at]! ^ 0x10;
    t.throws(() => readFixedIndex(fidx), { code: 'ERR_LR_INDEX_CSUM_MISMATCH' }, `byte ${at}`);
  }
});

test('fixed index: a size beyond 2^53 is ERR_LR_INDEX_CORRUPT', (t) => {
  const fidx = fixedSample();
  fidx.writeBigUInt64LE(2n ** 60n, 64);
  t.throws(() => readFixedIndex(fidx), { code: 'ERR_LR_INDEX_CORRUPT' });
});

// ---- dynamic index ----

const ENDS = [100, 70_000, 70_001, 300_000];

function dynamicSample(ends: readonly number[] = ENDS): Buffer {
  return writeDynamicIndex({
    entries: ends.map((endOffset, i) => ({ endOffset, digest: digestNo(i) })),
    ctime: 1623146298,
    uuid: UUID,
  });
}

/** The entries region built by hand: end_le ‖ digest per chunk. */
function entriesOf(ends: readonly number[]): Buffer {
  return Buffer.concat(
    ends.map((end, i) => {
      const le = Buffer.alloc(8);
      le.writeBigUInt64LE(BigInt(end));
      return Buffer.concat([le, digestNo(i)]);
    }),
  );
}

function withDynamicCsum(didx: Buffer): Buffer {
  sha256(didx.subarray(INDEX_HEADER_BYTES)).copy(didx, 32);
  return didx;
}

test('dynamic index header fields and entries sit at the offsets of formats.md', (t) => {
  const didx = dynamicSample();
  const entries = entriesOf(ENDS);
  t.is(DYNAMIC_ENTRY_BYTES, 40);
  t.is(didx.byteLength, 4096 + ENDS.length * 40);
  t.deepEqual([...didx.subarray(0, 8)], DYNAMIC_MAGIC);
  t.deepEqual(didx.subarray(8, 24), UUID);
  t.is(didx.readBigInt64LE(24), 1623146298n);
  t.deepEqual(didx.subarray(32, 64), sha256(entries), 'index_csum = SHA-256(end1_le ‖ d1 ‖ …)');
  t.true(
    didx.subarray(64, 4096).every((b) => b === 0),
    'reserved bytes are zero',
  );
  t.deepEqual(didx.subarray(4096), entries);
  t.is(didx.readBigUInt64LE(4096 + 40 * 2), 70_001n);
  t.deepEqual(didx.subarray(4096 + 40 * 3 + 8, 4096 + 40 * 4), digestNo(3));
});

test('dynamic index write → read round trip', (t) => {
  const index = readDynamicIndex(dynamicSample());
  t.true(index instanceof DynamicIndex);
  t.is(index.kind, 'dynamic');
  t.deepEqual(index.uuid, UUID);
  t.is(index.ctime, 1623146298);
  t.deepEqual(index.indexCsum, sha256(entriesOf(ENDS)));
  t.is(index.sizeBytes, 300_000);
  t.is(index.chunkCount, 4);
  t.deepEqual([...index.ends], ENDS);
  const starts = [0, 100, 70_000, 70_001];
  for (let i = 0; i < 4; i++) {
    t.deepEqual(index.digestAt(i), digestNo(i));
    t.is(index.chunkStart(i), starts[i]!);
    t.is(index.chunkEnd(i), ENDS[i]!);
  }
  t.is(index.chunkIndexAt(99), 0);
  t.is(index.chunkIndexAt(100), 1);
  t.is(index.chunkIndexAt(70_000), 2, 'a one-byte chunk');
  t.is(index.chunkIndexAt(70_001), 3);
  t.is(index.chunkIndexAt(299_999), 3);
  t.is(readDynamicIndex(atOddOffset(dynamicSample())).sizeBytes, 300_000);
});

test('dynamic index: empty, and end offsets above 2^32', (t) => {
  const empty = readDynamicIndex(dynamicSample([]));
  t.is(empty.chunkCount, 0);
  t.is(empty.sizeBytes, 0);
  t.throws(() => empty.chunkIndexAt(0), { instanceOf: RangeError });
  const ends = [2 ** 32 + 5, 2 ** 40, 2 ** 53 - 1];
  const big = readDynamicIndex(dynamicSample(ends));
  t.deepEqual([...big.ends], ends);
  t.is(big.chunkIndexAt(2 ** 32 + 4), 0);
  t.is(big.chunkIndexAt(2 ** 32 + 5), 1);
  t.is(big.chunkIndexAt(2 ** 53 - 2), 2);
});

test('writeDynamicIndex rejects bad entries with RangeError', (t) => {
  const d = digestNo(0);
  const bad: Array<Array<{ endOffset: number; digest: Uint8Array }>> = [
    [{ endOffset: 0, digest: d }],
    [
      { endOffset: 10, digest: d },
      { endOffset: 10, digest: d },
    ],
    [
      { endOffset: 10, digest: d },
      { endOffset: 9, digest: d },
    ],
    [{ endOffset: 1.5, digest: d }],
    [{ endOffset: 2 ** 53, digest: d }],
    [{ endOffset: 10, digest: d.subarray(0, 31) }],
  ];
  for (const entries of bad) t.throws(() => writeDynamicIndex({ entries }), { instanceOf: RangeError });
  t.throws(() => writeDynamicIndex({ entries: [], uuid: Buffer.alloc(17) }), { instanceOf: RangeError });
});

test('dynamic index: shorter than its header is ERR_LR_INDEX_TRUNCATED', (t) => {
  const didx = dynamicSample();
  for (const length of [0, 8, 4095]) {
    t.throws(() => readDynamicIndex(didx.subarray(0, length)), { code: 'ERR_LR_INDEX_TRUNCATED' });
  }
});

test('dynamic index: wrong magic is ERR_LR_BAD_MAGIC', (t) => {
  const didx = dynamicSample();
  Buffer.from(FIXED_MAGIC).copy(didx, 0);
  t.throws(() => readDynamicIndex(didx), { code: 'ERR_LR_BAD_MAGIC' });
});

test('dynamic index: entries not a multiple of 40 bytes is ERR_LR_INDEX_LENGTH_MISMATCH', (t) => {
  const didx = dynamicSample();
  for (const cut of [1, 8, 39]) {
    const short = withDynamicCsum(Buffer.from(didx.subarray(0, didx.byteLength - cut)));
    t.throws(() => readDynamicIndex(short), { code: 'ERR_LR_INDEX_LENGTH_MISMATCH' }, `cut ${cut}`);
  }
});

test('dynamic index: non-increasing end offsets are ERR_LR_INDEX_CORRUPT (even with a valid csum)', (t) => {
  const cases: Array<[string, number, bigint]> = [
    ['equal to the previous', 2, 70_000n],
    ['decreasing', 2, 50n],
    ['first end 0 (an empty chunk)', 0, 0n],
    ['beyond 2^53', 3, 2n ** 60n],
  ];
  for (const [what, entry, end] of cases) {
    const didx = dynamicSample();
    didx.writeBigUInt64LE(end, 4096 + entry * 40);
    withDynamicCsum(didx);
    t.throws(() => readDynamicIndex(didx), { code: 'ERR_LR_INDEX_CORRUPT' }, what);
  }
});

test('dynamic index: a changed entry or checksum is ERR_LR_INDEX_CSUM_MISMATCH', (t) => {
  for (const at of [32, 63, 4096 + 8, 4096 + 40 * 3 + 39]) {
    const didx = dynamicSample();
    didx[at] = didx[at]! ^ 0x04;
    t.throws(() => readDynamicIndex(didx), { code: 'ERR_LR_INDEX_CSUM_MISMATCH' }, `byte ${at}`);
  }
  const moved = dynamicSample();
  moved.writeBigUInt64LE(70_002n, 4096 + 40 * 2); // still increasing, so only the csum catches it
  t.throws(() => readDynamicIndex(moved), { code: 'ERR_LR_INDEX_CSUM_MISMATCH' });
});

// ---- readIndex dispatch ----

test('readIndex dispatches on the magic', (t) => {
  const fixed = readIndex(fixedSample());
  t.true(fixed instanceof FixedIndex);
  t.is(fixed.kind, 'fixed');
  const dynamic = readIndex(dynamicSample());
  t.true(dynamic instanceof DynamicIndex);
  t.is(dynamic.kind, 'dynamic');
  t.is(readIndex(atOddOffset(dynamicSample())).kind, 'dynamic');
  t.is(readIndex(atOddOffset(fixedSample())).kind, 'fixed');
});

test('readIndex: unknown magic is ERR_LR_BAD_MAGIC, fewer than 8 bytes ERR_LR_INDEX_TRUNCATED', (t) => {
  t.throws(() => readIndex(Buffer.alloc(4096 + 32)), { code: 'ERR_LR_BAD_MAGIC' });
  const blobMagic = Buffer.alloc(4096);
  blobMagic.set([66, 171, 56, 7, 190, 131, 112, 161]);
  t.throws(() => readIndex(blobMagic), { code: 'ERR_LR_BAD_MAGIC' });
  t.throws(() => readIndex(Buffer.alloc(20)), { code: 'ERR_LR_BAD_MAGIC' });
  for (const length of [0, 3, 7]) {
    t.throws(() => readIndex(Buffer.from(FIXED_MAGIC).subarray(0, length)), {
      code: 'ERR_LR_INDEX_TRUNCATED',
    });
  }
  t.throws(() => readIndex(fixedSample().subarray(0, 100)), { code: 'ERR_LR_INDEX_TRUNCATED' });
  t.throws(() => readIndex(dynamicSample().subarray(0, 8)), { code: 'ERR_LR_INDEX_TRUNCATED' });
});

// ---- lookups: property tests against a linear-scan model ----

/** Reference model: chunk i covers [starts[i], ends[i]); find it by scanning. */
function linearChunkOf(ends: readonly number[], offset: number): number {
  let start = 0;
  for (let i = 0; i < ends.length; i++) {
    if (start <= offset && offset < ends[i]!) return i;
    start = ends[i]!;
  }
  return -1;
}

function fixedEnds(sizeBytes: number, chunkSizeBytes: number): number[] {
  const ends: number[] = [];
  for (let end = chunkSizeBytes; end < sizeBytes; end += chunkSizeBytes) ends.push(end);
  if (sizeBytes > 0) ends.push(sizeBytes);
  return ends;
}

function checkLookups(index: ChunkIndex, ends: readonly number[], offsets: readonly number[]): void {
  const size = ends.length === 0 ? 0 : ends[ends.length - 1]!;
  if (index.sizeBytes !== size || index.chunkCount !== ends.length) throw new Error('size or count differs');
  for (let i = 0; i < ends.length; i++) {
    if (index.chunkEnd(i) !== ends[i]) throw new Error(`chunkEnd(${i})`);
    if (index.chunkStart(i) !== (i === 0 ? 0 : ends[i - 1])) throw new Error(`chunkStart(${i})`);
    if (!index.digestAt(i).equals(digestNo(i))) throw new Error(`digestAt(${i})`);
  }
  for (const offset of offsets) {
    const expected = linearChunkOf(ends, offset);
    const actual = index.chunkIndexAt(offset);
    if (actual !== expected) throw new Error(`chunkIndexAt(${offset}) = ${actual}, model says ${expected}`);
    if (!(index.chunkStart(actual) <= offset && offset < index.chunkEnd(actual))) {
      throw new Error(`offset ${offset} outside chunk ${actual}`);
    }
  }
  for (const bad of [-1, size, size + 1, 0.5, Number.NaN, Number.POSITIVE_INFINITY]) {
    let threw = false;
    try {
      index.chunkIndexAt(bad);
    } catch (err) {
      threw = err instanceof RangeError;
    }
    if (!threw) throw new Error(`chunkIndexAt(${bad}) did not throw RangeError`);
  }
  for (const bad of [-1, ends.length, 0.5]) {
    for (const call of [() => index.chunkStart(bad), () => index.chunkEnd(bad), () => index.digestAt(bad)]) {
      let threw = false;
      try {
        call();
      } catch (err) {
        threw = err instanceof RangeError;
      }
      if (!threw) throw new Error(`chunk number ${bad} did not throw RangeError`);
    }
  }
}

/** Offsets worth probing: both sides of every boundary, plus random ones. */
function probeOffsets(ends: readonly number[], randomFractions: readonly number[]): number[] {
  const size = ends.length === 0 ? 0 : ends[ends.length - 1]!;
  const offsets = new Set<number>([0]);
  for (const end of ends) {
    offsets.add(end - 1);
    if (end < size) offsets.add(end);
  }
  for (const f of randomFractions) offsets.add(Math.floor(f * size));
  return [...offsets].filter((o) => o >= 0 && o < size);
}

const fractions = fc.array(fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), { maxLength: 20 });

test('property: fixed index lookups agree with a linear scan', (t) => {
  fc.assert(
    fc.property(
      fc
        .integer({ min: 16, max: 22 })
        .chain((log2) =>
          fc.tuple(fc.constant(2 ** log2), fc.integer({ min: 1, max: 2 ** log2 * 40 }), fractions),
        ),
      ([chunkSizeBytes, sizeBytes, randomFractions]) => {
        const count = Math.ceil(sizeBytes / chunkSizeBytes);
        const index = readIndex(
          writeFixedIndex({ sizeBytes, chunkSizeBytes, digests: digestsOf(count), uuid: UUID }),
        );
        const ends = fixedEnds(sizeBytes, chunkSizeBytes);
        checkLookups(index, ends, probeOffsets(ends, randomFractions));
      },
    ),
    { numRuns: 150 },
  );
  t.pass();
});

test('property: dynamic index lookups agree with a linear scan', (t) => {
  fc.assert(
    fc.property(
      fc.array(fc.oneof(fc.integer({ min: 1, max: 64 }), fc.integer({ min: 1, max: 2 ** 36 })), {
        minLength: 1,
        maxLength: 60,
      }),
      fractions,
      (lengths, randomFractions) => {
        const ends: number[] = [];
        let end = 0;
        for (const length of lengths) {
          end += length;
          ends.push(end);
        }
        const index = readIndex(
          writeDynamicIndex({ entries: ends.map((endOffset, i) => ({ endOffset, digest: digestNo(i) })) }),
        );
        checkLookups(index, ends, probeOffsets(ends, randomFractions));
      },
    ),
    { numRuns: 150 },
  );
  t.pass();
});

test('lookup helpers detect a wrong index (the model is not vacuous)', (t) => {
  // An index for chunk size 64 KiB checked against the ends of 128 KiB chunks must fail.
  const index = readIndex(fixedSample(4 * 64 * KiB, 64 * KiB));
  t.throws(() => checkLookups(index, fixedEnds(4 * 64 * KiB, 128 * KiB), [70 * KiB]));
  t.notThrows(() => checkLookups(index, fixedEnds(4 * 64 * KiB, 64 * KiB), [70 * KiB]));
});
