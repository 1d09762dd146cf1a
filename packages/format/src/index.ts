/*
 * The public API of @liverestore/format: exactly what docs/api.md documents (a test
 * checks the two agree). Internals are in ./internal.ts.
 */
export {
  type BlobKind,
  blobKind,
  type Compression,
  canEncodeZstd,
  type DecodeBlobOptions,
  decodeBlob,
  type EncodeBlobOptions,
  encodeBlob,
  MAX_BLOB_BYTES,
  verifyBlobCrc,
} from './blob.js';
export { chunkDigest, decodeChunk, type EncodedChunk, encodeChunk } from './chunk.js';
export type { ChunkIndex } from './chunk-index.js';
export { Chunker, chunkLengths, DEFAULT_DYNAMIC_AVG_BYTES } from './chunker.js';
export { CryptConfig } from './crypt-config.js';
export { DynamicIndex, type DynamicIndexInit, readDynamicIndex, writeDynamicIndex } from './dynamic-index.js';
export {
  CryptError,
  FormatError,
  IntegrityError,
  LiverestoreError,
  type LiverestoreErrorOptions,
} from './errors.js';
export {
  DEFAULT_FIXED_CHUNK_BYTES,
  FixedIndex,
  type FixedIndexInit,
  MAX_FIXED_CHUNK_BYTES,
  MIN_FIXED_CHUNK_BYTES,
  readFixedIndex,
  writeFixedIndex,
} from './fixed-index.js';
export { DIGEST_BYTES, isHexDigest, toHex } from './hex.js';
export { decodeKeyFile, encodeKeyFile, type KeyFileJson } from './key-file.js';
export { MAGIC } from './magic.js';
export {
  BACKUP_TYPES,
  type BackupType,
  type CryptMode,
  canonicalJson,
  checkBlobAgainstManifest,
  checkIndexAgainstManifest,
  decodeManifest,
  encodeManifest,
  MANIFEST_BLOB_NAME,
  type Manifest,
  type ManifestFile,
  manifestFile,
} from './manifest.js';
export { readIndex } from './read-index.js';
export {
  napiZstd,
  nodeZlibZstd,
  wasmZstd,
  type ZstdDecoderBackend,
  type ZstdEncoderBackend,
} from './zstd-backends.js';
export {
  selectZstdCodec,
  type ZstdCodec,
  type ZstdCodecInfo,
  type ZstdLoaders,
  type ZstdPreference,
  zstdCodecInfo,
  zstdCompress,
  zstdDecompress,
} from './zstd-codec.js';
