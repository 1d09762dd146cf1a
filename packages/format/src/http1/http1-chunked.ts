import { Http1ParseError } from './http1-head.js';

/*
 * The chunked transfer coding (RFC 9112 §7.1), decoded incrementally: bytes go in as they
 * arrive, the data inside the chunks comes out, the framing (sizes, extensions, CRLFs,
 * trailer fields) is checked and dropped. A framing line split across reads is left
 * unconsumed until its end arrives.
 */

/** Longest size or trailer line accepted. */
const MAX_LINE_BYTES = 4096;
const CR = 0x0d;
const LF = 0x0a;

type State = 'size' | 'data' | 'data-end' | 'trailer' | 'done';

export class ChunkedDecoder {
  #state: State = 'size';
  /** Data bytes left in the current chunk. */
  #left = 0;

  /** True once the last chunk and the trailer section have been read. */
  get done(): boolean {
    return this.#state === 'done';
  }

  /**
   * Decodes from `bytes[start, end)`, handing each run of data to `onData` (a view, valid
   * only during the call). Returns how many bytes it consumed: fewer than given when a
   * framing line is not complete yet, or when the body ended (the rest is not its).
   */
  decode(bytes: Uint8Array, start: number, end: number, onData: (data: Uint8Array) => void): number {
    let at = start;
    while (at < end && this.#state !== 'done') {
      if (this.#state === 'data') {
        const take = Math.min(this.#left, end - at);
        onData(bytes.subarray(at, at + take));
        at += take;
        this.#left -= take;
        if (this.#left === 0) this.#state = 'data-end';
        continue;
      }
      const lineEnd = findLineEnd(bytes, at, end);
      if (lineEnd < 0) {
        if (end - at > MAX_LINE_BYTES)
          throw new Http1ParseError(
            'HPE_CHUNK_EXTENSIONS_OVERFLOW',
            `a chunk framing line is over ${MAX_LINE_BYTES} bytes`,
          );
        break;
      }
      const line = Buffer.from(bytes.buffer, bytes.byteOffset + at, lineEnd - at).toString('latin1');
      at = lineEnd + 2;
      this.#line(line);
    }
    return at - start;
  }

  #line(line: string): void {
    switch (this.#state) {
      case 'size': {
        const size = /^([0-9a-fA-F]{1,12})[ \t]*(?:;.*)?$/.exec(line);
        if (size === null)
          throw new Http1ParseError(
            'HPE_INVALID_CHUNK_SIZE',
            `not a chunk size line: ${JSON.stringify(line.slice(0, 40))}`,
          );
        this.#left = Number.parseInt(size[1]!, 16);
        this.#state = this.#left === 0 ? 'trailer' : 'data';
        return;
      }
      case 'data-end':
        if (line !== '') throw new Http1ParseError('HPE_STRICT', 'a chunk is longer than its size');
        this.#state = 'size';
        return;
      case 'trailer':
        // Trailer fields are read and dropped; the empty line ends the body.
        if (line === '') this.#state = 'done';
        return;
      default:
        return;
    }
  }
}

/** Index of the CR of the first CRLF in `bytes[start, end)`, or -1. */
function findLineEnd(bytes: Uint8Array, start: number, end: number): number {
  const view = bytes.subarray(start, end);
  for (let at = view.indexOf(CR); at >= 0 && at + 1 < view.length; at = view.indexOf(CR, at + 1)) {
    if (view[at + 1] === LF) return start + at;
  }
  return -1;
}
