/*
 * What the headers of a zstd payload say about the bytes it decodes to, read before any
 * decoding so that a hostile payload is refused before it can cost memory (RFC 8878).
 *
 *   payload = frame*            each frame: a zstd frame or a skippable frame
 *   zstd frame = magic 28 b5 2f fd | FHD | [window] | [dict id] | [content size] | block+ | [checksum]
 *   block   = header u24le (last:1, type:2, size:21) | body
 *             type 0 raw: body is `size` bytes, decodes to `size` bytes
 *             type 1 RLE: body is 1 byte, decodes to `size` bytes
 *             type 2 compressed: body is `size` bytes, decodes to at most min(window, 128 KiB)
 *                    and at least the literals it regenerates (first bytes of the body)
 */

/** What the frame and block headers of a zstd payload promise about its output. */
export interface ZstdPayloadBounds {
  /** Sum of the content sizes the frames declare; undefined when a frame does not declare one. */
  readonly declaredBytes: number | undefined;
  /** The output is at least this long (raw and RLE blocks exactly, literals of compressed blocks). */
  readonly minBytes: number;
  /** The output is at most this long (compressed blocks count at their maximum size). */
  readonly maxBytes: number;
  /** Largest window any frame declares: what a streaming decoder allocates up front. */
  readonly maxWindowBytes: number;
  /**
   * Every frame ends (a last block, and its checksum when it has one) and the payload ends
   * with the last frame. A streaming decoder (node:zlib) returns what it decoded from a
   * truncated frame without an error, so truncation is caught here, for every backend.
   */
  readonly complete: boolean;
}

/** zstd's cap on the output of one block. */
const BLOCK_MAX_BYTES = 128 * 1024;
const ZSTD_MAGIC = 0xfd2fb528;

/** Regenerated size of the literals section at the start of a compressed block's body. */
function literalsBytes(p: Uint8Array, at: number): number {
  const b0 = p[at] ?? 0;
  const b = (i: number) => p[at + i] ?? 0;
  const type = b0 & 3;
  const sizeFormat = (b0 >> 2) & 3;
  if (type <= 1) {
    // raw or RLE literals
    if ((sizeFormat & 1) === 0) return b0 >> 3;
    if (sizeFormat === 1) return (b0 >> 4) + (b(1) << 4);
    return (b0 >> 4) + (b(1) << 4) + (b(2) << 12);
  }
  // compressed or treeless literals: regenerated size is the first size field
  const header = b0 | (b(1) << 8) | (b(2) << 16) | (b(3) << 24);
  const bits = sizeFormat <= 1 ? 10 : sizeFormat === 2 ? 14 : 18;
  return (header >>> 4) & ((1 << bits) - 1);
}

/**
 * Reads the bounds of a zstd payload from its headers only. Malformed input is not an
 * error here: the walk stops where the headers stop making sense and the decoder reports
 * the corruption; what was read up to there still bounds the output.
 */
export function zstdPayloadBounds(p: Uint8Array): ZstdPayloadBounds {
  const u32 = (at: number) => (p[at]! | (p[at + 1]! << 8) | (p[at + 2]! << 16) | (p[at + 3]! << 24)) >>> 0;
  let declared: number | undefined = 0;
  let minBytes = 0;
  let maxBytes = 0;
  let maxWindowBytes = 0;
  let at = 0;
  while (at + 8 <= p.length) {
    const magic = u32(at);
    if ((magic & 0xfffffff0) === 0x184d2a50) {
      at += 8 + u32(at + 4); // skippable frame
      continue;
    }
    if (magic !== ZSTD_MAGIC) break;
    const fhd = p[at + 4]!;
    const singleSegment = (fhd & 0x20) !== 0;
    const fcsBytes = [singleSegment ? 1 : 0, 2, 4, 8][fhd >> 6]!;
    let pos = at + 5;
    let window = 0;
    if (!singleSegment) {
      const wd = p[pos++]!;
      const base = 2 ** (10 + (wd >> 3));
      window = base + (base / 8) * (wd & 7);
    }
    pos += [0, 1, 2, 4][fhd & 3]!; // dictionary id
    let contentBytes: number | undefined;
    if (fcsBytes > 0) {
      let fcs = 0;
      for (let i = fcsBytes - 1; i >= 0; i--) fcs = fcs * 256 + (p[pos + i] ?? 0);
      contentBytes = fcsBytes === 2 ? fcs + 256 : fcs;
    }
    if (singleSegment) window = contentBytes ?? 0;
    pos += fcsBytes;
    maxWindowBytes = Math.max(maxWindowBytes, window);
    declared = declared === undefined || contentBytes === undefined ? undefined : declared + contentBytes;
    const blockMax = Math.min(window, BLOCK_MAX_BYTES);
    for (;;) {
      if (pos + 3 > p.length)
        return { declaredBytes: declared, minBytes, maxBytes, maxWindowBytes, complete: false };
      const h = p[pos]! | (p[pos + 1]! << 8) | (p[pos + 2]! << 16);
      const type = (h >> 1) & 3;
      const size = h >>> 3;
      if (type === 2) {
        minBytes += literalsBytes(p, pos + 3);
        maxBytes += blockMax;
      } else {
        minBytes += size;
        maxBytes += size;
      }
      pos += 3 + (type === 1 ? 1 : size);
      if (h & 1) break;
    }
    at = pos + (fhd & 4 ? 4 : 0); // content checksum
  }
  return { declaredBytes: declared, minBytes, maxBytes, maxWindowBytes, complete: at === p.length };
}
