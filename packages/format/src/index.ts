export * from './blob.js';
export * from './chunk.js';
export * from './chunk-index.js';
export * from './chunker.js';
export * from './crypt-config.js';
export * from './dynamic-index.js';
export * from './errors.js';
export * from './fixed-index.js';
export * from './hex.js';
export * from './key-file.js';
export * from './magic.js';
export * from './manifest.js';
export * from './read-index.js';
export {
  nativeZstdEncoder,
  nodeZlibZstd,
  wasmZstd,
  type ZstdDecoderBackend,
  type ZstdEncoderBackend,
} from './zstd-backends.js';
export * from './zstd-codec.js';
