/**
 * Sequential access: a Readable of an image, and its SHA-256.
 *
 * Benchmarks and backup tests feed images of many GiB through the same pipes as
 * real files; a stream generates them piece by piece, so memory stays at
 * `highWaterMark` whatever the image size.
 */

import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { fillImage } from './generate.js';
import {
  checkNonNegativeInteger,
  checkPositiveInteger,
  type ImageSpec,
  normalizeSpec,
} from './image-spec.js';

/** Default piece size of a stream: 1 MiB (several blocks; few callbacks per GiB). */
export const DEFAULT_STREAM_HIGH_WATER_MARK = 1024 * 1024;

/** Options of {@link createImageStream}. */
export interface ImageStreamOptions {
  /** First byte to read; 0 by default. */
  readonly start?: number;
  /**
   * Last byte to read, **inclusive**, as in `fs.createReadStream` and HTTP Range;
   * the last byte of the image by default. `end = start - 1` gives an empty stream.
   */
  readonly end?: number;
  /** Bytes per pushed Buffer, and the stream's buffering limit; 1 MiB by default. */
  readonly highWaterMark?: number;
}

/**
 * A Readable of the image bytes `[start, end]`, generated on demand: use it where a
 * file stream would go (hashing, backup writers, HTTP bodies) without the file.
 */
export function createImageStream(spec: ImageSpec, options: ImageStreamOptions = {}): Readable {
  const { sizeBytes } = normalizeSpec(spec);
  const start = checkNonNegativeInteger(options.start ?? 0, 'start');
  const end = options.end === undefined ? sizeBytes - 1 : options.end;
  if (typeof end !== 'number') throw new TypeError('end must be a safe integer');
  if (!Number.isSafeInteger(end) || end < start - 1 || end >= sizeBytes) {
    throw new RangeError(
      `end must be a safe integer in [start - 1, sizeBytes - 1] (start ${start}, sizeBytes ${sizeBytes})`,
    );
  }
  const highWaterMark = checkPositiveInteger(
    options.highWaterMark ?? DEFAULT_STREAM_HIGH_WATER_MARK,
    'highWaterMark',
  );
  const stop = end + 1;
  let pos = start;
  return new Readable({
    highWaterMark,
    read() {
      if (pos >= stop) {
        this.push(null);
        return;
      }
      const n = Math.min(highWaterMark, stop - pos);
      const piece = Buffer.allocUnsafeSlow(n);
      try {
        fillImage(spec, piece, pos);
      } catch (err) {
        this.destroy(err as Error);
        return;
      }
      pos += n;
      this.push(piece);
    },
  });
}

/** Hashing piece size: big enough to amortise calls, small enough to stay cache-friendly. */
const HASH_PIECE_BYTES = 4 * 1024 * 1024;

/**
 * SHA-256 of the whole image, lowercase hex: what a restored disk must hash to.
 * Streams through one reused 4 MiB buffer and yields to the event loop between
 * pieces, so a multi-GiB image neither holds memory nor starves timers.
 */
export async function sha256OfImage(spec: ImageSpec): Promise<string> {
  const { sizeBytes } = normalizeSpec(spec);
  const hash = createHash('sha256');
  const piece = Buffer.allocUnsafeSlow(Math.min(HASH_PIECE_BYTES, sizeBytes));
  for (let pos = 0; pos < sizeBytes; ) {
    const n = Math.min(piece.length, sizeBytes - pos);
    const view = piece.subarray(0, n);
    fillImage(spec, view, pos);
    hash.update(view);
    pos += n;
    if (pos < sizeBytes) await yieldToEventLoop();
  }
  return hash.digest('hex');
}
