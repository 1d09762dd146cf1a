import test from 'ava';
import { BENCHMARKS } from '../src/index.js';

test('bench testkit: a case per content mix and one for the stream, each with its samples and bytes', async (t) => {
  const bench = BENCHMARKS.find((b) => b.name === 'testkit');
  t.truthy(bench);
  const result = await bench!.run({
    samples: 2,
    options: { 'stream-size': '4MiB' },
    progress: () => undefined,
  });
  const cases = result.sections[0]!.cases;
  t.deepEqual(
    cases.map((c) => c.name),
    [
      'fillImage, random',
      'fillImage, text',
      'fillImage, repeat',
      'fillImage, default mix',
      'createImageStream, default mix (1 MiB pieces)',
    ],
  );
  for (const c of cases) {
    t.is(c.secondsPerOp.length, 2, c.name);
    t.true((c.throughputMBps ?? 0) > 0, c.name);
  }
  t.is(cases[4]!.bytesPerOp, 4 * 1024 * 1024);
  t.is(result.settings.streamBytes, 4 * 1024 * 1024);
});
