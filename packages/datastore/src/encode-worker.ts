import { type Compression, CryptConfig, encodeBlob } from '@liverestore/format';
import { move } from 'piscina';

/** A chunk to compress (and maybe encrypt) off the main thread. */
export interface EncodeTask {
  readonly data: Uint8Array;
  readonly compress: Compression;
  /** Raw encryption key, when the backup is encrypted. */
  readonly key?: Uint8Array;
}

let cached: { hex: string; crypt: CryptConfig } | undefined;

function cryptFor(key: Uint8Array): CryptConfig {
  const hex = Buffer.from(key).toString('hex');
  if (cached?.hex !== hex) cached = { hex, crypt: new CryptConfig(key) };
  return cached.crypt;
}

/** Piscina task: returns the encoded blob, moved (not copied) back to the caller. */
export function encode(task: EncodeTask): Uint8Array {
  const blob = encodeBlob(task.data, {
    compress: task.compress,
    crypt: task.key === undefined ? undefined : cryptFor(task.key),
  });
  return move(blob) as Uint8Array;
}
