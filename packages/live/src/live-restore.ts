/**
 * liveRestore and the LiveRestore it returns: opening a live restore in its safe order
 * (snapshot, NBD address, target dir, lock, drives), then the running restore's life (copy
 * jobs, stall and retry on a full disk, progress, completion, close). About 400 lines on
 * purpose: the open order and the close order mirror each other and are read together;
 * the types are in live-restore-types.ts, the pieces it drives (LiveDrive, runCopyJob,
 * lockTargetDir, the schedulers) in their own modules.
 */

import { EventEmitter } from 'node:events';
import { mkdir } from 'node:fs/promises';
import { type NbdServer, startNbdServer } from '@liverestore/nbd';
import { ChunkCache, type ChunkCacheStats, openSnapshot, type Snapshot } from '@liverestore/reader';
import { runCopyJob } from './copy-job.js';
import { deferredExport } from './deferred-export.js';
import { LiveError, systemCode } from './errors.js';
import { LiveDrive } from './live-drive.js';
import type { LiveRestoreOptions, LiveRestoreProgress, LiveRestoreSummary } from './live-restore-types.js';
import { GuestPriority, Semaphore, TokenBucket } from './sched.js';
import { diskTargetFiles } from './target-file.js';
import { lockTargetDir, type TargetLock } from './target-lock.js';

export type {
  DriveProgress,
  LiveRestoreOptions,
  LiveRestoreProgress,
  LiveRestoreSummary,
} from './live-restore-types.js';

/** Distinct guest read failures a restore reports as warnings; beyond, they are only answered. */
const MAX_READ_FAILURES_REPORTED = 1000;

interface Events {
  progress: [LiveRestoreProgress];
  done: [LiveRestoreSummary];
  /**
   * A non-fatal problem: a copy-on-read store or a periodic persist failed (it is retried),
   * or a guest read failed (its client got an NBD error; reported once per distinct failure).
   */
  warning: [Error];
  /**
   * The background copy stopped because the target file system is full
   * (`ERR_LR_LIVE_NO_SPACE`); the exports keep serving, and the copy is retried every
   * `copyRetryMs` (or at once by {@link LiveRestore.startCopy}).
   */
  stalled: [Error];
}

/**
 * A running writable live restore: one {@link LiveDrive} per disk image of the snapshot
 * (serve them with `startNbdServer({ exports: restore.drives })`), a background copy job
 * per drive, periodic persistence of the maps, progress events.
 */
export class LiveRestore extends EventEmitter<Events> {
  /** Resolves when every region of every drive is local and persisted (the backup is closed then). */
  readonly done: Promise<LiveRestoreSummary>;
  readonly #snapshot: Snapshot;
  readonly #cache: ChunkCache;
  readonly #ownsCache: boolean;
  readonly #lock: TargetLock;
  readonly #abort = new AbortController();
  readonly #started = performance.now();
  readonly #bytesLocalAtStart: number;
  readonly #options: LiveRestoreOptions;
  readonly #priority: GuestPriority;
  readonly #bucket: TokenBucket | undefined;
  readonly #timers: NodeJS.Timeout[] = [];
  readonly #samples: { at: number; bytes: number }[] = [];
  #resolveDone!: (summary: LiveRestoreSummary) => void;
  #rejectDone!: (err: unknown) => void;
  #copy: Promise<void> | undefined;
  #stalled: Error | undefined;
  #retryTimer: NodeJS.Timeout | undefined;
  #complete = false;
  #backupClosed = false;
  #closed: Promise<void> | undefined;
  #finalCacheStats: ChunkCacheStats | undefined;
  /** Distinct guest read failures reported (see #readFailed). */
  readonly #readFailures = new Set<string>();

  /** @internal use {@link liveRestore} */
  constructor(
    readonly drives: readonly LiveDrive[],
    /** The NBD server of the drives (absent with `listen: false`). */
    readonly server: NbdServer | undefined,
    snapshot: Snapshot,
    cache: ChunkCache,
    ownsCache: boolean,
    lock: TargetLock,
    priority: GuestPriority,
    options: LiveRestoreOptions,
  ) {
    super();
    this.#snapshot = snapshot;
    this.#cache = cache;
    this.#ownsCache = ownsCache;
    this.#lock = lock;
    this.#priority = priority;
    this.#options = options;
    this.#bucket =
      options.rateLimitBytesPerSecond === undefined
        ? undefined
        : new TokenBucket(
            options.rateLimitBytesPerSecond,
            Math.max(drives[0]?.regionBytes ?? 0, options.rateLimitBytesPerSecond / 4),
          );
    this.#bytesLocalAtStart = drives.reduce((sum, d) => sum + d.bytesLocal, 0);
    this.done = new Promise<LiveRestoreSummary>((resolve, reject) => {
      this.#resolveDone = resolve;
      this.#rejectDone = reject;
    });
    this.done.catch(() => undefined); // a caller that never awaits it must not crash the process
    for (const drive of drives) {
      drive.onStoreError = (err) => this.emit('warning', err);
      drive.onReadError = (err, offset) => this.#readFailed(drive, offset, err);
    }
    const persistMs = options.persistIntervalMs ?? 1000;
    const progressMs = options.progressIntervalMs ?? 1000;
    this.#timers.push(setInterval(() => this.#persistDirty(), persistMs));
    this.#timers.push(setInterval(() => this.emit('progress', this.progress()), progressMs));
    for (const t of this.#timers) t.unref();
    this.#sample();
    if (options.startCopy !== false) this.startCopy();
  }

  /** `vm/100/2026-11-26T10:00:00Z`. */
  get snapshot(): string {
    return this.#snapshot.path;
  }

  get targetDir(): string {
    return this.#options.targetDir;
  }

  /** `127.0.0.1:10809` or the socket path; undefined without a server. */
  get address(): string | undefined {
    return this.server?.address;
  }

  /** NBD clients connected now. */
  clients(): number {
    return this.server?.stats().connections ?? 0;
  }

  /** True when existing targets were resumed (not created by this run). */
  get resumed(): boolean {
    return this.drives.some((d) => d.resumed);
  }

  /** True once every region of every drive is local and persisted. */
  get complete(): boolean {
    return this.#complete;
  }

  /** The error that stopped the copy on a full disk, until it runs again; undefined otherwise. */
  get stalled(): Error | undefined {
    return this.#stalled;
  }

  /**
   * Starts the background copy (done by {@link liveRestore} unless `startCopy: false`), or
   * restarts it after it stalled on a full disk.
   */
  startCopy(): void {
    if (this.#copy !== undefined || this.#closed !== undefined || this.#complete) return;
    clearTimeout(this.#retryTimer);
    this.#stalled = undefined;
    const signal = this.#abort.signal;
    this.#copy = Promise.all(
      this.drives.map((drive) =>
        runCopyJob(drive, {
          concurrency: this.#options.copyConcurrency,
          bucket: this.#bucket,
          priority: this.#priority,
          signal,
        }),
      ),
    ).then(
      () => this.#finish(),
      (err: unknown) => {
        if (signal.aborted) return;
        void this.#persistDirty();
        if ((err as { code?: unknown }).code === 'ERR_LR_LIVE_NO_SPACE') this.#stall(err as Error);
        else this.#rejectDone(err);
      },
    );
  }

  /**
   * A full disk stops only the copy: local regions stay served, writes and fills that
   * need space fail with ENOSPC, and the copy is tried again later.
   */
  /**
   * A guest read failed: a warning naming the drive, the offset, the code and the message
   * (which names a corrupt chunk's digest), once per distinct failure and at most
   * {@link MAX_READ_FAILURES_REPORTED} of them (later ones still fail, unreported).
   */
  #readFailed(drive: LiveDrive, offset: number, err: unknown): void {
    const code = (err as { code?: unknown }).code;
    const message = err instanceof Error ? err.message : String(err);
    const key = `${drive.name}\0${String(code)}\0${message}`;
    if (this.#readFailures.has(key) || this.#readFailures.size >= MAX_READ_FAILURES_REPORTED) return;
    this.#readFailures.add(key);
    const errno = err instanceof LiveError ? (err.errno ?? 'EIO') : 'EIO';
    this.emit(
      'warning',
      new LiveError(
        typeof code === 'string' ? code : 'ERR_LR_LIVE_TARGET_IO',
        `read of ${drive.name} at ${offset} failed (the client got ${errno}): ${message}`,
        { cause: err },
      ),
    );
  }

  #stall(err: Error): void {
    this.#copy = undefined;
    this.#stalled = err;
    this.#retryTimer = setTimeout(() => this.startCopy(), this.#options.copyRetryMs ?? 10_000);
    this.#retryTimer.unref();
    this.emit('warning', err);
    this.emit('stalled', err);
  }

  async #finish(): Promise<void> {
    try {
      for (const drive of this.drives) await drive.persist();
      this.#complete = true;
      // Every region is local: no map changes and no progress from now on.
      for (const t of this.#timers) clearInterval(t);
      for (const drive of this.drives) drive.detachBackup();
      await this.#closeBackup();
      const summary = this.#summary();
      this.#resolveDone(summary);
      this.emit('progress', this.progress());
      this.emit('done', summary);
    } catch (err) {
      this.#rejectDone(err);
    }
  }

  /** Closes the snapshot's source and (when ours) the cache: the backup is never read again. */
  async #closeBackup(): Promise<void> {
    if (this.#backupClosed) return;
    this.#backupClosed = true;
    this.#finalCacheStats = this.#cache.stats();
    await this.#snapshot.close();
    if (this.#ownsCache) await this.#cache.close();
  }

  #persistDirty(): Promise<void> {
    return Promise.all(
      this.drives.map((d) =>
        d.dirty ? d.persist().catch((err: unknown) => void this.emit('warning', err as Error)) : undefined,
      ),
    ).then(() => undefined);
  }

  #sample(): { at: number; bytes: number }[] {
    const at = performance.now();
    const bytes = this.drives.reduce((sum, d) => sum + d.bytesLocal, 0);
    this.#samples.push({ at, bytes });
    while (this.#samples.length > 2 && at - this.#samples[0]!.at > 5000) this.#samples.shift();
    return this.#samples;
  }

  /** A progress report now. */
  progress(): LiveRestoreProgress {
    const samples = this.#sample();
    const first = samples[0]!;
    const last = samples[samples.length - 1]!;
    const seconds = (last.at - first.at) / 1000;
    const rate = seconds > 0.2 ? (last.bytes - first.bytes) / seconds : 0;
    const bytesTotal = this.drives.reduce((sum, d) => sum + d.size, 0);
    const bytesLocal = last.bytes;
    const stats = this.cacheStats();
    const served = stats.hits + stats.dedupJoins;
    const requests = served + stats.misses;
    return {
      snapshot: this.snapshot,
      elapsedSeconds: (performance.now() - this.#started) / 1000,
      bytesTotal,
      bytesLocal,
      bytesPerSecond: rate,
      etaSeconds: bytesLocal >= bytesTotal ? 0 : rate > 0 ? (bytesTotal - bytesLocal) / rate : undefined,
      cacheHitRate: requests === 0 ? 0 : served / requests,
      complete: this.#complete,
      drives: this.drives.map((d) => {
        const s = d.stats();
        return {
          name: d.name,
          target: d.targetPath,
          sizeBytes: d.size,
          bytesLocal: s.bytesLocal,
          regionsLocal: s.regionsLocal,
          regionCount: s.regionCount,
          complete: s.complete,
          bytesCopied: s.bytesCopied,
          bytesFilledForGuest: s.bytesFilledForGuest,
          bytesFromTargetCopies: s.bytesFromTargetCopies,
          bytesWrittenByGuest: s.bytesWrittenByGuest,
        };
      }),
    };
  }

  /** Counters of the shared cache (frozen once the backup is closed). */
  cacheStats(): ChunkCacheStats {
    return this.#finalCacheStats ?? this.#cache.stats();
  }

  #summary(): LiveRestoreSummary {
    return {
      snapshot: this.snapshot,
      targetDir: this.targetDir,
      seconds: (performance.now() - this.#started) / 1000,
      bytesLocalAtStart: this.#bytesLocalAtStart,
      drives: this.drives.map((d) => d.stats()),
      cache: this.cacheStats(),
    };
  }

  /**
   * Closes the NBD server (in-flight requests finish, bounded), stops the copy (in-flight
   * regions finish), persists every map, closes the targets and the backup. `done` rejects
   * with ERR_LR_LIVE_CLOSED if the restore was not complete; the same target dir resumes.
   */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      for (const t of this.#timers) clearInterval(t);
      clearTimeout(this.#retryTimer);
      const errors: unknown[] = [];
      await this.server?.close().catch((err: unknown) => errors.push(err));
      this.#abort.abort(new LiveError('ERR_LR_LIVE_CLOSED', 'the live restore was closed'));
      await this.#copy;
      for (const drive of this.drives) await drive.close().catch((err: unknown) => errors.push(err));
      if (!this.#complete) {
        this.#rejectDone(
          new LiveError('ERR_LR_LIVE_CLOSED', 'the live restore was closed before every region was local'),
        );
      }
      await this.#closeBackup().catch((err: unknown) => errors.push(err));
      await this.#lock.release();
      if (errors.length > 0) throw errors[0];
    })();
    return this.#closed;
  }
}

/**
 * Starts a writable live restore of every disk image (fixed-index archive) of a snapshot
 * into `targetDir`, or resumes the one found there: opens the snapshot over one shared
 * cache, creates or checks each target and map, and starts the background copy.
 */
export async function liveRestore(options: LiveRestoreOptions): Promise<LiveRestore> {
  const ownsCache = options.cache === undefined;
  const cache =
    options.cache ??
    new ChunkCache({
      ...(options.cacheBytes === undefined ? {} : { cacheBytes: options.cacheBytes }),
      ...(options.workers === undefined ? {} : { workers: options.workers }),
      prefault: true, // the guest's first reads must not pay the arena's first-touch faults
      onLoad: options.onLoad,
      decodeAsArriving: options.decodeAsArriving,
    });
  let snapshot: Snapshot | undefined;
  let lock: TargetLock | undefined;
  let server: NbdServer | undefined;
  const drives: LiveDrive[] = [];
  let openDrives!: (drives: LiveDrive[]) => void;
  let failOpen!: (err: unknown) => void;
  const opened = new Promise<LiveDrive[]>((resolve, reject) => {
    openDrives = resolve;
    failOpen = reject;
  });
  opened.catch(() => undefined);
  try {
    snapshot = await openSnapshot({
      source: options.source,
      snapshot: options.snapshot,
      cache,
      crypt: options.crypt,
      http: options.http,
    });
    const archives = snapshot.archives.filter((a) => a.kind === 'fixed');
    if (archives.length === 0) {
      throw new LiveError(
        'ERR_LR_LIVE_NOT_A_DISK',
        `snapshot ${snapshot.path} has no disk image (.fidx) to restore`,
      );
    }
    const readers = [];
    for (const archive of archives) {
      readers.push({
        reader: await snapshot.openArchive(
          archive.name,
          options.readaheadChunks === undefined ? {} : { readaheadChunks: options.readaheadChunks },
        ),
        copyReader: await snapshot.openArchive(archive.name, {
          readaheadChunks: options.copyReadaheadChunks ?? 2,
        }),
      });
    }
    // The address first: a busy port fails before anything is created in the target dir.
    if (options.listen !== false) {
      server = await startNbdServer({
        exports: readers.map(({ reader }, k) =>
          deferredExport(
            reader.name,
            reader.size,
            opened.then((all) => all[k]!),
          ),
        ),
        listen: options.listen ?? { host: '127.0.0.1', port: 10809 },
        log: options.log,
        tls: options.tls,
      });
    }
    try {
      await mkdir(options.targetDir, { recursive: true });
    } catch (err) {
      throw new LiveError(
        'ERR_LR_LIVE_TARGET_IO',
        `cannot create ${options.targetDir} (${systemCode(err) ?? 'error'})`,
        { cause: err },
      );
    }
    lock = await lockTargetDir(options.targetDir);
    const priority = new GuestPriority();
    // Region buffers of guest fills in flight, for all drives: 32 × 4 MiB = 128 MiB at most.
    const fillSlots = new Semaphore(32);
    for (const { reader, copyReader } of readers) {
      drives.push(
        await LiveDrive.open({
          reader,
          copyReader,
          targetDir: options.targetDir,
          snapshot: snapshot.path,
          priority,
          fillSlots,
          files: options.files ?? diskTargetFiles({ directWrites: options.directWrites }),
        }),
      );
    }
    openDrives(drives);
    return new LiveRestore(drives, server, snapshot, cache, ownsCache, lock, priority, options);
  } catch (err) {
    failOpen(err);
    await server?.close().catch(() => undefined);
    for (const drive of drives) await drive.close().catch(() => undefined);
    await lock?.release();
    await snapshot?.close();
    if (ownsCache) await cache.close();
    throw err;
  }
}
