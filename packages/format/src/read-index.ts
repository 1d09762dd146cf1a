import type { ChunkIndex } from './chunk-index.js';
import { readDynamicIndex } from './dynamic-index.js';
import { FormatError } from './errors.js';
import { readFixedIndex } from './fixed-index.js';
import { MAGIC } from './magic.js';

/** Parses either index kind, chosen by its magic (not by the file name, which can lie). */
export function readIndex(data: Uint8Array): ChunkIndex {
  const head = Buffer.from(data.buffer, data.byteOffset, Math.min(8, data.byteLength));
  if (head.equals(MAGIC.fixedIndex)) return readFixedIndex(data);
  if (head.equals(MAGIC.dynamicIndex)) return readDynamicIndex(data);
  if (data.byteLength < 8)
    throw new FormatError(
      'ERR_LR_INDEX_TRUNCATED',
      `index is ${data.byteLength} bytes, shorter than its header`,
    );
  throw new FormatError('ERR_LR_BAD_MAGIC', 'not a chunk index: unknown magic');
}
