import {
  type BodyPiece,
  type BodyRules,
  type ResponseBody,
  readBodyPiece,
  readBodyText,
  readWholeBody as readWholeBodyWith,
} from '@liverestore/format/internal';
import { ReaderError } from './errors.js';

/*
 * Reading HTTP response bodies with the shared body reader (format's body-reader.ts), in
 * the reader's errors. A body given up half-read is destroyed with the error thrown, so
 * whatever else still holds the stream sees why it ended.
 */

export type { ResponseBody } from '@liverestore/format/internal';

/** Largest error body read (the JSON error object); anything longer is cut off. */
const MAX_ERROR_BODY_BYTES = 64 * 1024;

/** A response as the readers here need it. */
export interface BodyResponse {
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: ResponseBody;
}

/** What a body should be: its bound and how messages name it (`chunk 0123…`). */
export interface ExpectedBody {
  readonly what: string;
  readonly maxBytes: number;
}

/** The body reader's rules for `expected` from `url`. */
function httpRules(expected: ExpectedBody, url: string): BodyRules {
  return {
    maxBytes: expected.maxBytes,
    drop: 'destroy-with-error',
    tooLarge: (length) =>
      new ReaderError(
        'ERR_LR_SOURCE_RESPONSE_TOO_LARGE',
        `GET ${url}: ${expected.what} is ${length === undefined ? 'larger than' : `${length} bytes, over`} the limit of ${expected.maxBytes} bytes`,
      ),
    bad: (why) => new ReaderError('ERR_LR_SOURCE_BAD_RESPONSE', `GET ${url}: ${expected.what}: ${why}`),
  };
}

/**
 * The whole body of a 2xx answer: into one array of the announced Content-Length, filled
 * as parts arrive (one copy, one blob in memory), or collected up to `maxBytes` without one.
 */
export async function readWholeBody(
  response: BodyResponse,
  expected: ExpectedBody,
  url: string,
): Promise<Uint8Array> {
  return await readWholeBodyWith(response.body, response.headers['content-length'], httpRules(expected, url));
}

/**
 * Checks a 206 answer to `Range: bytes=START-` (`Content-Range: bytes START-LAST/TOTAL`
 * up to the end of the blob, the same TOTAL every time) and copies its body into the
 * blob, advancing `piece.start` as bytes arrive, so a cut answer is resumed, not refetched.
 */
export async function readPiece(
  response: BodyResponse,
  piece: BodyPiece,
  expected: ExpectedBody,
  url: string,
): Promise<void> {
  await readBodyPiece(response.body, response.headers['content-range'], piece, httpRules(expected, url));
}

/** The first bytes of an error body as text; the rest is discarded. */
export async function readErrorBody(body: ResponseBody): Promise<string> {
  return await readBodyText(body, MAX_ERROR_BODY_BYTES, 'destroy-with-error');
}
