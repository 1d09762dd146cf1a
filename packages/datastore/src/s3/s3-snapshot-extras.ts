import { OWNER_FILE } from '../group-owner.js';
import { GROUP_NOTES_FILE, ownerOfFile, PROTECTED_FILE, type SnapshotExtras } from '../snapshot-extras.js';
import type { S3Client } from './s3-client.js';
import { S3Error } from './s3-error.js';

/** Largest `owner` object read (an Authid is at most 128 characters). */
const MAX_OWNER_OBJECT_BYTES = 1024;

async function readOwner(client: S3Client, key: string): Promise<string | undefined> {
  try {
    return ownerOfFile(await client.getObject(key, { maxBytes: MAX_OWNER_OBJECT_BYTES }));
  } catch (err) {
    // A missing owner, or an object too large to be one, names no owner (as on disk).
    if (
      err instanceof S3Error &&
      (err.code === 'ERR_LR_S3_NOT_FOUND' || err.code === 'ERR_LR_S3_RESPONSE_TOO_LARGE')
    )
      return undefined;
    throw err;
  }
}

/**
 * {@link SnapshotExtras} of a snapshot in an S3 datastore, from the objects PBS keeps
 * beside it (`<group>/owner`, `<group>/notes`, `<snapshot>/.protected`): three requests,
 * in parallel. `groupPrefix` and `snapshotPrefix` end in `/`.
 */
export async function readS3SnapshotExtras(
  client: S3Client,
  groupPrefix: string,
  snapshotPrefix: string,
): Promise<SnapshotExtras> {
  const [owner, protectedObject, notes] = await Promise.all([
    readOwner(client, `${groupPrefix}${OWNER_FILE}`),
    client.headObject(`${snapshotPrefix}${PROTECTED_FILE}`),
    client.headObject(`${groupPrefix}${GROUP_NOTES_FILE}`),
  ]);
  return {
    ...(owner === undefined ? {} : { owner }),
    protected: protectedObject !== undefined,
    groupNotes: notes !== undefined && notes.sizeBytes > 0,
  };
}
