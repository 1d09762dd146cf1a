/**
 * The seam between a {@link LiveDrive} and its files: the target file (pread, pwrite,
 * datasync, size, close) and the atomic map write. The real implementation wraps a
 * FileHandle and `writeMapFile`; tests put a fault-injecting one in between (EIO,
 * ENOSPC, a crash that drops what was not synced, a crash between the data sync and
 * the map's rename).
 */
import { type FileHandle, open } from 'node:fs/promises';
import { writeMapFile } from './alloc-map.js';

/** One open target file. Errors are Node system errors (`code` ENOSPC, EIO, …). */
export interface TargetFile {
  /** Fills `buffer` with the bytes at `position` (zeroes past the end of the file). */
  pread(buffer: Uint8Array, position: number): Promise<void>;
  /** Writes all of `data` at `position`. */
  pwrite(data: Uint8Array, position: number): Promise<void>;
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

/** A {@link TargetFile} over a FileHandle (positional reads and writes, looped until complete). */
export class FileTarget implements TargetFile {
  readonly #handle: FileHandle;

  constructor(handle: FileHandle) {
    this.#handle = handle;
  }

  static async open(path: string): Promise<FileTarget> {
    return new FileTarget(await open(path, 'r+'));
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

  datasync(): Promise<void> {
    return this.#handle.datasync();
  }

  async size(): Promise<number> {
    return (await this.#handle.stat()).size;
  }

  close(): Promise<void> {
    return this.#handle.close();
  }
}

/** The real files: {@link FileTarget} and `writeMapFile`. */
export const realTargetFiles: TargetFiles = {
  openTarget: (path) => FileTarget.open(path),
  writeMap: writeMapFile,
};

const ZERO_BLOCK = new Uint8Array(4 * 1024 * 1024);

/** Writes `length` zero bytes at `position` (in blocks of at most 4 MiB). */
export async function writeZeroes(file: TargetFile, length: number, position: number): Promise<void> {
  for (let at = 0; at < length; at += ZERO_BLOCK.length) {
    await file.pwrite(ZERO_BLOCK.subarray(0, Math.min(ZERO_BLOCK.length, length - at)), position + at);
  }
}
