import { createHash } from 'node:crypto';
import test from 'ava';
import { type ImageSpec, imageBytes, randomBytes } from '../src/index.js';
import { Xoshiro128 } from '../src/prng.js';

const MiB = 1024 * 1024;

function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

test('the same spec gives the same bytes', (t) => {
  const spec: ImageSpec = { sizeBytes: 80 * MiB, seed: 42 };
  t.true(imageBytes(spec, 3 * MiB + 5, 9 * MiB).equals(imageBytes({ ...spec }, 3 * MiB + 5, 9 * MiB)));
});

test('different seeds give different bytes', (t) => {
  const a = imageBytes({ sizeBytes: 64 * MiB, seed: 1, mix: { text: 1, random: 1 } }, 0, 4 * MiB);
  const b = imageBytes({ sizeBytes: 64 * MiB, seed: 2, mix: { text: 1, random: 1 } }, 0, 4 * MiB);
  t.false(a.equals(b));
});

test('an image is a prefix of a larger image with the same seed', (t) => {
  const small = imageBytes({ sizeBytes: 5 * MiB + 123, seed: 9 }, 0, 5 * MiB + 123);
  const large = imageBytes({ sizeBytes: 70 * MiB, seed: 9 }, 0, 5 * MiB + 123);
  t.true(small.equals(large));
});

// Golden digests: the bytes must never change across runs, machines or Node
// versions, or stored test fixtures and benchmark baselines silently stop matching.
// Change these only together with a deliberate format change of the testkit.
const GOLDEN: { name: string; spec: ImageSpec; offsetBytes: number; lengthBytes: number; sha256: string }[] =
  [
    {
      name: 'default mix',
      spec: { sizeBytes: 256 * MiB, seed: 1 },
      offsetBytes: 0,
      lengthBytes: 16 * MiB,
      sha256: 'ea413c683bc4aca89ca897c90e410ef93b1897d2c1d7c179f9ee69442a57f57a',
    },
    {
      name: 'text',
      spec: { sizeBytes: 8 * MiB, seed: 2, mix: { text: 1 } },
      offsetBytes: 1000,
      lengthBytes: 2 * MiB,
      sha256: '464673966c39fb527f19c2cc985439ef5cc00067d8153d0541738c21e35a88fd',
    },
    {
      name: 'random',
      spec: { sizeBytes: 8 * MiB, seed: 3, mix: { random: 1 } },
      offsetBytes: 7,
      lengthBytes: MiB,
      sha256: '31026cca63b80882ec8351bb7682126f89291115f07cd8173c9be7e531eccecf',
    },
    {
      name: 'repeat',
      spec: { sizeBytes: 8 * MiB, seed: 4, family: 5, mix: { repeat: 1 } },
      offsetBytes: 0,
      lengthBytes: 8 * MiB,
      sha256: 'a0bf6c8c6a62dc0874ff92c36cc36403a2befe88a26e26ee532eff6e4d1c03af',
    },
    {
      name: 'mutated, 53-bit seed',
      spec: {
        sizeBytes: 300 * MiB,
        seed: Number.MAX_SAFE_INTEGER,
        mutations: [{ seed: 6, changes: 1000, changeBytes: 512 }],
      },
      offsetBytes: 200 * MiB,
      lengthBytes: 4 * MiB,
      sha256: 'd684a101d1576bd8c513d099b4fcab26db44470387de2ee1b11d261da147a0dd',
    },
  ];

for (const golden of GOLDEN) {
  test(`golden digest: ${golden.name}`, (t) => {
    const digest = sha256(imageBytes(golden.spec, golden.offsetBytes, golden.lengthBytes));
    t.is(digest, golden.sha256);
  });
}

test('golden digest: randomBytes', (t) => {
  t.is(
    randomBytes(1, 32).toString('hex'),
    'e1959ba2c8338c9ceaab3b9fd2292b2ba5d086d9d7c24f6f2d137017f32fb799',
  );
});

test('the PRNG is the reference xoshiro128**', (t) => {
  // First outputs of the reference C implementation from state {1, 2, 3, 4}.
  const expected = [
    11520, 0, 5927040, 70819200, 2031721883, 1637235492, 1287239034, 3734860849, 3729100597, 4258142804,
  ];
  const rng = new Xoshiro128(1, 2, 3, 4);
  t.deepEqual(
    expected.map(() => rng.nextUint32()),
    expected,
  );
  const words = new Int32Array(expected.length);
  new Xoshiro128(1, 2, 3, 4).fill(words);
  t.deepEqual(
    Array.from(words, (w) => w >>> 0),
    expected,
  );
});

test('randomBytes is deterministic and prefix-stable', (t) => {
  t.true(randomBytes(7, 1001).equals(randomBytes(7, 1001)));
  t.true(randomBytes(7, 1001).equals(randomBytes(7, 5000).subarray(0, 1001)));
  t.false(randomBytes(7, 64).equals(randomBytes(8, 64)));
  t.is(randomBytes(7, 0).length, 0);
});
