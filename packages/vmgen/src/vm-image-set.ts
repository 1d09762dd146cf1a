/**
 * The drives of a small synthetic VM, for restore tests, benchmarks and the demo.
 *
 * A live restore serves several drives of one VM through one shared cache, and a
 * datastore dedups chunks across them; both need drives that differ in content
 * but share some (the same family), like a system disk and a data disk.
 */

import { Domain, hashWords, highWord, lowWord } from './hash.js';
import {
  type ContentMix,
  checkNonNegativeInteger,
  checkPositiveInteger,
  type ImageSpec,
} from './image-spec.js';

/** One drive of a {@link vmImageSet}, named as Proxmox names a VM's disks. */
export interface VmDrive {
  /** `drive-scsi0`, `drive-scsi1`, … */
  readonly name: string;
  readonly spec: ImageSpec;
}

/** Options of {@link vmImageSet}. */
export interface VmImageSetOptions {
  /** Number of drives; 2 by default. */
  readonly drives?: number;
  /** Size of every drive, or one size per drive. */
  readonly sizeBytes: number | readonly number[];
}

/** The system disk: OS files and logs (much text), half empty. */
export const SYSTEM_DISK_MIX: ContentMix = Object.freeze({
  zero: 0.35,
  text: 0.4,
  random: 0.1,
  repeat: 0.15,
});
/** Data disks: media and archives (much random), some empty space. */
export const DATA_DISK_MIX: ContentMix = Object.freeze({
  zero: 0.25,
  text: 0.15,
  random: 0.45,
  repeat: 0.15,
});

/** A per-drive seed derived from the VM seed, so drives never share their layout. */
function driveSeed(seed: number, drive: number): number {
  const lo = hashWords(Domain.deriveSeed, lowWord(seed), highWord(seed), drive, 0, 0);
  const hi = hashWords(Domain.deriveSeed, lowWord(seed), highWord(seed), drive, 1, 0) & 0x1fffff;
  return hi * 4294967296 + lo;
}

/**
 * Specs for the drives of a VM: drive-scsi0 is a system disk, the others data
 * disks; all share the family `seed`, so their repeat blocks dedup across drives.
 */
export function vmImageSet(seed: number, options: VmImageSetOptions): VmDrive[] {
  checkNonNegativeInteger(seed, 'seed');
  if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object');
  const drives = checkPositiveInteger(options.drives ?? 2, 'drives');
  const sizes = options.sizeBytes;
  if (typeof sizes !== 'number' && !Array.isArray(sizes)) {
    throw new TypeError('sizeBytes must be a non-negative safe integer or an array of them');
  }
  if (Array.isArray(sizes) && sizes.length !== drives) {
    throw new RangeError(`sizeBytes has ${sizes.length} entries for ${drives} drives`);
  }
  const out: VmDrive[] = [];
  for (let i = 0; i < drives; i++) {
    const size = checkNonNegativeInteger(typeof sizes === 'number' ? sizes : sizes[i], `sizeBytes[${i}]`);
    out.push({
      name: `drive-scsi${i}`,
      spec: {
        sizeBytes: size,
        seed: driveSeed(seed, i),
        family: seed,
        mix: i === 0 ? SYSTEM_DISK_MIX : DATA_DISK_MIX,
      },
    });
  }
  return out;
}
