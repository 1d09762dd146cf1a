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
import { ReaderError } from './errors.js';

/*
 * Where the body of an answer to the HTTP chunk source goes, chosen from its head with the
 * shared body rules (format's body-reader.ts), in the reader's errors: a piece's 206 into
 * its blob, another 2xx into a fresh array of its length, anything else as the text of an
 * error (its first 64 KiB).
 */

/** Largest error body read (the JSON error object); anything longer is cut off. */
export const MAX_ERROR_BODY_BYTES = 64 * 1024;

/** What a body should be: its bound and how messages name it (`chunk 0123…`). */
export interface ExpectedBody {
  readonly what: string;
  readonly maxBytes: number;
}

/** The body reader's rules for `expected` from `url`. */
function httpRules(expected: ExpectedBody, url: string): BodyRules {
  return {
    maxBytes: expected.maxBytes,
    tooLarge: (length) =>
      new ReaderError(
        'ERR_LR_SOURCE_RESPONSE_TOO_LARGE',
        `GET ${url}: ${expected.what} is ${length === undefined ? 'larger than' : `${length} bytes, over`} the limit of ${expected.maxBytes} bytes`,
      ),
    bad: (why) => new ReaderError('ERR_LR_SOURCE_BAD_RESPONSE', `GET ${url}: ${expected.what}: ${why}`),
  };
}

/** What an answer's body is, by its status: a piece's rest, the whole body, or an error's text. */
export type AnswerBody = 'piece' | 'whole' | 'error';

/** Which body an answer of `status` has, for a request that asked for a piece or not. */
export function answerBody(status: number, piece: BodyPiece | undefined): AnswerBody {
  if (status === 206 && piece !== undefined) return 'piece';
  return status >= 200 && status < 300 && status !== 206 ? 'whole' : 'error';
}

/**
 * Where the body of `head` goes: the rest of `piece` (its Content-Range checked), an array
 * of the Content-Length from `memory` (or collected up to the bound without one), or an
 * error's text.
 */
export function answerSink(
  head: Http1Head,
  piece: BodyPiece | undefined,
  expected: ExpectedBody,
  url: string,
  memory?: BodyMemory,
): BodySink {
  switch (answerBody(head.status, piece)) {
    case 'piece':
      return pieceSink(head.headers['content-range'], piece!, httpRules(expected, url), memory);
    case 'whole':
      return wholeBodySink(head.headers['content-length'], httpRules(expected, url), memory);
    default:
      return textSink(MAX_ERROR_BODY_BYTES);
  }
}
