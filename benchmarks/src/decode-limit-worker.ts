/**
 * Worker of the decode-limit case of `pnpm bench restore`: the full decode path of one
 * chunk (CRC-32, decompress, SHA-256 check) and nothing else — no fetch, no cache, no copy
 * of the plaintext anywhere (decodeChunkWith, as the decode threads of a restore run it).
 * The restore is compared against this.
 */
import { decodeChunkWith } from '@liverestore/format/internal';

export interface DecodeLimitTask {
  readonly blob: Uint8Array;
  readonly digestHex: string;
  readonly length: number;
}

export function decodeOne(task: DecodeLimitTask): number {
  return decodeChunkWith(
    task.blob,
    Buffer.from(task.digestHex, 'hex'),
    { maxBytes: task.length },
    (plain) => plain.byteLength,
  );
}
