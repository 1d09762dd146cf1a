import {
  ArrivingChunk,
  chunkLengthMismatch,
  cryptConfigForKey,
  decodeChunkWith,
} from '@liverestore/format/internal';
import { workerData } from 'piscina';
import { sameView } from './byte-views.js';
import { type FileTarget, writeToTarget } from './data-extents.js';
import { type ErrorRecord, toErrorRecord } from './errors.js';
import { type SharedCacheMemory, SlotTable } from './slot-table.js';
import { stageChunk } from './staged-writes.js';

/** A chunk blob to verify and decode. */
export interface ChunkBlobTask {
  readonly blob: Uint8Array;
  readonly digestHex: string;
  /** Exact plaintext length the index expects; also the decompression limit. */
  readonly length: number;
  /** Raw encryption key for chunks of encrypted archives. */
  readonly key?: Uint8Array;
}

/** A chunk to verify and decode into the pages of its slot. */
export interface DecodeTask extends ChunkBlobTask {
  readonly pages: Int32Array;
}

/**
 * A chunk to verify and decode into its slot's pages (which lie in one run) while its
 * blob arrives: the cache's thread writes `blob` (shared memory, the whole blob's length)
 * and counts the bytes in it in `progress` (see arriving-blob.ts).
 */
export interface ArrivingDecodeTask extends DecodeTask {
  readonly progress: Int32Array;
}

/** {@link ArrivingDecodeTask}'s `progress`: bytes of the blob arrived so far. */
export const ARRIVED = 0;
/** {@link ArrivingDecodeTask}'s `progress`: 1 once the cache gave the blob up (a failed or restarted fetch). */
export const GIVEN_UP = 1;
/** Longest wait for the next bytes before looking again (the cache wakes the thread on each). */
const ARRIVAL_WAIT_MS = 1000;

/** A chunk to verify and decode straight into an output file (a restore). */
export interface FileDecodeTask extends ChunkBlobTask {
  readonly file: FileTarget;
}

/** Errors travel as records: structured clone would drop `code`. */
export type DecodeResult = { readonly ok: true } | { readonly ok: false; readonly error: ErrorRecord };

/** The answer to a {@link FileDecodeTask}: bytes written (all offsets, holes not counted), or staged. */
export type FileDecodeResult =
  | { readonly ok: true; readonly bytesWritten: number }
  | { readonly ok: false; readonly error: ErrorRecord };

/**
 * CRC-32, decrypt, decompress (bounded by the expected length), SHA-256 check, then `use`
 * gets the plaintext: in the decoder's memory where it can be (zstd on WebAssembly), so it
 * is copied once, to where it goes, and no 4 MiB buffer is allocated per chunk; or in
 * `into`, where a decoder that writes where it is told (zstd-napi) put it.
 */
function withVerifiedPlaintext<T>(task: ChunkBlobTask, use: (plain: Buffer) => T, into?: Uint8Array): T {
  const options = {
    crypt: task.key === undefined ? undefined : cryptConfigForKey(task.key),
    maxBytes: task.length,
    into,
  };
  return decodeChunkWith(task.blob, Buffer.from(task.digestHex, 'hex'), options, (plain) => {
    if (plain.byteLength !== task.length)
      throw chunkLengthMismatch(task.digestHex, plain.byteLength, task.length);
    return use(Buffer.from(plain.buffer, plain.byteOffset, plain.byteLength));
  });
}

/**
 * Verifies and decodes a chunk into the slot's pages: decompressed there directly when
 * the pages lie in one run and the decoder can write where it is told (zstd-napi), else
 * copied there once the digest matched. Either way the slot is published only after the
 * digest check, so bytes of a chunk that fails it are never read (the failed load frees
 * the slot, and its pages are overwritten before any chunk is read from them).
 */
export function decodeInto(table: SlotTable, task: DecodeTask): DecodeResult {
  try {
    const run = table.loadingView(task.pages, task.length);
    withVerifiedPlaintext(
      task,
      (plain) => {
        if (run === undefined || !sameView(plain, run)) table.copyIn(task.pages, plain); // not decoded in place
      },
      run,
    );
    return { ok: true };
  } catch (err) {
    return { ok: false, error: toErrorRecord(err) };
  }
}

/**
 * Verifies and decodes a chunk, then writes the plaintext at every offset of its file
 * target from this thread, or stages it in the target's shared slot for the owner to
 * write (O_DIRECT, staged-writes.ts): the bytes never cross to another thread's heap or
 * through the cache. Nothing is written or staged unless the digest matched. A failed
 * write (ENOSPC) is an error record with the system's code.
 */
export function decodeToFile(task: FileDecodeTask): FileDecodeResult {
  try {
    return {
      ok: true,
      bytesWritten: withVerifiedPlaintext(task, (plain) =>
        'staging' in task.file ? stageChunk(plain, task.file) : writeToTarget(plain, task.file),
      ),
    };
  } catch (err) {
    return { ok: false, error: toErrorRecord(err) };
  }
}

/**
 * Decodes a chunk while its blob arrives (ArrivingChunk: CRC-32, zstd and SHA-256 fed each
 * piece as the cache's thread reports it), into the slot's run of pages. A blob of a kind
 * not decoded piece by piece (deflate, encrypted) or with a bad header is decoded whole
 * once it is all there, as decodeInto would. Returns 'given up' when the cache gave the
 * blob up before its end (it then decodes the blob it did get as usual); nothing is
 * published either way before the caller has the result.
 */
export function decodeArriving(table: SlotTable, task: ArrivingDecodeTask): DecodeResult | 'given up' {
  const { blob, progress } = task;
  let seen = 0;
  /** Bytes arrived once more than `seen` did; undefined once the cache gave up. */
  const next = (): number | undefined => {
    for (;;) {
      if (Atomics.load(progress, GIVEN_UP) !== 0) return undefined;
      const arrived = Atomics.load(progress, ARRIVED);
      if (arrived > seen) return arrived;
      Atomics.wait(progress, ARRIVED, arrived, ARRIVAL_WAIT_MS);
    }
  };
  try {
    const run = table.loadingView(task.pages, task.length);
    const chunk = run === undefined ? undefined : new ArrivingChunk(Buffer.from(task.digestHex, 'hex'), run);
    let whole = chunk === undefined;
    while (seen < blob.byteLength) {
      const arrived = next();
      if (arrived === undefined) return 'given up';
      if (!whole) {
        try {
          chunk!.push(blob.subarray(seen, arrived));
        } catch {
          whole = true; // its header says it is decoded whole (or is damaged: decodeInto says how)
        }
      }
      seen = arrived;
    }
    if (whole) return decodeInto(table, task);
    chunk!.finish();
    return { ok: true };
  } catch (err) {
    return { ok: false, error: toErrorRecord(err) };
  }
}

const memory = (workerData as { memory?: SharedCacheMemory } | undefined)?.memory;
const table = memory === undefined ? undefined : new SlotTable(memory);

/** Piscina entry point (named export, selected with `name: 'decode'`): a slot task, an arriving one or a file task. */
export function decode(
  task: DecodeTask | ArrivingDecodeTask | FileDecodeTask,
): DecodeResult | FileDecodeResult | 'given up' {
  if ('file' in task) return decodeToFile(task);
  if (table === undefined) throw new Error('decode worker started without shared cache memory');
  return 'progress' in task ? decodeArriving(table, task) : decodeInto(table, task);
}
