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
  return move(blob) as Uint8Array;
}
