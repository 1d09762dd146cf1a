import { decodeChunk, LiverestoreError } from '@liverestore/format';
import { cryptConfigForKey } from '@liverestore/format/internal';
import { workerData } from 'piscina';
import { type ErrorRecord, toErrorRecord } from './errors.js';
import { type SharedCacheMemory, SlotTable } from './slot-table.js';

/** A chunk to verify and decode into the pages of its slot. */
export interface DecodeTask {
  readonly blob: Uint8Array;
  readonly digestHex: string;
  /** Exact plaintext length the index expects; also the decompression limit. */
  readonly length: number;
  readonly pages: Int32Array;
  /** Raw encryption key for chunks of encrypted archives. */
  readonly key?: Uint8Array;
}

/** Errors travel as records: structured clone would drop `code`. */
export type DecodeResult = { readonly ok: true } | { readonly ok: false; readonly error: ErrorRecord };

/**
 * CRC-32, decrypt, decompress (bounded by the expected length), SHA-256 check, then the
 * plaintext goes straight into the slot's pages. Nothing is written unless the digest matched.
 */
export function decodeInto(table: SlotTable, task: DecodeTask): DecodeResult {
  try {
    const plain = decodeChunk(task.blob, Buffer.from(task.digestHex, 'hex'), {
      crypt: task.key === undefined ? undefined : cryptConfigForKey(task.key),
      maxBytes: task.length,
    });
    if (plain.byteLength !== task.length) {
      throw new LiverestoreError(
        'ERR_LR_CHUNK_LENGTH_MISMATCH',
        `chunk ${task.digestHex} holds ${plain.byteLength} bytes, the index expects ${task.length}`,
      );
    }
    table.copyIn(task.pages, plain);
    return { ok: true };
  } catch (err) {
    return { ok: false, error: toErrorRecord(err) };
  }
}

const memory = (workerData as { memory?: SharedCacheMemory } | undefined)?.memory;
const table = memory === undefined ? undefined : new SlotTable(memory);

/** Piscina entry point (named export, selected with `name: 'decode'`). */
export function decode(task: DecodeTask): DecodeResult {
  if (table === undefined) throw new Error('decode worker started without shared cache memory');
  return decodeInto(table, task);
}
