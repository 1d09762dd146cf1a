import { type FileHandle, open, readFile, stat } from 'node:fs/promises';
import { BackupSourceError } from './errors.js';

/** An opened backup input: a regular file or a block device, with its size. */
export interface ImageSource {
  readonly handle: FileHandle;
  readonly sizeBytes: number;
  readonly isBlockDevice: boolean;
}

/**
 * Size of a block device. `fstat` reports 0 for devices and Node has no ioctl, so we ask
 * sysfs, which the kernel keeps for every block device (`/sys/dev/block/MAJ:MIN/size`,
 * in 512-byte sectors whatever the logical block size).
 */
async function blockDeviceSize(rdev: number, path: string): Promise<number> {
  const major = Number((BigInt(rdev) >> 8n) & 0xfffn) | Number((BigInt(rdev) >> 32n) & ~0xfffn);
  const minor = Number(BigInt(rdev) & 0xffn) | Number((BigInt(rdev) >> 12n) & ~0xffn);
  try {
    const sectors = Number((await readFile(`/sys/dev/block/${major}:${minor}/size`, 'utf8')).trim());
    return sectors * 512;
  } catch (cause) {
    throw new BackupSourceError(
      'ERR_LR_SOURCE_UNREADABLE',
      `cannot determine the size of block device ${path}`,
      { cause },
    );
  }
}

/** Opens a backup input for reading; fails with `ERR_LR_SOURCE_UNREADABLE` naming the path and reason. */
export async function openImageSource(path: string): Promise<ImageSource> {
  // Check the kind before opening: opening a FIFO blocks until a writer appears, and a
  // character device or /proc file reports size 0 and would back up as an empty image.
  let kind: Awaited<ReturnType<typeof stat>>;
  try {
    kind = await stat(path);
  } catch (cause) {
    const reason = (cause as { code?: string }).code ?? 'error';
    throw new BackupSourceError('ERR_LR_SOURCE_UNREADABLE', `cannot open ${path} for reading (${reason})`, {
      cause,
    });
  }
  if (kind.isDirectory()) {
    throw new BackupSourceError(
      'ERR_LR_SOURCE_UNREADABLE',
      `${path} is a directory, not a file or block device`,
    );
  }
  if (!kind.isFile() && !kind.isBlockDevice()) {
    throw new BackupSourceError('ERR_LR_SOURCE_UNREADABLE', `${path} is not a regular file or block device`);
  }
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch (cause) {
    const reason = (cause as { code?: string }).code ?? 'error';
    throw new BackupSourceError('ERR_LR_SOURCE_UNREADABLE', `cannot open ${path} for reading (${reason})`, {
      cause,
    });
  }
  try {
    const info = await handle.stat();
    if (info.isDirectory()) {
      throw new BackupSourceError(
        'ERR_LR_SOURCE_UNREADABLE',
        `${path} is a directory, not a file or block device`,
      );
    }
    const isBlockDevice = info.isBlockDevice();
    const sizeBytes = isBlockDevice ? await blockDeviceSize(info.rdev, path) : info.size;
    return { handle, sizeBytes, isBlockDevice };
  } catch (err) {
    await handle.close();
    throw err;
  }
}

/** Reads exactly `length` bytes at `position` (short reads retried); fails if the file shrank. */
export async function readFully(
  source: ImageSource,
  buffer: Buffer,
  length: number,
  position: number,
  path: string,
): Promise<void> {
  let done = 0;
  while (done < length) {
    let bytesRead: number;
    try {
      ({ bytesRead } = await source.handle.read(buffer, done, length - done, position + done));
    } catch (cause) {
      throw new BackupSourceError(
        'ERR_LR_SOURCE_UNREADABLE',
        `read error in ${path} at offset ${position + done}`,
        { cause },
      );
    }
    if (bytesRead === 0) {
      throw new BackupSourceError(
        'ERR_LR_SOURCE_CHANGED',
        `${path} ended at ${position + done} bytes while being backed up (it was ${source.sizeBytes})`,
      );
    }
    done += bytesRead;
  }
}
