import test from 'ava';
import { createImageStream, fillImage, type ImageSpec, imageBytes, randomBytes } from '../src/index.js';

type ErrorClass = typeof TypeError | typeof RangeError;

const BAD_SPECS: [name: string, spec: unknown, instanceOf: ErrorClass, message: RegExp][] = [
  ['negative size', { sizeBytes: -1, seed: 1 }, RangeError, /sizeBytes must be a non-negative safe integer/],
  [
    'fractional size',
    { sizeBytes: 1.5, seed: 1 },
    RangeError,
    /sizeBytes must be a non-negative safe integer/,
  ],
  [
    'size as a string',
    { sizeBytes: '10', seed: 1 },
    TypeError,
    /sizeBytes must be a non-negative safe integer/,
  ],
  ['unsafe seed', { sizeBytes: 1, seed: 2 ** 53 }, RangeError, /seed must be/],
  ['missing seed', { sizeBytes: 1 }, TypeError, /seed must be/],
  ['bad family', { sizeBytes: 1, seed: 1, family: -2 }, RangeError, /family must be/],
  ['negative weight', { sizeBytes: 1, seed: 1, mix: { zero: -1 } }, RangeError, /mix.zero must be/],
  ['all-zero mix', { sizeBytes: 1, seed: 1, mix: { zero: 0 } }, RangeError, /at least one positive weight/],
  ['unknown mix kind', { sizeBytes: 1, seed: 1, mix: { randm: 1 } }, TypeError, /unknown kind "randm"/],
  [
    'mutations not an array',
    { sizeBytes: 1, seed: 1, mutations: {} },
    TypeError,
    /mutations must be an array/,
  ],
  [
    'oversized mutation',
    { sizeBytes: 10, seed: 1, mutations: [{ seed: 1, changes: 2, changeBytes: 6 }] },
    RangeError,
    /must not exceed sizeBytes/,
  ],
  ['not an object', null, TypeError, /spec must be an ImageSpec/],
];

const rejects = test.macro({
  exec(t, spec: unknown, instanceOf: ErrorClass, message: RegExp) {
    const error = t.throws(() => imageBytes(spec as ImageSpec, 0, 0), { instanceOf });
    t.regex(error?.message ?? '', message);
  },
  title: (name = '') => `rejects a spec: ${name}`,
});

for (const [name, spec, instanceOf, message] of BAD_SPECS) test(name, rejects, spec, instanceOf, message);

test('ranges and options are validated', (t) => {
  const spec: ImageSpec = { sizeBytes: 100, seed: 1 };
  t.throws(() => fillImage(spec, new Uint8Array(101), 0), { instanceOf: RangeError });
  t.throws(() => fillImage(spec, [] as unknown as Uint8Array, 0), { instanceOf: TypeError });
  t.throws(() => imageBytes(spec, 0.5, 1), { instanceOf: RangeError });
  t.throws(() => createImageStream(spec, { highWaterMark: 0 }), { instanceOf: RangeError });
  t.throws(() => createImageStream(spec, { start: 5, end: 3 }), { instanceOf: RangeError });
  t.throws(() => randomBytes(1, -1), { instanceOf: RangeError });
});
