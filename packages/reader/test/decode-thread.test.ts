/*
 * The decode pool's entry (decode-thread.ts): the blob's memory goes back with the answer,
 * so a decode thread, whose collector seldom runs, keeps no decoded blobs.
 */
import { encodeChunk, toHex } from '@liverestore/format';
import test from 'ava';
import { Piscina } from 'piscina';
import { decodeReturningBlob } from '../src/decode-thread.js';

/** A file task (no shared cache memory needed here) for a blob of `data`; `fd` is never written when the blob is bad. */
function task(blob: Uint8Array, digestHex: string, length: number) {
  return { blob, digestHex, length, file: { fd: -1, offsets: [], sparse: true } };
}

test('the blob of a decode goes back with its answer, its whole buffer; a view on shared memory does not', (t) => {
  const data = Buffer.alloc(4096, 7);
  const { digest, blob } = encodeChunk(data, { compress: 'none' });
  const own = new Uint8Array(blob); // a whole ArrayBuffer of its own, as after a transfer
  own[own.length - 1]! ^= 1; // the digest check fails: nothing is written
  const answer = decodeReturningBlob(task(own, toHex(digest), data.byteLength)) as Record<symbol, unknown>;
  t.is(answer[Piscina.transferableSymbol], own.buffer, 'the memory moves back');
  t.like(answer[Piscina.valueSymbol], {
    result: { ok: false, error: { code: 'ERR_LR_DIGEST_MISMATCH' } },
    blobMemory: own.buffer,
  });

  // A blob in part of a larger buffer (the cache's blob pool): the whole buffer goes back.
  const pooled = new Uint8Array(new ArrayBuffer(own.byteLength + 4096), 0, own.byteLength);
  pooled.set(own);
  const back = decodeReturningBlob(task(pooled, toHex(digest), data.byteLength)) as Record<symbol, unknown>;
  t.is(back[Piscina.transferableSymbol], pooled.buffer);

  const shared = new Uint8Array(new SharedArrayBuffer(own.byteLength));
  shared.set(own);
  const plain = decodeReturningBlob(task(shared, toHex(digest), data.byteLength));
  t.like(plain, { result: { ok: false } }, 'the answer alone: shared memory is never moved');
  t.is((plain as { blobMemory?: unknown }).blobMemory, undefined);
});
