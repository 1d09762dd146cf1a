import { lstat } from 'node:fs/promises';
import { join } from 'node:path';
import { checkOwner, OWNER_FILE } from './group-owner.js';
import { readRegularFile } from './regular-file.js';

/** Name of the empty file that marks a snapshot protected from pruning (PBS). */
export const PROTECTED_FILE = '.protected';
/** Name of the file in a group folder that holds the group's notes (PBS). */
export const GROUP_NOTES_FILE = 'notes';
/** Largest `owner` file read: an Authid is at most 128 characters, so a larger file holds none. */
const MAX_OWNER_FILE_BYTES = 1024;

/**
 * What PBS keeps beside a snapshot's manifest and shows in its snapshot list: who owns the
 * group, whether the snapshot is protected from pruning, whether the group has notes. A
 * store that sees these files reports them (a local or S3 datastore); a source that sees
 * only snapshot files (an HTTP server) cannot.
 */
export interface SnapshotExtras {
  /** The group's owner (PBS Authid); absent when the group has no `owner` file or it names no valid Authid. */
  readonly owner?: string;
  /** True when the snapshot folder has a `.protected` file. */
  readonly protected: boolean;
  /** True when the group has a non-empty `notes` file. */
  readonly groupNotes: boolean;
}

/**
 * The owner an `owner` file names: its first line when that is a valid PBS Authid (what
 * PBS reads); `undefined` otherwise, so a damaged owner file never hides a snapshot.
 */
export function ownerOfFile(bytes: Uint8Array): string | undefined {
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
  try {
    return checkOwner((text.split('\n')[0] ?? '').trim());
  } catch {
    return undefined;
  }
}

/** The codes that mean "this store file is not there as a regular file" rather than a failure to read it. */
const ABSENT_CODES = new Set([
  'ENOENT',
  'ENOTDIR',
  'ERR_LR_STORE_FILE_NOT_REGULAR',
  'ERR_LR_STORE_FILE_TOO_LARGE',
]);

function isAbsent(err: unknown): boolean {
  return ABSENT_CODES.has((err as { code?: string }).code ?? '');
}

/** Size of a regular file at `path` (not following a symlink); `undefined` when there is none. */
async function regularFileSize(path: string): Promise<number | undefined> {
  try {
    const info = await lstat(path);
    return info.isFile() ? info.size : undefined;
  } catch (err) {
    if (isAbsent(err)) return undefined;
    throw err;
  }
}

async function readGroupOwner(groupDir: string): Promise<string | undefined> {
  try {
    return ownerOfFile(await readRegularFile(join(groupDir, OWNER_FILE), MAX_OWNER_FILE_BYTES));
  } catch (err) {
    if (isAbsent(err)) return undefined;
    throw err;
  }
}

/** {@link SnapshotExtras} of a snapshot in a local datastore, from its group and snapshot folders. */
export async function readLocalSnapshotExtras(
  groupDir: string,
  snapshotDir: string,
): Promise<SnapshotExtras> {
  const [owner, protectedSize, notesSize] = await Promise.all([
    readGroupOwner(groupDir),
    regularFileSize(join(snapshotDir, PROTECTED_FILE)),
    regularFileSize(join(groupDir, GROUP_NOTES_FILE)),
  ]);
  return {
    ...(owner === undefined ? {} : { owner }),
    protected: protectedSize !== undefined,
    groupNotes: notesSize !== undefined && notesSize > 0,
  };
}
