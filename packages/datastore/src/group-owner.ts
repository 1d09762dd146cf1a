import { link, open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { tempPathFor, trackTemp } from './atomic-write.js';
import { DatastoreError } from './errors.js';
import { DEFAULT_AUTH_ID } from './verify-state.js';

/** Name of the file in a group folder that names who owns the group (PBS). */
export const OWNER_FILE = 'owner';

/** PBS's Authid: `user@realm`, or an API token `user@realm!token`. */
const AUTH_ID = /^[^\s:/@!]+@[A-Za-z0-9_][A-Za-z0-9._-]*(![A-Za-z0-9_][A-Za-z0-9._-]*)?$/;

/** Checks an owner (PBS Authid such as `root@pam` or `backup@pbs!job`); `ERR_LR_OWNER_INVALID` otherwise. */
export function checkOwner(owner: string): string {
  if (!AUTH_ID.test(owner) || owner.length > 128) {
    throw new DatastoreError(
      'ERR_LR_OWNER_INVALID',
      `invalid owner "${owner}": expected a PBS user or token id like root@pam or backup@pbs!job`,
    );
  }
  return owner;
}

/**
 * Gives a group the `owner` file PBS expects (one line, `root@pam\n`) unless it has one:
 * PBS refuses to back up into a group without it. An existing owner is never rewritten
 * (PBS sets it once, when the group is created). The file is written beside and hard-linked
 * into place, so it appears complete or not at all, and a concurrent writer cannot be
 * overwritten. Returns true when it wrote the file.
 */
export async function ensureGroupOwner(groupDir: string, owner: string = DEFAULT_AUTH_ID): Promise<boolean> {
  checkOwner(owner);
  const path = join(groupDir, OWNER_FILE);
  const temp = tempPathFor(path);
  // Tracked like every temp: a backup interrupted by a signal removes it (removeTrackedTemps).
  const untrack = trackTemp(temp);
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(temp, 'wx', 0o644);
  } catch (err) {
    untrack();
    throw err;
  }
  try {
    try {
      await handle.writeFile(`${owner}\n`);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await link(temp, path);
    return true;
  } catch (err) {
    if ((err as { code?: string }).code === 'EEXIST') return false;
    throw err;
  } finally {
    await rm(temp, { force: true });
    untrack();
  }
}
