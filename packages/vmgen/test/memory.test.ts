// Alone in its file so ava runs it in its own process and the RSS it measures is
// its own, not that of other tests generating images at the same time.
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import test from 'ava';
import { createImageStream, type ImageSpec } from '../src/index.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

test('streaming 1 GiB keeps memory bounded', async (t) => {
  const spec: ImageSpec = { sizeBytes: GiB, seed: 99 };
  const baselineRss = process.memoryUsage().rss;
  let peakRss = baselineRss;
  let seen = 0;
  let pieces = 0;
  const started = process.hrtime.bigint();
  await pipeline(
    createImageStream(spec),
    new Writable({
      write(chunk: Buffer, _encoding, callback) {
        seen += chunk.length;
        if (++pieces % 16 === 0) peakRss = Math.max(peakRss, process.memoryUsage().rss);
        callback();
      },
    }),
  );
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const growthMiB = (peakRss - baselineRss) / MiB;
  t.log(
    `1 GiB streamed in ${seconds.toFixed(2)} s (${(GiB / seconds / 1e6).toFixed(0)} MB/s); RSS grew ${growthMiB.toFixed(1)} MiB`,
  );
  t.is(seen, GiB);
  t.true(growthMiB < 128);
});
