import test from 'ava';
import { type ContentMix, fillImage } from '../src/index.js';

const MiB = 1024 * 1024;

// A sanity print, not a benchmark: the bound is loose because CI machines are
// shared and other test files run at the same time.
const CASES: [string, ContentMix | undefined][] = [
  ['random', { random: 1 }],
  ['text', { text: 1 }],
  ['repeat', { repeat: 1 }],
  ['default mix', undefined],
];

for (const [name, mix] of CASES) {
  test(`generation throughput: ${name}`, (t) => {
    const totalBytes = 256 * MiB;
    const spec =
      mix === undefined ? { sizeBytes: totalBytes, seed: 1 } : { sizeBytes: totalBytes, seed: 1, mix };
    const piece = Buffer.allocUnsafeSlow(4 * MiB);
    fillImage(spec, piece, 0);
    const started = process.hrtime.bigint();
    for (let pos = 0; pos < totalBytes; pos += piece.length) fillImage(spec, piece, pos);
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const mbPerSecond = totalBytes / seconds / 1e6;
    t.log(`${name}: ${mbPerSecond.toFixed(0)} MB/s`);
    t.true(mbPerSecond > 50);
  });
}
