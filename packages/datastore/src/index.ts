/*
 * The public API of @liverestore/datastore: exactly what docs/api.md documents (a test
 * checks the two agree). Internals are in ./internal.ts.
 */
export { type ArchiveName, resolveArchiveName } from './archive-name.js';
export type { BackupStore } from './backup-target.js';
export {
  type ArchiveBackupResult,
  type BackupInput,
  type BackupOptions,
  type BackupProgress,
  type BackupResult,
  backup,
} from './backup-writer.js';
export { Datastore } from './datastore.js';
export { BackupSourceError, DatastoreError } from './errors.js';
export { ensureGroupOwner } from './group-owner.js';
export {
  describeNamespace,
  MAX_NAMESPACE_DEPTH,
  type NamespaceScope,
  namespacePath,
  parseNamespace,
  ROOT_NAMESPACE,
} from './namespace.js';
export {
  isS3Url,
  parseS3Url,
  resolveS3Settings,
  S3Client,
  type S3ClientStats,
  type S3ConnectionOptions,
  S3Datastore,
  type S3Location,
  type S3Settings,
} from './s3/index.js';
export type { ArchiveInfo, SnapshotInfo } from './snapshot-files.js';
export {
  formatBackupTime,
  formatGroup,
  formatSnapshot,
  inNamespace,
  isBackupId,
  namespaceOf,
  parseBackupTime,
  parseSnapshotSpec,
  type SnapshotJson,
  type SnapshotRef,
  type SnapshotSpec,
  snapshotJson,
} from './snapshot-ref.js';
export {
  type BadChunk,
  type BadFile,
  type VerifyProgress,
  type VerifyReport,
  verifySnapshots,
} from './verify.js';
export {
  makeUpid,
  type RecordedVerify,
  recordVerifyResults,
  recordVerifyState,
  type SnapshotVerifyState,
  verifyStateOf,
} from './verify-state.js';
