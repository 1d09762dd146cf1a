/**
 * `pnpm bench testkit`: how fast @liverestore/testkit generates image bytes. Tests and
 * benchmarks compare multi-GiB images against `imageBytes`/`fillImage` without storing
 * them, so generation must stay far faster than what it checks. Each content mix fills a
 * 4 MiB buffer at successive offsets of a large image (round-robin samples, as the codec
 * benchmark), plus `createImageStream` of the default mix read to the end.
 */

import { performance } from 'node:perf_hooks';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { type ContentMix, createImageStream, fillImage, type ImageSpec } from '@liverestore/testkit';
import type { BenchContext, Benchmark } from './benchmark.js';
import { machineInfo } from './machine.js';
import { measureInterleaved } from './measure.js';
import { type BenchResult, type CaseResult, measuredCase } from './result.js';
import { formatBytes, parseBytes } from './units.js';

const PIECE_BYTES = 4 * 1024 * 1024;
const DEFAULT_STREAM_BYTES = 1024 ** 3;

const MIX_CASES: readonly (readonly [string, ContentMix | undefined])[] = [
  ['random', { random: 1 }],
  ['text', { text: 1 }],
  ['repeat', { repeat: 1 }],
  ['default mix', undefined],
];

/** One fill of a 4 MiB piece per call, at the next offset of a 64 GiB image (wrapping). */
function fillCase(mix: ContentMix | undefined): () => number {
  const spec: ImageSpec =
    mix === undefined ? { sizeBytes: 64 * 1024 ** 3, seed: 1 } : { sizeBytes: 64 * 1024 ** 3, seed: 1, mix };
  const piece = Buffer.allocUnsafeSlow(PIECE_BYTES);
  let offset = 0;
  return () => {
    fillImage(spec, piece, offset);
    offset = (offset + PIECE_BYTES) % spec.sizeBytes;
    return piece[0]!;
  };
}

/** Seconds to stream `bytes` of the default mix to a sink that drops them. */
async function streamSeconds(bytes: number): Promise<number> {
  const started = performance.now();
  await pipeline(
    createImageStream({ sizeBytes: bytes, seed: 2 }),
    new Writable({
      write(_piece: Buffer, _encoding, callback) {
        callback();
      },
    }),
  );
  return (performance.now() - started) / 1000;
}

async function runTestkit(context: BenchContext): Promise<BenchResult> {
  const started = performance.now();
  const machine = machineInfo();
  const streamOption = context.options['stream-size'];
  const streamBytes =
    typeof streamOption === 'string' ? parseBytes(streamOption, '--stream-size') : DEFAULT_STREAM_BYTES;
  const measurements = measureInterleaved(
    MIX_CASES.map(([, mix]) => fillCase(mix)),
    { samples: context.samples, minSampleMs: 200, warmupMs: 300, chunksPerCall: 1 },
    (round) => context.progress(`fillImage round ${round}/${context.samples} done`),
  );
  const cases: CaseResult[] = MIX_CASES.map(([name], i) =>
    measuredCase(`fillImage, ${name}`, PIECE_BYTES, measurements[i]!.secondsPerChunk, {
      callsPerSample: measurements[i]!.callsPerSample,
    }),
  );
  const streamed: number[] = [];
  for (let i = 1; i <= context.samples; i++) {
    context.progress(`createImageStream of ${formatBytes(streamBytes)}, sample ${i}/${context.samples}`);
    streamed.push(await streamSeconds(streamBytes));
  }
  cases.push(measuredCase('createImageStream, default mix (1 MiB pieces)', streamBytes, streamed));
  return {
    benchmark: 'testkit',
    title: 'testkit: generating synthetic image bytes (one thread)',
    machine,
    settings: {
      samples: context.samples,
      pieceBytes: PIECE_BYTES,
      streamBytes,
      minSampleMs: 200,
      warmupMs: 300,
    },
    sections: [
      {
        title: 'Generation speed per content mix',
        meanLabel: 'mean / 4 MiB (stream: / run)',
        cases,
        notes: [
          'fillImage fills one 4 MiB buffer at successive offsets of a 64 GiB image; cases sampled round-robin.',
          `createImageStream streams ${formatBytes(streamBytes)} of the default mix to a sink that drops it.`,
        ],
      },
    ],
    durationSeconds: (performance.now() - started) / 1000,
  };
}

export const testkitBenchmark: Benchmark = {
  name: 'testkit',
  summary: 'how fast @liverestore/testkit generates synthetic image bytes, per content mix',
  description: `
Measures fillImage (4 MiB pieces, each content mix: random, text, repeat and the default
VM mix) and createImageStream (the default mix, read to the end) on one thread. Tests
compare multi-GiB images against the generator instead of storing them, so it must stay
far faster than the code it checks. Takes about 20 seconds.`,
  defaultSamples: 5,
  options: [
    {
      name: 'stream-size',
      type: 'string',
      valueName: 'SIZE',
      description: 'bytes createImageStream generates per sample',
      defaultText: '1GiB',
    },
  ],
  run: runTestkit,
};
