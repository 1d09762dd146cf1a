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
