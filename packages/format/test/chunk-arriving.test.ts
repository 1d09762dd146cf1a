import { randomBytes } from 'node:crypto';
import test from 'ava';
import fc from 'fast-check';
import { decodeChunk, encodeChunk } from '../src/index.js';
import { ArrivingChunk, blobKind, canDecodeArriving, decodesArriving } from '../src/internal.js';

const napi = canDecodeArriving();
const streamTest = napi ? test : test.skip;

/** A 256 KiB chunk of text and random runs: compressible in parts. */
function chunkData(seed: number, bytes = 256 * 1024): Buffer {
  const out = Buffer.alloc(bytes);
  for (let at = 0; at < bytes; at += 4096) {
    const run = Math.min(4096, bytes - at);
    if ((at / 4096 + seed) % 3 === 0) randomBytes(run).copy(out, at);
    else out.write(`line ${seed} ${at} of a file that repeats itself\n`.repeat(100), at, run);
  }
  return out;
}

/** Feeds `blob` in pieces of the given sizes (cycled) and finishes. */
function arrive(blob: Uint8Array, digest: Uint8Array, length: number, pieces: readonly number[]): Buffer {
  const into = Buffer.alloc(length);
  const chunk = new ArrivingChunk(digest, into);
  for (let at = 0, k = 0; at < blob.byteLength; k++) {
    const n = Math.max(1, pieces[k % pieces.length]!);
    chunk.push(blob.subarray(at, at + n));
    at += n;
  }
  chunk.finish();
  return into;
}

/** The error code of running `f`, or 'ok'. */
function codeOf(f: () => unknown): string {
  try {
    f();
    return 'ok';
  } catch (err) {
    return String((err as { code?: unknown }).code);
  }
}

streamTest('a zstd chunk fed in any pieces decodes to its plaintext', (t) => {
  const plain = chunkData(1);
  const { digest, blob } = encodeChunk(plain, { compress: 'zstd' });
  t.true(decodesArriving(blobKind(blob)));
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 1, max: 70_000 }), { minLength: 1, maxLength: 8 }), (pieces) => {
      t.true(arrive(blob, digest, plain.byteLength, pieces).equals(plain));
    }),
    { numRuns: 40 },
  );
  t.true(arrive(blob, digest, plain.byteLength, [1]).equals(plain), 'byte by byte, the header split too');
});

test('an uncompressed chunk fed in pieces decodes without a zstd decoder', (t) => {
  const plain = randomBytes(100_000);
  const { digest, blob } = encodeChunk(plain, { compress: 'none' });
  t.true(arrive(blob, digest, plain.byteLength, [5, 4096, 333]).equals(plain));
});

test('deflate and encrypted blobs are not decoded as they arrive', (t) => {
  const { blob } = encodeChunk(chunkData(2), { compress: 'deflate' });
  t.false(decodesArriving(blobKind(blob)));
  t.throws(() => new ArrivingChunk(Buffer.alloc(32), Buffer.alloc(16)).push(blob), { instanceOf: TypeError });
});

streamTest('a damaged blob fails with the code decodeChunk gives it', (t) => {
  const plain = chunkData(3);
  const { digest, blob } = encodeChunk(plain, { compress: 'zstd' });
  const cases: [string, Buffer, Uint8Array, number][] = [];
  const payloadFlip = Buffer.from(blob);
  payloadFlip[200]! ^= 0x40;
  cases.push(['payload bit flipped', payloadFlip, digest, plain.byteLength]);
  const crcFlip = Buffer.from(blob);
  crcFlip[9]! ^= 1;
  cases.push(['CRC field flipped', crcFlip, digest, plain.byteLength]);
  cases.push(['cut short', blob.subarray(0, blob.byteLength - 100), digest, plain.byteLength]);
  cases.push(['header only', blob.subarray(0, 12), digest, plain.byteLength]);
  cases.push(['wrong digest', blob, Buffer.alloc(32, 7), plain.byteLength]);
  cases.push(['index expects more', blob, digest, plain.byteLength + 4096]);
  cases.push(['index expects less', blob, digest, plain.byteLength - 4096]);
  for (const [what, bad, want, length] of cases) {
    const whole = codeOf(() => {
      const out = decodeChunk(bad, want, { maxBytes: length });
      if (out.byteLength !== length)
        throw Object.assign(new Error('length'), { code: 'ERR_LR_CHUNK_LENGTH_MISMATCH' });
    });
    const arriving = codeOf(() => arrive(bad, want, length, [4096]));
    t.not(arriving, 'ok', what);
    t.is(arriving, whole, what);
  }
});
