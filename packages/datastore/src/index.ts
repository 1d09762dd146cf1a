/*
 * The public API of @liverestore/datastore: exactly what docs/api.md documents (a test
 * checks the two agree). Internals are in ./internal.ts.
 */
export { type ArchiveName, resolveArchiveName } from './archive-name.js';
export {
  type BackupStore,
  type BackupTarget,
  LocalBackupTarget,
  type SnapshotDraft,
} from './backup-target.js';
export {
  type ArchiveBackupResult,
  type BackupInput,
  type BackupOptions,
  type BackupProgress,
  type BackupResult,
  backup,
} from './backup-writer.js';
export { Datastore, type NamespaceScope } from './datastore.js';
export { BackupSourceError, DatastoreError } from './errors.js';
export { ensureGroupOwner } from './group-owner.js';
export {
  describeNamespace,
  MAX_NAMESPACE_DEPTH,
  namespacePath,
  parseNamespace,
  ROOT_NAMESPACE,
} from './namespace.js';
export { S3BackupTarget } from './s3/s3-backup-target.js';
export { type ObjectPiece, S3Client, type S3ClientStats, type S3Range } from './s3/s3-client.js';
export { S3_CHUNKS_PREFIX, S3_CONTENT_PREFIX, S3Datastore } from './s3/s3-datastore.js';
export { S3Error } from './s3/s3-error.js';
export {
  isS3Url,
  needsPathStyle,
  parseS3Url,
  resolveS3Settings,
  type S3ConnectionOptions,
  type S3Location,
  type S3Settings,
} from './s3/s3-settings.js';
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
