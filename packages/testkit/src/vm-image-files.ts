import { join } from 'node:path';
import { type ImageSpec, vmImageSet, writeImageFile } from '@liverestore/vmgen';

/** A drive of a {@link vmImageSet} written to a raw file: what a test backs up. */
export interface VmImageFile {
  /** `drive-scsi0`, `drive-scsi1`, … */
  readonly name: string;
  readonly spec: ImageSpec;
  readonly path: string;
}

/**
 * Writes the drives of `vmImageSet(seed)`, one per size in `sizeBytes`, to
 * `dir/<prefix><drive>.raw` (sparse): the images the fixtures of several packages back up
 * with the real backup writer (testkit cannot do that part: the datastore's tests depend
 * on testkit).
 */
export async function writeVmImageFiles(
  dir: string,
  seed: number,
  sizeBytes: readonly number[],
  prefix = '',
): Promise<VmImageFile[]> {
  const drives = vmImageSet(seed, { drives: sizeBytes.length, sizeBytes: [...sizeBytes] }).map((d) => ({
    ...d,
    path: join(dir, `${prefix}${d.name}.raw`),
  }));
  for (const d of drives) await writeImageFile(d.spec, d.path);
  return drives;
}
