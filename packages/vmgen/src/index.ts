/**
 * @liverestore/vmgen: deterministic synthetic VM disk images of any size (zeros,
 * file-system-like text, random data, repeats, in a VM-like layout), for the demo,
 * tests and benchmarks. Any byte range of an image is computed on demand from its spec,
 * so a 1 TiB image costs nothing until read. See README.md for the model.
 */

export { fillImage, imageBytes } from './generate.js';
export {
  BLOCK_BYTES,
  CONTENT_KIND_NAMES,
  type ContentKindName,
  type ContentMix,
  DEFAULT_MIX,
  type ImageSpec,
  type MutationSpec,
} from './image-spec.js';
export { type ImageRegion, imageRegions, REPEAT_CYCLE_BLOCKS } from './layout.js';
export { type ByteRange, changedRanges, DEFAULT_CHANGE_BYTES, type MutateOptions, mutate } from './mutate.js';
export { prng, randomBytes } from './prng.js';
export { type WriteImageFileOptions, type WriteImageFileResult, writeImageFile } from './sparse-file.js';
export {
  createImageStream,
  DEFAULT_STREAM_HIGH_WATER_MARK,
  type ImageStreamOptions,
  sha256OfImage,
} from './stream.js';
export {
  DATA_DISK_MIX,
  SYSTEM_DISK_MIX,
  type VmDrive,
  type VmImageSetOptions,
  vmImageSet,
} from './vm-image-set.js';
