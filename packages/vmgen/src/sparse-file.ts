/**
 * Writing an image to disk as a sparse file.
 *
 * Backup tests and the demo need real image files; writing the zero regions as
 * holes (by never writing them and setting the size at the end) makes a 4 GiB image
 * with 40% zeros take 60% of the disk, and matches how real VM disks are stored.
 */

import { type FileHandle, open } from 'node:fs/promises';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { fillImage } from './generate.js';
import { BLOCK_BYTES, type ImageSpec, normalizeSpec } from './image-spec.js';

/** Options of {@link writeImageFile}. */
export interface WriteImageFileOptions {
  /** Leave all-zero 64 KiB blocks as holes; true by default. */
  readonly sparse?: boolean;
}

/** What {@link writeImageFile} did, so tests can check the sparseness they expect. */
export interface WriteImageFileResult {
  readonly sizeBytes: number;
  /** Bytes actually written; the rest of the file is holes. */
  readonly writtenBytes: number;
}

const WRITE_PIECE_BYTES = 4 * 1024 * 1024;
const ZERO_BLOCK = Buffer.alloc(BLOCK_BYTES);

/**
 * Writes the image to `path` (created or truncated). With `sparse`, every
 * 64 KiB-aligned all-zero block is skipped, whatever produced it, and the file is
 * extended to its size with ftruncate. Memory use is one 4 MiB buffer.
 */
export async function writeImageFile(
  spec: ImageSpec,
  path: string,
  options: WriteImageFileOptions = {},
): Promise<WriteImageFileResult> {
  const { sizeBytes } = normalizeSpec(spec);
  if (typeof path !== 'string' || path === '') throw new TypeError('path must be a non-empty string');
  const sparse = options.sparse ?? true;
  if (typeof sparse !== 'boolean') throw new TypeError('sparse must be a boolean');
  const piece = Buffer.allocUnsafeSlow(Math.min(WRITE_PIECE_BYTES, Math.max(sizeBytes, 1)));
  let writtenBytes = 0;
  const file = await open(path, 'w');
  try {
    for (let pos = 0; pos < sizeBytes; ) {
      const n = Math.min(piece.length, sizeBytes - pos);
      const view = piece.subarray(0, n);
      fillImage(spec, view, pos);
      if (!sparse) {
        await writeFully(file, view, pos);
        writtenBytes += n;
      } else {
        // Coalesce runs of non-zero blocks into one write each.
        let runStart = -1;
        for (let b = 0; b < n; b += BLOCK_BYTES) {
          const blockEnd = Math.min(b + BLOCK_BYTES, n);
          const isZero = view.subarray(b, blockEnd).equals(ZERO_BLOCK.subarray(0, blockEnd - b));
          if (!isZero && runStart < 0) runStart = b;
          if (isZero && runStart >= 0) {
            await writeFully(file, view.subarray(runStart, b), pos + runStart);
            writtenBytes += b - runStart;
            runStart = -1;
          }
        }
        if (runStart >= 0) {
          await writeFully(file, view.subarray(runStart, n), pos + runStart);
          writtenBytes += n - runStart;
        }
        await yieldToEventLoop();
      }
      pos += n;
    }
    await file.truncate(sizeBytes);
  } finally {
    await file.close();
  }
  return { sizeBytes, writtenBytes };
}

async function writeFully(file: FileHandle, data: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await file.write(data, done, data.length - done, position + done);
    done += bytesWritten;
  }
}
