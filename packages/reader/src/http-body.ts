import { ReaderError } from './errors.js';
import type { BlobPiece } from './link-scheduler.js';

/*
 * Reading HTTP response bodies into arrays the caller owns: bounded, checked against
 * Content-Length or Content-Range, copied once into a fresh array (never a view of a
 * pooled Buffer, so the caller may transfer it), and resumable where a piece was cut.
 */

/** Largest error body read (the JSON error object); anything longer is cut off. */
const MAX_ERROR_BODY_BYTES = 64 * 1024;

/** A response body as undici gives it. */
export type ResponseBody = AsyncIterable<Uint8Array> & { destroy(err?: Error): unknown };

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

/**
 * The whole body of a 2xx answer: into one array of the announced Content-Length, filled
 * as parts arrive (one copy, one blob in memory), or collected up to `maxBytes` without one.
 */
export async function readWholeBody(
  response: BodyResponse,
  expected: ExpectedBody,
  url: string,
): Promise<Uint8Array> {
  const { body } = response;
  const length = Number(response.headers['content-length']);
  if (Number.isFinite(length) && length > expected.maxBytes) {
    body.destroy();
    throw tooLarge(expected, url, length);
  }
  if (Number.isSafeInteger(length) && length >= 0) {
    const blob = new Uint8Array(length);
    await fillBody(body, blob, { start: 0 }, 'Content-Length', expected, url);
    return blob;
  }
  return await readBounded(body, expected.maxBytes, () => tooLarge(expected, url, undefined));
}

/**
 * Checks a 206 answer to `Range: bytes=START-` (`Content-Range: bytes START-LAST/TOTAL`
 * up to the end of the blob, the same TOTAL every time) and copies its body into the
 * blob, advancing `piece.start` as bytes arrive, so a cut answer is resumed, not refetched.
 */
export async function readPiece(
  response: BodyResponse,
  piece: BlobPiece,
  expected: ExpectedBody,
  url: string,
): Promise<void> {
  const { body } = response;
  const header = response.headers['content-range'];
  const match = typeof header === 'string' ? /^bytes (\d+)-(\d+)\/(\d+)$/.exec(header) : null;
  const [first, last, total] = (match?.slice(1) ?? []).map(Number);
  const bad = (why: string): ReaderError => badBody(body, expected, url, why);
  if (first !== piece.start || total === undefined || !Number.isSafeInteger(total) || last !== total - 1)
    throw bad(`the answer to "Range: bytes=${piece.start}-" has Content-Range "${String(header)}"`);
  if (total > expected.maxBytes) throw bad(`${total} bytes, over the limit of ${expected.maxBytes} bytes`);
  if (piece.blob !== undefined && piece.blob.byteLength !== total)
    throw bad('its size changed between requests');
  piece.blob ??= new Uint8Array(total);
  await fillBody(body, piece.blob, piece, 'Content-Range', expected, url);
}

/**
 * Copies a body into `blob` from `cursor.start` to the blob's end, advancing the cursor as
 * bytes arrive (a cut answer leaves it where the next request resumes); a body that does
 * not end exactly there fails with ERR_LR_SOURCE_BAD_RESPONSE, naming `header`.
 */
async function fillBody(
  body: ResponseBody,
  blob: Uint8Array,
  cursor: { start: number },
  header: 'Content-Length' | 'Content-Range',
  expected: ExpectedBody,
  url: string,
): Promise<void> {
  for await (const part of body) {
    // undici checks Content-Length too; never write past the array either way.
    if (cursor.start + part.byteLength > blob.byteLength)
      throw badBody(body, expected, url, `the body is longer than its ${header}`);
    blob.set(part, cursor.start);
    cursor.start += part.byteLength;
  }
  if (cursor.start !== blob.byteLength)
    throw badBody(body, expected, url, `the body is shorter than its ${header}`);
}

/** ERR_LR_SOURCE_BAD_RESPONSE for an answer that is not what was asked for; the body is dropped. */
function badBody(body: ResponseBody, expected: ExpectedBody, url: string, why: string): ReaderError {
  const err = new ReaderError('ERR_LR_SOURCE_BAD_RESPONSE', `GET ${url}: ${expected.what}: ${why}`);
  body.destroy(err);
  return err;
}

function tooLarge(expected: ExpectedBody, url: string, length: number | undefined): ReaderError {
  return new ReaderError(
    'ERR_LR_SOURCE_RESPONSE_TOO_LARGE',
    `GET ${url}: ${expected.what} is ${length === undefined ? 'larger than' : `${length} bytes, over`} the limit of ${expected.maxBytes} bytes`,
  );
}

/** Collects a body without a Content-Length into one fresh array, failing as soon as it passes `maxBytes`. */
async function readBounded(
  body: ResponseBody,
  maxBytes: number,
  onTooLarge: () => Error,
): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let total = 0;
  for await (const part of body) {
    total += part.byteLength;
    if (total > maxBytes) {
      const err = onTooLarge();
      body.destroy(err);
      throw err;
    }
    parts.push(part);
  }
  // A fresh array, never a view into a pooled Buffer: the caller may transfer it.
  const out = new Uint8Array(total);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.byteLength;
  }
  return out;
}

/** The first bytes of an error body as text; the rest is discarded. */
export async function readErrorBody(body: ResponseBody): Promise<string> {
  const parts: Uint8Array[] = [];
  let total = 0;
  for await (const part of body) {
    parts.push(part);
    total += part.byteLength;
    if (total >= MAX_ERROR_BODY_BYTES) {
      body.destroy();
      break;
    }
  }
  return Buffer.concat(parts).subarray(0, MAX_ERROR_BODY_BYTES).toString('utf8');
}
