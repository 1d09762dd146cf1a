import type { Dispatcher } from 'undici';
import { S3Error } from './s3-error.js';
import { MAX_ERROR_BODY_BYTES } from './s3-retry.js';

/* Reading answer bodies: bounded, into arrays the caller owns. */

/** Drops the rest of a body (and the connection under it); its abort error is expected, not a crash. */
export function discard(body: Dispatcher.ResponseData['body']): void {
  body.on('error', () => undefined);
  body.destroy();
}

/** Reads a body of at most `maxBytes` into one fresh array (never a view of a pooled Buffer). */
export async function readBounded(
  body: Dispatcher.ResponseData['body'],
  maxBytes: number,
  headers: Record<string, string | string[] | undefined>,
  path: string,
): Promise<Uint8Array> {
  const declared = headers['content-length'] === undefined ? undefined : Number(headers['content-length']);
  const tooLarge = (): S3Error =>
    new S3Error('ERR_LR_S3_RESPONSE_TOO_LARGE', `${path}: the answer is over the limit of ${maxBytes} bytes`);
  if (declared !== undefined && declared > maxBytes) {
    discard(body);
    throw tooLarge();
  }
  if (declared !== undefined && Number.isSafeInteger(declared)) {
    const out = new Uint8Array(declared);
    let offset = 0;
    for await (const part of body as AsyncIterable<Uint8Array>) {
      if (offset + part.byteLength > declared) {
        discard(body);
        throw new S3Error(
          'ERR_LR_S3_BAD_RESPONSE',
          `${path}: more bytes than the Content-Length of ${declared}`,
        );
      }
      out.set(part, offset);
      offset += part.byteLength;
    }
    if (offset !== declared)
      throw new S3Error(
        'ERR_LR_S3_BAD_RESPONSE',
        `${path}: ${offset} bytes of the Content-Length of ${declared}`,
      );
    return out;
  }
  const parts: Uint8Array[] = [];
  let total = 0;
  for await (const part of body as AsyncIterable<Uint8Array>) {
    total += part.byteLength;
    if (total > maxBytes) {
      discard(body);
      throw tooLarge();
    }
    parts.push(part);
  }
  const out = new Uint8Array(total);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.byteLength;
  }
  return out;
}

/** The first bytes of an error body as text; the rest is discarded. */
export async function readErrorBody(body: Dispatcher.ResponseData['body']): Promise<string> {
  const parts: Uint8Array[] = [];
  let total = 0;
  for await (const part of body as AsyncIterable<Uint8Array>) {
    parts.push(part);
    total += part.byteLength;
    if (total >= MAX_ERROR_BODY_BYTES) {
      discard(body);
      break;
    }
  }
  return Buffer.concat(parts).subarray(0, MAX_ERROR_BODY_BYTES).toString('utf8');
}

/**
 * Copies a 206 answer to `Range: bytes=START-` into `piece.blob` at `piece.start`,
 * advancing `piece.start` as bytes arrive. `Content-Range: bytes START-LAST/TOTAL` must
 * start at `piece.start`, end at the object's end and name the same TOTAL every time.
 */
export async function readPieceBody(
  status: number,
  headers: Record<string, string | string[] | undefined>,
  body: Dispatcher.ResponseData['body'],
  piece: { start: number; blob: Uint8Array | undefined },
  maxBytes: number,
  key: string,
): Promise<void> {
  const range = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(String(headers['content-range'] ?? ''));
  const bad = (why: string): S3Error => {
    discard(body);
    return new S3Error('ERR_LR_S3_BAD_RESPONSE', `GET ${key} from byte ${piece.start}: ${why}`);
  };
  if (status !== 206 || range === null) throw bad(`expected 206 with a Content-Range, got ${status}`);
  const [first, last, total] = [Number(range[1]), Number(range[2]), Number(range[3])];
  if (total > maxBytes) throw bad(`the object is ${total} bytes, over the limit of ${maxBytes}`);
  if (first !== piece.start || last !== total - 1)
    throw bad(`Content-Range ${range[0]} is not the rest of the object`);
  if (piece.blob === undefined) piece.blob = new Uint8Array(total);
  else if (piece.blob.byteLength !== total)
    throw bad(`the object changed size (${piece.blob.byteLength} → ${total})`);
  for await (const part of body as AsyncIterable<Uint8Array>) {
    if (piece.start + part.byteLength > total) throw bad('more bytes than the Content-Range names');
    piece.blob.set(part, piece.start);
    piece.start += part.byteLength;
  }
  if (piece.start !== total)
    throw new S3Error(
      'ERR_LR_S3_BAD_RESPONSE',
      `GET ${key}: the answer ended at byte ${piece.start} of ${total}`,
    );
}
