/*
 * Stream detection of ReadaheadTracker: a sequential stream stays recognised however many
 * random reads come between its reads (a guest at queue depth 16 beside a block-stream
 * job on one NBD connection), and random reads are never taken for a stream.
 */
import test from 'ava';
import { ReadaheadTracker } from '../src/readahead.js';
import { prng } from './helpers.js';

const CHUNK = 4 << 20;
const READ = 512 << 10;

/** One read of [start, start + length) on 4 MiB chunks; whether it continued a stream. */
function read(tracker: ReadaheadTracker, start: number, length: number): boolean {
  tracker.observe(start, start + length, Math.floor(start / CHUNK), Math.floor((start + length - 1) / CHUNK));
  return tracker.sequential;
}

test('a stream with 32 random reads between each of its reads stays sequential; the random reads do not', (t) => {
  const tracker = new ReadaheadTracker(8);
  const random = prng(7);
  const disk = 512 << 20;
  let streamed = 0;
  let randomTakenForStream = 0;
  const streamVerdicts: boolean[] = [];
  for (let step = 0; step < 200; step++) {
    streamVerdicts.push(read(tracker, streamed, READ));
    streamed += READ;
    for (let r = 0; r < 32; r++) {
      // 4 KiB past a 64 KiB boundary: never where the stream goes on (that read would
      // continue it), but often where an earlier random read ended.
      const at = Math.floor(random() * (disk / 65536)) * 65536 + 4096;
      if (read(tracker, at, 65536)) randomTakenForStream++;
    }
  }
  t.deepEqual(
    streamVerdicts.slice(0, 2),
    [false, false],
    'the first two reads of the stream are not sequential yet',
  );
  t.deepEqual(
    streamVerdicts.slice(2).filter((sequential) => !sequential).length,
    0,
    'every later read of the stream continues it',
  );
  t.true(randomTakenForStream <= 4, `${randomTakenForStream} random reads taken for a stream`);
});

test('the stream still gets its readahead window between the random reads', (t) => {
  const tracker = new ReadaheadTracker(4);
  let prefetched = 0;
  for (let chunk = 0; chunk < 16; chunk++) {
    const range = tracker.observe(chunk * CHUNK, (chunk + 1) * CHUNK, chunk, chunk);
    if (range !== undefined) prefetched += range.to - range.from + 1;
    for (let r = 0; r < 16; r++) {
      const at = (100 + chunk * 16 + r) * CHUNK + 4096;
      tracker.observe(at, at + 4096, 100 + chunk * 16 + r, 100 + chunk * 16 + r);
    }
  }
  t.true(prefetched >= 12, `${prefetched} chunks prefetched for a 16-chunk stream`);
});
