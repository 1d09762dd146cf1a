import { BACKUP_TYPES, type BackupType } from '@liverestore/format';
import { DatastoreError } from './errors.js';
import {
  checkMaxDepth,
  describeNamespace,
  MAX_NAMESPACE_DEPTH,
  type NamespaceScope,
  parseNamespace,
  ROOT_NAMESPACE,
  walkNamespaces,
} from './namespace.js';
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

/**
 * What a datastore tells of its tree: the one part of listing where a local store (its
 * folders) and an S3 store (its key prefixes) differ. The listings every datastore offers
 * are built from it alone ({@link resolveStoreNamespace}, {@link listStoreNamespaces},
 * {@link listStoreSnapshotRefs}).
 */
export interface StoreTree {
  /** The store as errors name it: its directory or `s3://BUCKET/STORE`. */
  readonly where: string;
  /** Whether `namespace` (a checked name, never the root) exists. */
  hasNamespace(namespace: string): Promise<boolean>;
  /** The valid names of the namespaces directly below `namespace`, sorted. */
  childNamespaces(namespace: string): Promise<string[]>;
  /** The complete snapshots of `type` in `namespace`, in any order. */
  snapshotEntries(namespace: string, type: BackupType): Promise<readonly SnapshotEntry[]>;
}

/**
 * Checks that a namespace exists (the root always does) and returns it:
 * `ERR_LR_NAMESPACE_INVALID` for a bad name, `ERR_LR_NAMESPACE_NOT_FOUND` for a missing one.
 */
export async function resolveStoreNamespace(tree: StoreTree, namespace: string): Promise<string> {
  const checked = parseNamespace(namespace);
  if (checked === ROOT_NAMESPACE || (await tree.hasNamespace(checked))) return checked;
  throw new DatastoreError(
    'ERR_LR_NAMESPACE_NOT_FOUND',
    `${describeNamespace(checked)} does not exist in ${tree.where}`,
  );
}

/** `scope.namespace` (checked to exist) and the namespaces below it, down to `scope.maxDepth` levels (default all). */
export async function listStoreNamespaces(tree: StoreTree, scope: NamespaceScope): Promise<string[]> {
  const start = await resolveStoreNamespace(tree, scope.namespace ?? ROOT_NAMESPACE);
  const maxDepth = checkMaxDepth(scope.maxDepth ?? MAX_NAMESPACE_DEPTH);
  return walkNamespaces(start, maxDepth, (namespace) => tree.childNamespaces(namespace));
}

/** The complete snapshots of `scope.namespace` and of the namespaces `scope.maxDepth` levels (default none) below it. */
export async function listStoreSnapshotRefs(tree: StoreTree, scope: NamespaceScope): Promise<SnapshotRef[]> {
  const namespaces = await listStoreNamespaces(tree, {
    namespace: scope.namespace,
    maxDepth: checkMaxDepth(scope.maxDepth),
  });
  return collectSnapshotRefs(namespaces, (namespace, type) => tree.snapshotEntries(namespace, type));
}
