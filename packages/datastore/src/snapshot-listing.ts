import { BACKUP_TYPES, type BackupType } from '@liverestore/format';
import { inNamespace, type SnapshotRef } from './snapshot-ref.js';

/** One complete snapshot of a backup type in a namespace, as a store found it. */
export interface SnapshotEntry {
  readonly id: string;
  readonly time: number;
}

/**
 * The snapshots of `namespaces` in the order every datastore lists them: namespace by
 * namespace as given, backup types in {@link BACKUP_TYPES} order, then by backup id, then
 * oldest first. `entriesOf` says which snapshots of one type a namespace holds, in any
 * order: a local store from its directories, an S3 store from its manifests' keys.
 */
export async function collectSnapshotRefs(
  namespaces: readonly string[],
  entriesOf: (namespace: string, type: BackupType) => Promise<readonly SnapshotEntry[]>,
): Promise<SnapshotRef[]> {
  const refs: SnapshotRef[] = [];
  for (const namespace of namespaces) {
    for (const type of BACKUP_TYPES) {
      const entries = [...(await entriesOf(namespace, type))];
      entries.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : a.time - b.time));
      for (const { id, time } of entries) refs.push(inNamespace({ type, id, time }, namespace));
    }
  }
  return refs;
}
