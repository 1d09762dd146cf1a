import { esmWorkerPool } from '@liverestore/datastore/internal';
/**
 * Worker of C's optional decode pool (`bench live-restore --pbs-decode-threads N`): the
 * decode of one chunk (CRC-32, decompress, SHA-256 check) off the event-loop thread, as a
 * tokio worker thread of PBS's restore runtime would run it. The plaintext goes back
 * moved, not copied.
 */
import { decodeChunk } from '@liverestore/format';
import { Piscina } from 'piscina';

export interface PbsDecodeTask {
  readonly blob: Uint8Array;
  readonly digestHex: string;
  readonly length: number;
}

export function decodeMoved(task: PbsDecodeTask): unknown {
  const plain = decodeChunk(task.blob, Buffer.from(task.digestHex, 'hex'), { maxBytes: task.length });
  // Only a view of a whole ArrayBuffer can be moved; anything else is copied once.
  const whole = plain.byteOffset === 0 && plain.byteLength === plain.buffer.byteLength;
  return Piscina.move(whole ? new Uint8Array(plain.buffer) : new Uint8Array(plain));
}

/** A pool of `threads` threads decoding C's chunks: `decode(task)` gives the plaintext. */
export function pbsDecodePool(threads: number): {
  decode(task: PbsDecodeTask, transfer: boolean): Promise<Buffer>;
  close(): Promise<void>;
} {
  const pool = new Piscina({
    ...esmWorkerPool(new URL('./pbs-decode-worker.js', import.meta.url), 'decodeMoved'),
    minThreads: threads,
    maxThreads: threads,
  });
  return {
    async decode(task, transfer) {
      const wholeBlob = task.blob.byteOffset === 0 && task.blob.byteLength === task.blob.buffer.byteLength;
      const out: Uint8Array = await pool.run(
        task,
        transfer && wholeBlob ? { transferList: [task.blob.buffer as ArrayBuffer] } : {},
      );
      return Buffer.from(out.buffer, out.byteOffset, out.byteLength);
    },
    close: () => pool.destroy(),
  };
}
