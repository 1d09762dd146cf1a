import type { BodySink } from './http1/http1-connection.js';

/*
 * Where HTTP answer bodies go, for the HTTP chunk source (reader) and the S3 client
 * (datastore): sinks that tell the HTTP/1.1 client ({@link Http1Client}), once an answer's
 * head has arrived, where its body goes — bounded, checked against the length the answer
 * announces (Content-Length or Content-Range), into a fresh array the caller owns (so it may
 * transfer it), and resumable where a piece was cut.
 *
 * The callers differ in their errors, each package with its own codes and wording: they
 * pass them as {@link BodyRules}. Exposed only through `@liverestore/format/internal`.
 */

/** What a body may be and how its failures are reported, in the caller's own errors. */
export interface BodyRules {
  /** Largest body accepted, in bytes. */
  readonly maxBytes: number;
  /** The error for a body over `maxBytes`; `lengthBytes` is the size it announced, if any. */
  tooLarge(lengthBytes: number | undefined): Error;
  /** The error for an answer that is not what it announces or what was asked (`why` says how). */
  bad(why: string): Error;
}

/**
 * Memory for a body of `bytes`: an array of exactly that length the body is read into
 * (a fresh one by default; a chunk cache hands out reused blob memory). With `arrived`,
 * it hears how many bytes of that array hold the body so far, each time more came (a
 * decode thread reads a blob while it arrives).
 */
export interface BodyMemory {
  (bytes: number): Uint8Array;
  arrived?: ((bytes: number) => void) | undefined;
}

/** The cursor of a body read into memory from `cursor.start`: tells `arrived` where it got to. */
function reportingCursor(cursor: { start: number }, arrived: (bytes: number) => void): { start: number } {
  return {
    get start() {
      return cursor.start;
    },
    set start(bytes: number) {
      cursor.start = bytes;
      arrived(bytes);
    },
  };
}

const freshMemory: BodyMemory = (bytes) => new Uint8Array(bytes);

function cursorOf(cursor: { start: number }, memory: BodyMemory): { start: number } {
  return memory.arrived === undefined ? cursor : reportingCursor(cursor, memory.arrived);
}

/** Where the next byte of a blob goes: `start` advances as bytes arrive. */
export interface BodyPiece {
  /** First byte not received yet: where the next request starts. */
  start: number;
  /** The whole blob, allocated once the first answer names its size. */
  blob: Uint8Array | undefined;
}

/**
 * Where the whole body of a 2xx answer goes: into one array of the announced
 * Content-Length (from `memory`), or without one collected up to `maxBytes`. A length over
 * `maxBytes` is refused before a byte of the body is read.
 */
export function wholeBodySink(
  contentLength: string | undefined,
  rules: BodyRules,
  memory: BodyMemory = freshMemory,
): BodySink {
  const length = contentLength === undefined ? Number.NaN : Number(contentLength);
  if (Number.isFinite(length) && length > rules.maxBytes) throw rules.tooLarge(length);
  if (Number.isSafeInteger(length) && length >= 0)
    return { kind: 'into', target: memory(length), cursor: cursorOf({ start: 0 }, memory), bad: rules.bad };
  return { kind: 'collect', maxBytes: rules.maxBytes, tooLarge: () => rules.tooLarge(undefined) };
}

/**
 * Where a 206 answer to `Range: bytes=START-` goes: into the piece's blob (taken from
 * `memory` at the size its Content-Range names) from `piece.start`, which advances as bytes arrive, so
 * a cut answer is resumed, not fetched again. `Content-Range: bytes START-LAST/TOTAL` must
 * be the rest of the blob from `piece.start`, TOTAL within `maxBytes` and the size of the
 * blob already allocated, if any.
 */
export function pieceSink(
  contentRange: string | undefined,
  piece: BodyPiece,
  rules: BodyRules,
  memory: BodyMemory = freshMemory,
): BodySink {
  const match = contentRange === undefined ? null : /^bytes (\d+)-(\d+)\/(\d+)$/.exec(contentRange);
  const [first, last, total] = (match?.slice(1) ?? []).map(Number);
  if (first !== piece.start || total === undefined || !Number.isSafeInteger(total) || last !== total - 1)
    throw rules.bad(
      `the answer to "Range: bytes=${piece.start}-" has Content-Range "${String(contentRange)}"`,
    );
  if (total > rules.maxBytes) throw rules.bad(`${total} bytes, over the limit of ${rules.maxBytes} bytes`);
  if (piece.blob !== undefined && piece.blob.byteLength !== total)
    throw rules.bad(`its size changed between requests (${piece.blob.byteLength} → ${total} bytes)`);
  piece.blob ??= memory(total);
  return { kind: 'into', target: piece.blob, cursor: cursorOf(piece, memory), bad: rules.bad };
}

/** Where an error body goes: its first `maxBytes`, the rest dropped (with the connection). */
export function textSink(maxBytes: number): BodySink {
  return { kind: 'collect', maxBytes };
}

/** The text of a body a {@link textSink} collected. */
export function sinkText(collected: Uint8Array | undefined): string {
  return collected === undefined
    ? ''
    : Buffer.from(collected.buffer, collected.byteOffset, collected.byteLength).toString('utf8');
}
