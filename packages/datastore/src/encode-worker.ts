import { type Compression, encodeBlob } from '@liverestore/format';
import { cryptConfigForKey } from '@liverestore/format/internal';
import { move } from 'piscina';

/** A chunk to compress (and maybe encrypt) off the main thread. */
export interface EncodeTask {
  readonly data: Uint8Array;
  readonly compress: Compression;
  /** Raw encryption key, when the backup is encrypted. */
  readonly key?: Uint8Array;
}

/** Piscina task: returns the encoded blob, moved (not copied) back to the caller. */
export function encode(task: EncodeTask): Uint8Array {
  const blob = encodeBlob(task.data, {
    compress: task.compress,
    crypt: task.key === undefined ? undefined : cryptConfigForKey(task.key),
  });
  // A small blob (a zero chunk compresses to a few dozen bytes) is a view into Buffer's
  // shared pool, which must not be transferred: Node 22 refuses it (DataCloneError, the
  // backup dies), Node 20 copied it silently. Such a blob travels as a copy of its own.
  const whole = blob.byteOffset === 0 && blob.byteLength === blob.buffer.byteLength;
  return move(whole ? blob : new Uint8Array(blob)) as Uint8Array;
}
