import {
  type ChunkIndex,
  type CryptConfig,
  checkIndexAgainstManifest,
  decodeManifest,
  LiverestoreError,
  MANIFEST_BLOB_NAME,
  type Manifest,
  manifestFile,
  readIndex,
} from '@liverestore/format';
import { type ArchiveName, archiveOfFilename, resolveArchiveName } from './archive-name.js';
import { DatastoreError } from './errors.js';
import type { SnapshotExtras } from './snapshot-extras.js';
import { formatSnapshot, type SnapshotJson, type SnapshotRef, snapshotJson } from './snapshot-ref.js';
import { type SnapshotVerifyState, verifyStateOf } from './verify-state.js';

/** One archive of a snapshot, as listed. */
export interface ArchiveInfo extends ArchiveName {
  /** Image or file size in bytes, from the manifest. */
  readonly sizeBytes: number;
  readonly cryptMode: string;
}

/** A snapshot with what its manifest says. */
export interface SnapshotInfo {
  readonly ref: SnapshotRef;
  /** `vm/100/2026-11-26T10:00:00Z` (`ns/prod/vm/100/…` in a namespace). */
  readonly path: string;
  readonly archives: readonly ArchiveInfo[];
  /** The key fingerprint recorded in the manifest, for encrypted snapshots. */
  readonly keyFingerprint?: string;
  /** The last verify's result, when one was recorded (`unprotected.verify_state`). */
  readonly verifyState?: SnapshotVerifyState;
  /** The group's owner (PBS Authid), when the store shows it and the group has one (see SnapshotExtras). */
  readonly owner?: string;
  /** Whether PBS protects the snapshot from pruning (`.protected`); absent when the store cannot tell. */
  readonly protected?: boolean;
  /** Whether the group has notes (a non-empty `notes` file); absent when the store cannot tell. */
  readonly groupNotes?: boolean;
}

/**
 * The raw files of a snapshot store, wherever they live: a local {@link Datastore}
 * satisfies it as it is, a reader `ChunkSource` (an HTTP server, say) through
 * `{ readSnapshotFile: (ref, f) => source.readSnapshotFile(ref, f), readChunk: (hex) => source.fetchChunk(hex) }`.
 * Everything read through it is untrusted and checked by the caller.
 */
export interface SnapshotFiles {
  /** A raw file of a snapshot directory (`index.json.blob`, `drive-scsi0.img.fidx`). */
  readSnapshotFile(ref: SnapshotRef, filename: string): Promise<Uint8Array>;
  /** The raw blob of a chunk, by its 64-hex-digit digest. */
  readChunk(digestHex: string): Promise<Uint8Array>;
}

/**
 * Reads and checks a snapshot's manifest through `files` (its signature too when a key is
 * given). A missing manifest is `ERR_LR_SNAPSHOT_NOT_FOUND`: a snapshot directory without
 * one is not a snapshot.
 */
export async function readSnapshotManifest(
  files: Pick<SnapshotFiles, 'readSnapshotFile'>,
  ref: SnapshotRef,
  crypt?: CryptConfig,
): Promise<Manifest> {
  let raw: Uint8Array;
  try {
    raw = await files.readSnapshotFile(ref, MANIFEST_BLOB_NAME);
  } catch (cause) {
    if (cause instanceof LiverestoreError && cause.code === 'ERR_LR_SNAPSHOT_FILE_NOT_FOUND') {
      throw new DatastoreError(
        'ERR_LR_SNAPSHOT_NOT_FOUND',
        `snapshot ${formatSnapshot(ref)} has no manifest`,
        {
          cause,
        },
      );
    }
    throw cause;
  }
  return decodeManifest(raw, { crypt });
}

/**
 * Reads an archive's index (`drive-scsi0.img`, with or without `.fidx`) through `files`,
 * checked against the manifest (size and index_csum).
 */
export async function readSnapshotArchiveIndex(
  files: Pick<SnapshotFiles, 'readSnapshotFile'>,
  ref: SnapshotRef,
  archive: string,
  manifest: Manifest,
): Promise<ChunkIndex> {
  const name = resolveArchiveName(archive);
  const entry = manifestFile(manifest, name.filename);
  const index = readIndex(await files.readSnapshotFile(ref, name.filename));
  checkIndexAgainstManifest(entry, index);
  return index;
}

/** A snapshot's archives as its manifest (read through `files`) lists them. */
export async function readSnapshotInfo(
  files: Pick<SnapshotFiles, 'readSnapshotFile'>,
  ref: SnapshotRef,
): Promise<SnapshotInfo> {
  return snapshotInfoOfManifest(ref, await readSnapshotManifest(files, ref));
}

/** The index archives (`.fidx`, `.didx`) a manifest lists, in its order; other files (blobs) are left out. */
export function archivesOfManifest(manifest: Manifest): ArchiveInfo[] {
  const archives: ArchiveInfo[] = [];
  for (const file of manifest.files) {
    const archive = archiveOfFilename(file.filename);
    if (archive !== undefined) archives.push({ ...archive, sizeBytes: file.size, cryptMode: file.cryptMode });
  }
  return archives;
}

/** What {@link readSnapshotInfo} says about an already decoded manifest. */
export function snapshotInfoOfManifest(ref: SnapshotRef, manifest: Manifest): SnapshotInfo {
  const archives = archivesOfManifest(manifest);
  const fingerprint = manifest.unprotected['key-fingerprint'];
  const verifyState = verifyStateOf(manifest);
  return {
    ref,
    path: formatSnapshot(ref),
    archives,
    ...(typeof fingerprint === 'string' ? { keyFingerprint: fingerprint } : {}),
    ...(verifyState === undefined ? {} : { verifyState }),
  };
}

/** A listed snapshot with what its store keeps beside the manifest (owner, protection, group notes). */
export function withSnapshotExtras(info: SnapshotInfo, extras: SnapshotExtras): SnapshotInfo {
  return {
    ...info,
    ...(extras.owner === undefined ? {} : { owner: extras.owner }),
    protected: extras.protected,
    groupNotes: extras.groupNotes,
  };
}

/** One snapshot as `GET /snapshots` and `liverestore snapshots --json` list it (a public shape). */
export interface SnapshotListingJson extends SnapshotJson {
  archives: { name: string; filename: string; kind: string; sizeBytes: number; cryptMode: string }[];
  keyFingerprint?: string;
  /** The last verify's result as PBS records it in the manifest (`unprotected.verify_state`). */
  verification?: SnapshotVerifyState;
  /** The group's owner, as PBS's snapshot list shows it (local and S3 stores). */
  owner?: string;
  /** True when the snapshot is protected from pruning (`.protected`), as in PBS's snapshot list. */
  protected?: boolean;
  /** True when the group has notes. */
  groupNotes?: boolean;
}

/** The listing entry of a snapshot: one function, so the CLI and the HTTP server agree byte for byte. */
export function snapshotListingJson(info: SnapshotInfo): SnapshotListingJson {
  return {
    ...snapshotJson(info.ref),
    archives: info.archives.map((a) => ({
      name: a.name,
      filename: a.filename,
      kind: a.kind,
      sizeBytes: a.sizeBytes,
      cryptMode: a.cryptMode,
    })),
    ...(info.keyFingerprint === undefined ? {} : { keyFingerprint: info.keyFingerprint }),
    ...(info.verifyState === undefined ? {} : { verification: info.verifyState }),
    ...(info.owner === undefined ? {} : { owner: info.owner }),
    ...(info.protected === undefined ? {} : { protected: info.protected }),
    ...(info.groupNotes === undefined ? {} : { groupNotes: info.groupNotes }),
  };
}
