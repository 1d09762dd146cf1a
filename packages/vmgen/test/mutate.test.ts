import test from 'ava';
import { changedRanges, type ImageSpec, imageBytes, mutate } from '../src/index.js';

const MiB = 1024 * 1024;
const BASE: ImageSpec = { sizeBytes: 48 * MiB + 99, seed: 500 };

/** Every byte inside `ranges` differs between `a` and `b`, and every byte outside is equal. */
function assertChangedExactly(
  a: Buffer,
  b: Buffer,
  ranges: readonly { offsetBytes: number; lengthBytes: number }[],
): string | undefined {
  let pos = 0;
  for (const r of ranges) {
    if (!a.subarray(pos, r.offsetBytes).equals(b.subarray(pos, r.offsetBytes)))
      return `bytes before ${r.offsetBytes} changed`;
    for (let i = r.offsetBytes; i < r.offsetBytes + r.lengthBytes; i++) {
      if (a[i] === b[i]) return `byte ${i} in a changed range is unchanged`;
    }
    pos = r.offsetBytes + r.lengthBytes;
  }
  return a.subarray(pos).equals(b.subarray(pos)) ? undefined : `bytes after ${pos} changed`;
}

test('mutate changes every byte of the reported ranges and nothing else', (t) => {
  const mutated = mutate(BASE, { seed: 1, changes: 37, changeBytes: 5000 });
  const ranges = changedRanges(mutated);
  t.is(ranges.length, 37);
  for (let i = 1; i < ranges.length; i++) {
    const prev = ranges[i - 1];
    const cur = ranges[i];
    if (prev === undefined || cur === undefined) throw new Error('unreachable');
    t.true(prev.offsetBytes + prev.lengthBytes <= cur.offsetBytes, 'sorted and disjoint');
  }
  const base = imageBytes(BASE, 0, BASE.sizeBytes);
  const after = imageBytes(mutated, 0, BASE.sizeBytes);
  t.is(assertChangedExactly(base, after, ranges), undefined);
});

test('mutations are deterministic, JSON-serialisable, and leave the base spec alone', (t) => {
  const a = mutate(BASE, { seed: 2, changes: 5 });
  const b = JSON.parse(JSON.stringify(mutate(BASE, { seed: 2, changes: 5 }))) as ImageSpec;
  t.deepEqual(changedRanges(a), changedRanges(b));
  t.true(imageBytes(a, 0, MiB).equals(imageBytes(b, 0, MiB)));
  t.is(BASE.mutations, undefined);
  t.deepEqual(changedRanges(BASE), []);
  t.true(changedRanges(a).every((r) => r.lengthBytes === 4096));
});

test('random access into a mutated image matches the whole image, across range edges', (t) => {
  const mutated = mutate(BASE, { seed: 3, changes: 10, changeBytes: 200_000 });
  const whole = imageBytes(mutated, 0, BASE.sizeBytes);
  for (const r of changedRanges(mutated)) {
    for (const [from, to] of [
      [r.offsetBytes - 10, r.offsetBytes + 10],
      [r.offsetBytes + 65_530, r.offsetBytes + 65_560],
      [r.offsetBytes + r.lengthBytes - 3, r.offsetBytes + r.lengthBytes + 3],
    ] as const) {
      t.true(imageBytes(mutated, from, to - from).equals(whole.subarray(from, to)), `[${from}, ${to})`);
    }
  }
});

test('stacked mutations report the ranges of the last layer against its parent', (t) => {
  const first = mutate(BASE, { seed: 4, changes: 20, changeBytes: 1000 });
  const second = mutate(first, { seed: 5, changes: 30, changeBytes: 700 });
  t.is(second.mutations?.length, 2);
  const a = imageBytes(first, 0, BASE.sizeBytes);
  const b = imageBytes(second, 0, BASE.sizeBytes);
  t.is(assertChangedExactly(a, b, changedRanges(second)), undefined);
});

test('zero changes give an identical image; impossible layers are rejected', (t) => {
  const same = mutate(BASE, { seed: 6, changes: 0 });
  t.deepEqual(changedRanges(same), []);
  t.true(imageBytes(same, 0, 2 * MiB).equals(imageBytes(BASE, 0, 2 * MiB)));
  t.throws(() => mutate(BASE, { seed: 6, changes: 2, changeBytes: BASE.sizeBytes }), {
    instanceOf: RangeError,
  });
  t.throws(() => mutate(BASE, { seed: 6, changes: 1, changeBytes: 0 }), { instanceOf: RangeError });
  t.throws(() => mutate(BASE, { seed: -1, changes: 1 }), { instanceOf: RangeError });
  // A whole-image change is allowed: one range covering everything.
  const tiny: ImageSpec = { sizeBytes: 10, seed: 1 };
  t.deepEqual(changedRanges(mutate(tiny, { seed: 1, changes: 1, changeBytes: 10 })), [
    { offsetBytes: 0, lengthBytes: 10 },
  ]);
});
