/*
 * The encode worker's answer crosses threads by transfer: only memory the blob owns may
 * go (Node 22 throws DataCloneError for a view into Buffer's shared pool).
 */
import test from 'ava';
import { Piscina } from 'piscina';
import { encode } from '../src/encode-worker.js';

for (const [what, data] of [
  ['a zero chunk (a blob of a few bytes)', Buffer.alloc(4 * 1024 * 1024)],
  ['an incompressible chunk', Buffer.from(Array.from({ length: 70_000 }, (_, i) => (i * 2654435761) >>> 24))],
] as const) {
  for (const compress of ['zstd', 'deflate', 'none'] as const) {
    test(`${what}, ${compress}: the transferred memory is the blob's own, nothing more`, (t) => {
      const moved = encode({ data, compress }) as unknown as Record<symbol, unknown>;
      const blob = moved[Piscina.valueSymbol] as Uint8Array;
      const transferred = moved[Piscina.transferableSymbol] as ArrayBufferLike;
      t.true(blob.byteLength > 0);
      t.is(transferred, blob.buffer);
      t.is(blob.byteOffset, 0);
      t.is(transferred.byteLength, blob.byteLength);
    });
  }
}
