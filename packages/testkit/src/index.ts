/**
 * @liverestore/testkit: deterministic synthetic VM disk images of any size, for
 * tests, benchmarks and the demo. See README.md for the model.
 */

export { type FaultMatch, FaultProxy, type ProxyFault } from './fault-proxy.js';
export { fileHashes } from './file-hashes.js';
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
export { Qmp, type QmpMessage, type StorageDaemonPaths, storageDaemonArgs, withTimeout } from './qmp.js';
export { ExtraGateway, type TestRgw, testRgw } from './rgw.js';
export { type WriteImageFileOptions, type WriteImageFileResult, writeImageFile } from './sparse-file.js';
export {
  createImageStream,
  DEFAULT_STREAM_HIGH_WATER_MARK,
  type ImageStreamOptions,
  sha256OfImage,
} from './stream.js';
export { type TempDir, tempDir } from './temp.js';
export { hasTool, requireTool, type ToolContext } from './tools.js';
export {
  DATA_DISK_MIX,
  SYSTEM_DISK_MIX,
  type VmDrive,
  type VmImageSetOptions,
  vmImageSet,
} from './vm-image-set.js';
