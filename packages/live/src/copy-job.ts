import { settleAll } from './async-util.js';
import type { LiveDrive } from './live-drive.js';
import type { GuestPriority, TokenBucket } from './sched.js';

/** Options of {@link runCopyJob}. */
export interface CopyJobOptions {
  /** Regions in flight at once for this drive (default 2). */
  concurrency?: number | undefined;
  /** Shared rate limit of backup bytes fetched by the copy jobs. */
  bucket?: TokenBucket | undefined;
  /** Shared with the drives: the copy waits while guest fills are in flight. */
  priority?: GuestPriority | undefined;
  signal?: AbortSignal | undefined;
}

/**
 * The background copy of one drive: every region not yet local is filled from the
 * backup, in order, with at most `concurrency` regions in flight, each started only when
 * no guest fill is waiting (bounded wait) and the rate limit allows. Resolves when every
 * region of the drive is local (each region not local was filled under its lock, so none
 * can be missed); rejects with the first failure (the regions already local stay local).
 */
export async function runCopyJob(drive: LiveDrive, options: CopyJobOptions = {}): Promise<void> {
  const concurrency = options.concurrency ?? 2;
  if (!Number.isInteger(concurrency) || concurrency < 1)
    throw new RangeError('copy concurrency must be a positive integer');
  const signal = options.signal;
  let next = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    while (!failed && next < drive.regionCount) {
      const i = next++;
      if (drive.isLocal(i)) continue;
      signal?.throwIfAborted();
      await options.priority?.idle(signal);
      if (options.bucket !== undefined && !drive.isZeroRegionOfBackup(i))
        await options.bucket.take(drive.regionLength(i), signal);
      try {
        await drive.copyRegion(i, signal);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  await settleAll(Array.from({ length: concurrency }, worker));
}
