/*
 * ChunkPieces against a byte-by-byte reference: every byte of a range belongs to the piece
 * of its chunk, pieces come in chunk order, and nothing outside the range is walked.
 */
import { readDynamicIndex, writeDynamicIndex } from '@liverestore/format';
import test from 'ava';
import fc from 'fast-check';
import { ChunkPieces } from '../src/chunk-pieces.js';

interface Piece {
  chunk: number;
  chunkLength: number;
  chunkOffset: number;
  rangeOffset: number;
  count: number;
}

/** The pieces of [offset, end), found by asking each byte which chunk holds it. */
function referencePieces(chunkLengths: readonly number[], offset: number, end: number): Piece[] {
  const starts: number[] = [];
  let at = 0;
  for (const length of chunkLengths) {
    starts.push(at);
    at += length;
  }
  const pieces: Piece[] = [];
  for (let byte = offset; byte < end; byte++) {
    const chunk = starts.findLastIndex((start) => start <= byte);
    const last = pieces.at(-1);
    if (last?.chunk === chunk) last.count++;
    else
      pieces.push({
        chunk,
        chunkLength: chunkLengths[chunk]!,
        chunkOffset: byte - starts[chunk]!,
        rangeOffset: byte - offset,
        count: 1,
      });
  }
  return pieces;
}

test('the pieces of a range are its bytes grouped by chunk, as a byte-by-byte walk finds them', (t) => {
  const scenario = fc
    .array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 12 })
    .chain((chunkLengths) => {
      const size = chunkLengths.reduce((a, b) => a + b, 0);
      return fc.tuple(
        fc.constant(chunkLengths),
        fc
          .integer({ min: 0, max: size - 1 })
          .chain((offset) => fc.tuple(fc.constant(offset), fc.integer({ min: offset + 1, max: size }))),
      );
    });
  fc.assert(
    fc.property(scenario, ([chunkLengths, [offset, end]]) => {
      let endOffset = 0;
      const entries = chunkLengths.map((length) => {
        endOffset += length;
        return { endOffset, digest: new Uint8Array(32) };
      });
      const index = readDynamicIndex(writeDynamicIndex({ entries }));
      const piece = new ChunkPieces(index, offset, end);
      const walked: Piece[] = [];
      while (piece.next()) {
        const { chunk, chunkLength, chunkOffset, rangeOffset, count } = piece;
        walked.push({ chunk, chunkLength, chunkOffset, rangeOffset, count });
      }
      t.false(piece.next());
      const expected = referencePieces(chunkLengths, offset, end);
      t.deepEqual(walked, expected);
      t.is(piece.first, expected[0]!.chunk);
      t.is(piece.last, expected.at(-1)!.chunk);
    }),
  );
});
