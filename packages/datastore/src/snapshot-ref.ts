import { BACKUP_TYPES, type BackupType } from '@liverestore/format';
import { DatastoreError } from './errors.js';
import { namespacePath, parseNamespace, ROOT_NAMESPACE, splitNamespacePath } from './namespace.js';

/**
 * A snapshot's identity: `[ns/<name>/…]<type>/<id>/<time>`, e.g. `vm/100/2026-11-26T10:00:00Z`
 * or, in namespace `prod`, `ns/prod/vm/100/2026-11-26T10:00:00Z`.
 */
export interface SnapshotRef {
  /** PBS namespace, `a/b` (see namespace.ts); absent (or `''`) for the root namespace. */
  readonly namespace?: string;
  readonly type: BackupType;
  readonly id: string;
  /** Seconds since the epoch. */
  readonly time: number;
}

/** A backup group, or a snapshot when `time` is given: what a user types on the command line. */
export interface SnapshotSpec {
  /** PBS namespace, `a/b`; absent (or `''`) for the root namespace. */
  readonly namespace?: string;
  readonly type: BackupType;
  readonly id: string;
  readonly time?: number;
}

/** The namespace of a ref or spec, `''` for the root. */
export function namespaceOf(ref: { readonly namespace?: string | undefined }): string {
  return ref.namespace ?? ROOT_NAMESPACE;
}

/**
 * `value` in `namespace`: the field is left out for the root namespace, so a root ref looks
 * exactly as it did before namespaces (`{ type, id, time }`) and compares equal to one.
 */
export function inNamespace<T extends object>(value: T, namespace: string): T & { namespace?: string } {
  const { namespace: _drop, ...rest } = value as T & { namespace?: string };
  return (namespace === ROOT_NAMESPACE ? rest : { ...rest, namespace }) as T & { namespace?: string };
}

/** PBS allows these characters in backup ids. */
const BACKUP_ID = /^[A-Za-z0-9_][A-Za-z0-9._-]*$/;
const TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/;

/** RFC 3339 UTC without fractions, the snapshot directory name PBS uses. */
export function formatBackupTime(seconds: number): string {
  return new Date(seconds * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** Parses a snapshot directory name; undefined when it is not one (so listings skip it). */
export function parseBackupTime(text: string): number | undefined {
  if (!TIME.test(text)) return undefined;
  const ms = Date.parse(text);
  if (Number.isNaN(ms) || formatBackupTime(ms / 1000) !== text) return undefined;
  return ms / 1000;
}

/** True when `id` is a valid backup id. */
export function isBackupId(id: string): boolean {
  return BACKUP_ID.test(id) && id.length <= 128;
}

function bad(text: string, why: string): DatastoreError {
  return new DatastoreError(
    'ERR_LR_SNAPSHOT_INVALID',
    `invalid snapshot "${text}": ${why} (expected TYPE/ID or TYPE/ID/TIME, e.g. vm/100/2026-11-26T10:00:00Z)`,
  );
}

/**
 * Parses `vm/100` (a group: its latest snapshot) or `vm/100/2026-11-26T10:00:00Z`, each
 * optionally prefixed by its namespace as PBS prints it (`ns/prod/ns/db/vm/100/…`).
 * `namespace` (a `--ns` value, `a/b`) applies when the text has no prefix; a prefix that
 * names another namespace is `ERR_LR_SNAPSHOT_INVALID`.
 */
export function parseSnapshotSpec(text: string, namespace?: string): SnapshotSpec {
  const split = splitNamespacePath(text.replace(/\/+$/, ''));
  const given = namespace === undefined ? ROOT_NAMESPACE : parseNamespace(namespace);
  if (split.namespace !== ROOT_NAMESPACE && namespace !== undefined && split.namespace !== given) {
    throw bad(text, `its namespace "${split.namespace}" differs from the namespace "${given}" given`);
  }
  return inNamespace(parseGroupOrSnapshot(text, split.rest), split.namespace || given);
}

function parseGroupOrSnapshot(text: string, path: string): SnapshotSpec {
  const parts = path.split('/');
  if (parts.length < 2 || parts.length > 3) throw bad(text, 'wrong number of parts');
  const [type, id, time] = parts as [string, string, string | undefined];
  if (!BACKUP_TYPES.includes(type as BackupType))
    throw bad(text, `type must be one of ${BACKUP_TYPES.join(', ')}`);
  if (!isBackupId(id)) throw bad(text, `"${id}" is not a valid backup id`);
  if (time === undefined) return { type: type as BackupType, id };
  const seconds = parseBackupTime(time);
  if (seconds === undefined)
    throw bad(text, `"${time}" is not an RFC 3339 UTC time like 2026-11-26T10:00:00Z`);
  return { type: type as BackupType, id, time: seconds };
}

/** `vm/100/2026-11-26T10:00:00Z`, or `ns/prod/vm/100/…` in a namespace (PBS's print_ns_and_snapshot). */
export function formatSnapshot(ref: SnapshotRef): string {
  return `${formatGroup(ref)}/${formatBackupTime(ref.time)}`;
}

/** `vm/100`, or `ns/prod/vm/100` in a namespace. */
export function formatGroup(ref: {
  readonly namespace?: string;
  readonly type: string;
  readonly id: string;
}): string {
  const prefix = namespacePath(namespaceOf(ref));
  return `${prefix === '' ? '' : `${prefix}/`}${ref.type}/${ref.id}`;
}

/**
 * A snapshot in every JSON a command or the server prints: its PBS name and its parts.
 * Results about one snapshot carry these fields at their top level, lists of snapshots
 * hold one such object per snapshot (docs/cli.md, "JSON output").
 */
export interface SnapshotJson {
  /** As PBS prints it: `vm/100/2026-11-26T10:00:00Z`, `ns/prod/vm/100/…` in a namespace. */
  snapshot: string;
  /** PBS namespace (`a/b`), `""` for the root. */
  ns: string;
  type: string;
  id: string;
  /** Seconds since the epoch. */
  time: number;
}

/** The {@link SnapshotJson} of a snapshot. */
export function snapshotJson(ref: SnapshotRef): SnapshotJson {
  return { snapshot: formatSnapshot(ref), ns: namespaceOf(ref), type: ref.type, id: ref.id, time: ref.time };
}
