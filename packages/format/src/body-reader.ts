/*
 * Reading HTTP answer bodies into arrays the caller owns, for the HTTP chunk source
 * (reader) and the S3 client (datastore): bounded, checked against the length the answer
 * announces (Content-Length or Content-Range), copied once into a fresh array (never a view
 * of a pooled Buffer, so the caller may transfer it), and resumable where a piece was cut.
 *
 * The callers differ in two things, both explicit here: their errors (each package has its
 * own codes and wording: {@link BodyRules}) and how a body that is abandoned half-read is
 * dropped ({@link BodyDrop}). Exposed only through `@liverestore/format/internal`.
 */

/** A response body as undici gives it (any Readable fits). */
export type ResponseBody = AsyncIterable<Uint8Array> & {
  destroy(err?: Error): unknown;
  on(event: 'error', listener: (err: Error) => void): unknown;
};

/**
 * How a body that is not read to its end is dropped (with the connection under it):
 * - `'discard'`: destroyed without an error (undici then fails it with its own abort
 *   error): the caller throws its own error, the stream's is noise (the S3 client);
 * - `'destroy-with-error'`: destroyed with the error the reader throws, so anything else
 *   still attached to the stream sees why it ended (the HTTP chunk source).
 * Either way the reader reports by throwing, so the stream's 'error' event never goes
 * unheard (which would crash the process).
 */
export type BodyDrop = 'discard' | 'destroy-with-error';

/** Drops `body` the way `drop` says; `err` is the error the caller is about to throw. */
export function dropBody(body: ResponseBody, drop: BodyDrop, err?: Error): void {
  body.on('error', () => undefined);
  body.destroy(drop === 'discard' ? undefined : err);
}

/** What a body may be and how its failures are reported, in the caller's own errors. */
export interface BodyRules {
  /** Largest body accepted, in bytes. */
  readonly maxBytes: number;
  readonly drop: BodyDrop;
  /** The error for a body over `maxBytes`; `lengthBytes` is the size it announced, if any. */
  tooLarge(lengthBytes: number | undefined): Error;
  /** The error for an answer that is not what it announces or what was asked (`why` says how). */
  bad(why: string): Error;
}

/** Where the next byte of a blob goes: `start` advances as bytes arrive. */
export interface BodyPiece {
  /** First byte not received yet: where the next request starts. */
  start: number;
  /** The whole blob, allocated once the first answer names its size. */
  blob: Uint8Array | undefined;
}

/** `rules.bad(why)` with the body dropped first. */
function badBody(body: ResponseBody, rules: BodyRules, why: string): Error {
  const err = rules.bad(why);
  dropBody(body, rules.drop, err);
  return err;
}

/**
 * The whole body of a 2xx answer: into one array of the announced Content-Length, filled
 * as parts arrive (one copy, one blob in memory), or collected up to `maxBytes` without one.
 */
export async function readWholeBody(
  body: ResponseBody,
  contentLength: string | string[] | undefined,
  rules: BodyRules,
): Promise<Uint8Array> {
  const length = contentLength === undefined ? Number.NaN : Number(contentLength);
  if (Number.isFinite(length) && length > rules.maxBytes) {
    const err = rules.tooLarge(length);
    dropBody(body, rules.drop, err);
    throw err;
  }
  if (Number.isSafeInteger(length) && length >= 0) {
    const blob = new Uint8Array(length);
    await fillBody(body, blob, { start: 0 }, 'Content-Length', rules);
    return blob;
  }
  return await readBoundedBody(body, rules);
}

/**
 * Checks a 206 answer to `Range: bytes=START-` (`Content-Range: bytes START-LAST/TOTAL` up
 * to the end of the blob, TOTAL within `maxBytes` and the same every time) and copies its
 * body into the piece's blob, advancing `piece.start` as bytes arrive, so a cut answer is
 * resumed, not fetched again.
 */
export async function readBodyPiece(
  body: ResponseBody,
  contentRange: string | string[] | undefined,
  piece: BodyPiece,
  rules: BodyRules,
): Promise<void> {
  const match = typeof contentRange === 'string' ? /^bytes (\d+)-(\d+)\/(\d+)$/.exec(contentRange) : null;
  const [first, last, total] = (match?.slice(1) ?? []).map(Number);
  if (first !== piece.start || total === undefined || !Number.isSafeInteger(total) || last !== total - 1)
    throw badBody(
      body,
      rules,
      `the answer to "Range: bytes=${piece.start}-" has Content-Range "${String(contentRange)}"`,
    );
  if (total > rules.maxBytes)
    throw badBody(body, rules, `${total} bytes, over the limit of ${rules.maxBytes} bytes`);
  if (piece.blob !== undefined && piece.blob.byteLength !== total)
    throw badBody(
      body,
      rules,
      `its size changed between requests (${piece.blob.byteLength} → ${total} bytes)`,
    );
  piece.blob ??= new Uint8Array(total);
  await fillBody(body, piece.blob, piece, 'Content-Range', rules);
}

/**
 * Copies a body into `blob` from `cursor.start` to the blob's end, advancing the cursor as
 * bytes arrive (a cut answer leaves it where the next request resumes); a body that does
 * not end exactly there fails with `rules.bad`, naming `header`.
 */
async function fillBody(
  body: ResponseBody,
  blob: Uint8Array,
  cursor: { start: number },
  header: 'Content-Length' | 'Content-Range',
  rules: BodyRules,
): Promise<void> {
  for await (const part of body) {
    // undici checks Content-Length too; never write past the array either way.
    if (cursor.start + part.byteLength > blob.byteLength)
      throw badBody(body, rules, `the body is longer than its ${header} (${blob.byteLength} bytes)`);
    blob.set(part, cursor.start);
    cursor.start += part.byteLength;
  }
  if (cursor.start !== blob.byteLength)
    throw badBody(
      body,
      rules,
      `the body ended at byte ${cursor.start} of the ${blob.byteLength} its ${header} names`,
    );
}

/** Collects a body without a length into one fresh array, failing as soon as it passes `maxBytes`. */
async function readBoundedBody(body: ResponseBody, rules: BodyRules): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let total = 0;
  for await (const part of body) {
    total += part.byteLength;
    if (total > rules.maxBytes) {
      const err = rules.tooLarge(undefined);
      dropBody(body, rules.drop, err);
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

/** The first `maxBytes` of an error body as text; the rest is dropped the way `drop` says. */
export async function readBodyText(body: ResponseBody, maxBytes: number, drop: BodyDrop): Promise<string> {
  const parts: Uint8Array[] = [];
  let total = 0;
  for await (const part of body) {
    parts.push(part);
    total += part.byteLength;
    if (total >= maxBytes) {
      dropBody(body, drop);
      break;
    }
  }
  return Buffer.concat(parts).subarray(0, maxBytes).toString('utf8');
}
