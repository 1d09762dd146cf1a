import type { CachedChunkReader } from '@liverestore/reader';
import type { GuestPriority, Semaphore } from './sched.js';
import type { TargetFiles } from './target-file.js';

/** Counters of one drive. */
export interface LiveDriveStats {
  readonly name: string;
  readonly sizeBytes: number;
  readonly regionBytes: number;
  readonly regionCount: number;
  readonly regionsLocal: number;
  /** Bytes of the image in local regions (the last region may be short). */
  readonly bytesLocal: number;
  /** Region bytes the background copy filled from the backup. */
  readonly bytesCopied: number;
  /** Region bytes filled from the backup for guest reads (copy-on-read) and partial writes. */
  readonly bytesFilledForGuest: number;
  /**
   * Of those fills (and of guest reads answered on the way), the bytes read back from
   * another region of the target holding the same chunk instead of fetched and decoded
   * again: a chunk that occurs in several regions is fetched once (backup-copies.ts).
   */
  readonly bytesFromTargetCopies: number;
  /** Bytes the guest wrote (WRITE, WRITE_ZEROES, TRIM). */
  readonly bytesWrittenByGuest: number;
  /** Guest read requests, and how many of them needed the backup. */
  readonly guestReads: number;
  readonly guestReadsFromBackup: number;
  /** Of the bytes filled into the target, those written past the page cache (O_DIRECT). */
  readonly bytesWrittenDirect: number;
  /** Copy-on-read stores that failed (the region stays not local; it is filled again later). */
  readonly storeFailures: number;
  /** Times the map was persisted. */
  readonly mapGeneration: number;
  readonly complete: boolean;
}

/** Options of {@link LiveDrive.open}. */
export interface LiveDriveOptions {
  /** Reader for guest requests (its readahead follows the guest's stream). */
  readonly reader: CachedChunkReader;
  /** Reader for the background copy (its own readahead); default `reader`. */
  readonly copyReader?: CachedChunkReader | undefined;
  /** Directory of the target file `DIR/<archive name>` and its map `DIR/<archive name>.map`. */
  readonly targetDir: string;
  /** `vm/100/2026-11-26T10:00:00Z`: recorded in the map, checked on resume. */
  readonly snapshot: string;
  /** Shared by the drives of a restore: the copy yields to guest fills. */
  readonly priority?: GuestPriority | undefined;
  /**
   * Guest fills (copy-on-read, fill before a partial write) holding a region buffer at
   * once; shared by the drives of a restore. Default: 32 per drive.
   */
  readonly fillSlots?: Semaphore | undefined;
  /**
   * How the target and the map are opened and written (default: the real files). Tests
   * inject faults here: EIO, ENOSPC, a crash that drops unsynced writes or the map rename.
   */
  readonly files?: TargetFiles | undefined;
}
