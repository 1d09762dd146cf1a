import { buffer } from 'node:stream/consumers';
import test from 'ava';
import {
  BLOCK_BYTES,
  createImageStream,
  fillImage,
  type ImageSpec,
  imageBytes,
  imageRegions,
  randomBytes,
} from '../src/index.js';

const MiB = 1024 * 1024;

// Crosses the 64 MiB extent border and ends in a partial block.
const SPEC: ImageSpec = {
  sizeBytes: 72 * MiB + 12345,
  seed: 2024,
  mutations: [{ seed: 3, changes: 40, changeBytes: 3000 }],
};

const whole = buffer(createImageStream(SPEC));

test('the stream has exactly sizeBytes bytes', async (t) => {
  t.is((await whole).length, SPEC.sizeBytes);
  for (const sizeBytes of [0, 1, BLOCK_BYTES - 1, BLOCK_BYTES, BLOCK_BYTES + 1, 3 * BLOCK_BYTES + 17]) {
    const bytes = await buffer(
      createImageStream({ sizeBytes, seed: 5, mix: { random: 1 } }, { highWaterMark: 10_000 }),
    );
    t.is(bytes.length, sizeBytes);
  }
});

test('random access equals streaming at random offsets and lengths', async (t) => {
  const all = await whole;
  const rng = randomBytes(11, 4 * 400);
  for (let i = 0; i < 200; i++) {
    const a = rng.readUInt32LE(8 * i) / 2 ** 32;
    const b = rng.readUInt32LE(8 * i + 4) / 2 ** 32;
    const lengthBytes = Math.floor(b * b * 3 * MiB);
    const offsetBytes = Math.floor(a * (SPEC.sizeBytes - lengthBytes));
    const got = imageBytes(SPEC, offsetBytes, lengthBytes);
    if (!got.equals(all.subarray(offsetBytes, offsetBytes + lengthBytes))) {
      t.fail(`mismatch at [${offsetBytes}, +${lengthBytes})`);
      return;
    }
  }
  t.pass();
});

test('random access equals streaming across every region border', async (t) => {
  const all = await whole;
  const regions = imageRegions(SPEC);
  t.true(regions.length > 10);
  for (const region of regions.slice(1)) {
    const offsetBytes = region.offsetBytes - 777;
    const got = imageBytes(SPEC, offsetBytes, 777 + 1234);
    t.true(
      got.equals(all.subarray(offsetBytes, offsetBytes + 777 + 1234)),
      `border at ${region.offsetBytes}`,
    );
  }
});

test('fillImage works into unaligned views and at the last byte', async (t) => {
  const all = await whole;
  const backing = Buffer.alloc(BLOCK_BYTES * 3 + 8);
  const view = backing.subarray(3, 3 + BLOCK_BYTES * 3);
  fillImage(SPEC, view, 5 * BLOCK_BYTES);
  t.true(view.equals(all.subarray(5 * BLOCK_BYTES, 8 * BLOCK_BYTES)));
  t.is(backing[0], 0);
  t.is(backing[backing.length - 1], 0);
  t.true(imageBytes(SPEC, SPEC.sizeBytes - 1, 1).equals(all.subarray(-1)));
  t.is(imageBytes(SPEC, SPEC.sizeBytes, 0).length, 0);
});

test('streams honour start and an inclusive end, in any piece size', async (t) => {
  const all = await whole;
  const start = 3 * MiB - 11;
  const end = 9 * MiB + 4;
  for (const highWaterMark of [1, 4096, 65_537, 4 * MiB]) {
    if (highWaterMark === 1) {
      const tiny = await buffer(createImageStream(SPEC, { start, end: start + 99, highWaterMark }));
      t.true(tiny.equals(all.subarray(start, start + 100)));
      continue;
    }
    const got = await buffer(createImageStream(SPEC, { start, end, highWaterMark }));
    t.true(got.equals(all.subarray(start, end + 1)), `highWaterMark ${highWaterMark}`);
  }
  t.is((await buffer(createImageStream(SPEC, { start: 10, end: 9 }))).length, 0);
  const tail = await buffer(createImageStream(SPEC, { start: SPEC.sizeBytes - 5 }));
  t.true(tail.equals(all.subarray(-5)));
});

test('reads past the end are rejected', (t) => {
  t.throws(() => imageBytes(SPEC, SPEC.sizeBytes - 1, 2), { instanceOf: RangeError });
  t.throws(() => createImageStream(SPEC, { end: SPEC.sizeBytes }), { instanceOf: RangeError });
  t.throws(() => imageBytes(SPEC, -1, 1), { instanceOf: RangeError });
});
