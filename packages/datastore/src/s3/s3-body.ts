import {
  type BodyMemory,
  type BodyPiece,
  type BodyRules,
  type BodySink,
  type Http1Head,
  pieceSink,
  textSink,
  wholeBodySink,
} from '@liverestore/format/internal';
import { S3Error } from './s3-error.js';
import { MAX_ERROR_BODY_BYTES } from './s3-retry.js';

/*
 * Where the body of an S3 answer goes, chosen from its head with the shared body rules
 * (format's body-reader.ts), in S3's errors: a successful answer into one fresh array (or,
 * for a chunk read, the rest of the object's blob), an error's first 64 KiB as text.
 */

/** The body reader's rules for an S3 answer to `what` (`GET key from byte N`, a path). */
function s3Rules(what: string, maxBytes: number): BodyRules {
  return {
    maxBytes,
    tooLarge: () =>
      new S3Error(
        'ERR_LR_S3_RESPONSE_TOO_LARGE',
        `${what}: the answer is over the limit of ${maxBytes} bytes`,
      ),
    bad: (why) => new S3Error('ERR_LR_S3_BAD_RESPONSE', `${what}: ${why}`),
  };
}

/** A successful answer's body: at most `maxBytes`, into one array from `memory` (default fresh). */
export function boundedSink(head: Http1Head, maxBytes: number, path: string, memory?: BodyMemory): BodySink {
  return wholeBodySink(head.headers['content-length'], s3Rules(path, maxBytes), memory);
}

/** An error answer's body: its first bytes as text, the rest dropped. */
export function errorSink(): BodySink {
  return textSink(MAX_ERROR_BODY_BYTES);
}

/**
 * A successful answer to `Range: bytes=START-`: into `piece.blob` at `piece.start`, which
 * advances as bytes arrive. It must be a 206 whose `Content-Range: bytes START-LAST/TOTAL`
 * starts at `piece.start`, ends at the object's end and names the same TOTAL every time.
 */
export function pieceBodySink(
  head: Http1Head,
  piece: BodyPiece,
  maxBytes: number,
  key: string,
  memory?: BodyMemory,
): BodySink {
  const rules = s3Rules(`GET ${key} from byte ${piece.start}`, maxBytes);
  if (head.status !== 206) throw rules.bad(`expected 206 with a Content-Range, got ${head.status}`);
  return pieceSink(head.headers['content-range'], piece, rules, memory);
}
