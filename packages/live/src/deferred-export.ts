import type { AllocationExtent, NbdExport } from '@liverestore/nbd';
import type { LiveDrive } from './live-drive.js';

/**
 * The NBD export of a drive that is not open yet: it lets a live restore take its listen
 * address before it creates or locks anything in the target directory (a busy port then
 * fails with nothing created). Requests wait until the drive is open; block status before
 * that reports data (never wrong, only less precise). Name and size come from the archive.
 */
export function deferredExport(name: string, size: number, drive: Promise<LiveDrive>): NbdExport {
  let opened: LiveDrive | undefined;
  void drive.then(
    (d) => {
      opened = d;
    },
    () => undefined, // a request waiting on it gets the error
  );
  return {
    name,
    size,
    read: async (buffer, offset, signal) => (await drive).read(buffer, offset, signal),
    lease: async (offset, length, signal, scratch) => (await drive).lease(offset, length, signal, scratch),
    blockStatus(offset: number, length: number, maxExtents: number): AllocationExtent[] {
      if (opened !== undefined) return opened.blockStatus(offset, length, maxExtents);
      return [{ length: Math.min(length, size - offset), hole: false, zero: false }];
    },
    writer: {
      write: async (data, offset, fua) => (await drive).writer.write(data, offset, fua),
      writeZeroes: async (offset, length, fua, noHole) =>
        (await drive).writer.writeZeroes(offset, length, fua, noHole),
      trim: async (offset, length, fua) => (await drive).writer.trim(offset, length, fua),
      flush: async () => (await drive).writer.flush(),
    },
  };
}
