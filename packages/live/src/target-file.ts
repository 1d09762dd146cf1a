/**
 * The seam between a {@link LiveDrive} and its files: the target file (pread, pwrite,
 * datasync, size, close) and the atomic map write. The real implementation wraps a
 * FileHandle and `writeMapFile`; tests put a fault-injecting one in between (EIO,
 * ENOSPC, a crash that drops what was not synced, a crash between the data sync and
 * the map's rename).
 */
import { type FileHandle, open } from 'node:fs/promises';
import { directPrefixBytes, viewsAfter } from '@liverestore/reader/internal';
import { writeMapFile } from './alloc-map.js';
import { StagedDirectWrites } from './staged-direct.js';

/** One open target file. Errors are Node system errors (`code` ENOSPC, EIO, …). */
export interface TargetFile {
  /** Fills `buffer` with the bytes at `position` (zeroes past the end of the file). */
  pread(buffer: Uint8Array, position: number): Promise<void>;
  /** Writes all of `data` at `position`. */
  pwrite(data: Uint8Array, position: number): Promise<void>;
  /**
   * Writes `views` back to back at `position`: a run of a region's bytes (a fill), which
   * the real file writes past the page cache where it can.
   */
  pwritev(views: readonly Uint8Array[], position: number): Promise<void>;
  /** Bytes written past the page cache (O_DIRECT) so far, where the file does that. */
  readonly directBytes?: number;
  /** Makes every write completed before the call durable (fdatasync). */
  datasync(): Promise<void>;
  /** The file's size in bytes now. */
  size(): Promise<number>;
  close(): Promise<void>;
}

/** How a drive opens its target and writes its map; {@link realTargetFiles} unless a test injects faults. */
export interface TargetFiles {
  /** Opens an existing target file for reading and writing. */
  openTarget(path: string): Promise<TargetFile>;
  /** Replaces the map file at `path` atomically (temp file, fsync, rename, directory fsync). */
  writeMap(path: string, data: Buffer): Promise<void>;
}

/**
 * A {@link TargetFile} over a FileHandle (positional reads and writes, looped until
 * complete). Runs written with {@link pwritev} go past the page cache (staged-direct.ts)
 * in their 4096-aligned part, unless the file system refuses O_DIRECT or `directWrites`
 * is false; everything else is written through the page cache. fdatasync covers both.
 */
export class FileTarget implements TargetFile {
  readonly #handle: FileHandle;
  readonly #direct: StagedDirectWrites | undefined;

  constructor(handle: FileHandle, direct?: StagedDirectWrites) {
    this.#handle = handle;
    this.#direct = direct;
  }

  static async open(path: string, options: { directWrites?: boolean | undefined } = {}): Promise<FileTarget> {
    const handle = await open(path, 'r+');
    return new FileTarget(handle, options.directWrites === false ? undefined : StagedDirectWrites.open(path));
  }

  get directBytes(): number {
    return this.#direct?.bytes ?? 0;
  }

  async pread(buffer: Uint8Array, position: number): Promise<void> {
    let at = 0;
    while (at < buffer.byteLength) {
      const { bytesRead } = await this.#handle.read(buffer, at, buffer.byteLength - at, position + at);
      if (bytesRead === 0) {
        buffer.fill(0, at); // past the end of a shorter file
        return;
      }
      at += bytesRead;
    }
  }

  async pwrite(data: Uint8Array, position: number): Promise<void> {
    let at = 0;
    while (at < data.byteLength) {
      at += (await this.#handle.write(data, at, data.byteLength - at, position + at)).bytesWritten;
    }
  }

  async pwritev(views: readonly Uint8Array[], position: number): Promise<void> {
    let length = 0;
    for (const v of views) length += v.byteLength;
    const aligned = directPrefixBytes(position, length);
    const done =
      this.#direct !== undefined && aligned > 0 ? await this.#direct.write(views, aligned, position) : 0;
    let at = position + done;
    for (const view of viewsAfter(views, done)) {
      await this.pwrite(view, at);
      at += view.byteLength;
    }
  }

  datasync(): Promise<void> {
    return this.#handle.datasync();
  }

  async size(): Promise<number> {
    return (await this.#handle.stat()).size;
  }

  async close(): Promise<void> {
    this.#direct?.close();
    await this.#handle.close();
  }
}

/**
 * The real files: {@link FileTarget} and `writeMapFile`; `directWrites: false` writes
 * fills through the page cache too.
 */
export function diskTargetFiles(options: { directWrites?: boolean | undefined } = {}): TargetFiles {
  return {
    openTarget: (path) => FileTarget.open(path, options),
    writeMap: writeMapFile,
  };
}

/** The real files, fills written past the page cache where the file system allows it. */
export const realTargetFiles: TargetFiles = diskTargetFiles();

const ZERO_BLOCK = new Uint8Array(4 * 1024 * 1024);

/** Writes `length` zero bytes at `position` (in blocks of at most 4 MiB). */
export async function writeZeroes(file: TargetFile, length: number, position: number): Promise<void> {
  for (let at = 0; at < length; at += ZERO_BLOCK.length) {
    await file.pwrite(ZERO_BLOCK.subarray(0, Math.min(ZERO_BLOCK.length, length - at)), position + at);
  }
}
