import {
  type BodyPiece,
  type BodyRules,
  dropBody,
  type ResponseBody,
  readBodyPiece,
  readBodyText,
  readWholeBody,
} from '@liverestore/format/internal';
import { S3Error } from './s3-error.js';
import { MAX_ERROR_BODY_BYTES } from './s3-retry.js';

/*
 * Reading S3 answer bodies with the shared body reader (format's body-reader.ts), in S3's
 * errors. A body given up half-read is discarded: the S3 client throws its own error, and
 * the stream's abort error is swallowed.
 */

/** The body reader's rules for an S3 answer to `what` (`GET key from byte N`, a path). */
function s3Rules(what: string, maxBytes: number): BodyRules {
  return {
    maxBytes,
    drop: 'discard',
    tooLarge: () =>
      new S3Error(
        'ERR_LR_S3_RESPONSE_TOO_LARGE',
        `${what}: the answer is over the limit of ${maxBytes} bytes`,
      ),
    bad: (why) => new S3Error('ERR_LR_S3_BAD_RESPONSE', `${what}: ${why}`),
  };
}

/** Reads a body of at most `maxBytes` into one fresh array (never a view of a pooled Buffer). */
export async function readBounded(
  body: ResponseBody,
  maxBytes: number,
  headers: Record<string, string | string[] | undefined>,
  path: string,
): Promise<Uint8Array> {
  return await readWholeBody(body, headers['content-length'], s3Rules(path, maxBytes));
}

/** The first bytes of an error body as text; the rest is discarded. */
export async function readErrorBody(body: ResponseBody): Promise<string> {
  return await readBodyText(body, MAX_ERROR_BODY_BYTES, 'discard');
}

/**
 * Copies a 206 answer to `Range: bytes=START-` into `piece.blob` at `piece.start`,
 * advancing `piece.start` as bytes arrive. `Content-Range: bytes START-LAST/TOTAL` must
 * start at `piece.start`, end at the object's end and name the same TOTAL every time.
 */
export async function readPieceBody(
  status: number,
  headers: Record<string, string | string[] | undefined>,
  body: ResponseBody,
  piece: BodyPiece,
  maxBytes: number,
  key: string,
): Promise<void> {
  const rules = s3Rules(`GET ${key} from byte ${piece.start}`, maxBytes);
  if (status !== 206) {
    const err = rules.bad(`expected 206 with a Content-Range, got ${status}`);
    dropBody(body, rules.drop, err);
    throw err;
  }
  await readBodyPiece(body, headers['content-range'], piece, rules);
}
