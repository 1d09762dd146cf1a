import {
  formatBackupTime,
  inNamespace,
  isBackupId,
  MAX_NAMESPACE_DEPTH,
  type NamespaceScope,
  namespaceOf,
  parseNamespace,
  parseSnapshotSpec,
  ROOT_NAMESPACE,
  type SnapshotRef,
} from '@liverestore/datastore';
import {
  checkOwner,
  namespaceContains,
  namespacePathSegments,
  type SnapshotExtras,
} from '@liverestore/datastore/internal';
import { BACKUP_TYPES, type BackupType, LiverestoreError } from '@liverestore/format';
import { ReaderError } from './errors.js';

/*
 * The listing half of the server's HTTP interface, as the HTTP source uses it:
 *
 *   GET /snapshots[?ns=a/b[&max-depth=N]]      JSON [{ snapshot, ns, type, id, time, archives,
 *                                                     owner?, protected?, groupNotes? }]
 *   GET /namespaces[?ns=a/b[&max-depth=N]]     JSON [{ ns }]
 *   GET /snapshots/[ns/a/ns/b/]TYPE/ID/TIME/F  a raw snapshot file
 *
 * A root-namespace request is exactly what servers before namespaces understood. The server
 * is not trusted: every entry is checked, and one outside the namespaces asked for (an old
 * server that ignored `?ns=`) is an error rather than a snapshot in the wrong place.
 */

/** The query string of a listing request (`?ns=a%2Fb&max-depth=2`); empty for the root alone. */
export function listingQuery(scope: NamespaceScope = {}): string {
  const namespace = parseNamespace(scope.namespace ?? ROOT_NAMESPACE);
  const params = new URLSearchParams();
  if (namespace !== ROOT_NAMESPACE) params.set('ns', namespace);
  if (scope.maxDepth !== undefined && scope.maxDepth !== 0) params.set('max-depth', String(scope.maxDepth));
  const text = params.toString();
  return text === '' ? '' : `?${text}`;
}

/** The request path of a snapshot file: `/snapshots/ns/a/vm/100/<time>/<file>`, each segment encoded. */
export function snapshotFilePath(ref: SnapshotRef, filename: string): string {
  return `/snapshots/${[
    ...namespacePathSegments(namespaceOf(ref)),
    ref.type,
    ref.id,
    formatBackupTime(ref.time),
    filename,
  ]
    .map(encodeURIComponent)
    .join('/')}`;
}

function malformed(name: string, what: string, why: string): ReaderError {
  return new ReaderError('ERR_LR_SOURCE_BAD_RESPONSE', `the ${what} of ${name} is malformed: ${why}`);
}

function parseJsonArray(body: Uint8Array, name: string, what: string): unknown[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8'));
  } catch {
    throw malformed(name, what, 'not JSON');
  }
  if (!Array.isArray(parsed)) throw malformed(name, what, 'not an array');
  return parsed;
}

/** The namespace of a listing entry (`''` when absent, as servers before namespaces send). */
function entryNamespace(value: unknown, scope: NamespaceScope, bad: (why: string) => ReaderError): string {
  if (value !== undefined && typeof value !== 'string') throw bad('has no valid ns');
  let namespace: string;
  try {
    namespace = parseNamespace(value ?? ROOT_NAMESPACE);
  } catch (err) {
    if (err instanceof LiverestoreError) throw bad('has no valid ns');
    throw err;
  }
  const start = scope.namespace ?? ROOT_NAMESPACE;
  const depth = scope.maxDepth ?? 0;
  const below =
    namespace === start ? 0 : namespace.split('/').length - (start === '' ? 0 : start.split('/').length);
  if (!namespaceContains(start, namespace) || below > depth) {
    throw bad(
      `lists namespace "${namespace}" outside the one asked for ("${start}"; a server without namespace support ignores ?ns=)`,
    );
  }
  return namespace;
}

/** One entry of the server's snapshot listing: the snapshot, and what its store keeps beside it when the server said. */
export interface ListedSnapshot {
  readonly ref: SnapshotRef;
  /** Owner, protection and group notes, when the server listed them (servers before them do not). */
  readonly extras?: SnapshotExtras;
}

/**
 * The owner, protection and group notes of a listing entry: present only when the server
 * sent both flags (an older server sends none); a value of the wrong type is malformed.
 */
function entryExtras(
  fields: { owner?: unknown; protected?: unknown; groupNotes?: unknown },
  bad: (why: string) => ReaderError,
): SnapshotExtras | undefined {
  const { owner, protected: isProtected, groupNotes } = fields;
  if (isProtected === undefined && groupNotes === undefined && owner === undefined) return undefined;
  if (typeof isProtected !== 'boolean') throw bad('has no valid protected flag');
  if (typeof groupNotes !== 'boolean') throw bad('has no valid groupNotes flag');
  if (owner === undefined) return { protected: isProtected, groupNotes };
  if (typeof owner !== 'string') throw bad('has no valid owner');
  try {
    return { owner: checkOwner(owner), protected: isProtected, groupNotes };
  } catch (err) {
    if (err instanceof LiverestoreError) throw bad('has no valid owner');
    throw err;
  }
}

/** Validates the server's snapshot listing; a malformed one is an error, not a partial answer. */
export function parseListing(body: Uint8Array, name: string, scope: NamespaceScope = {}): SnapshotRef[] {
  return parseListingEntries(body, name, scope).map((entry) => entry.ref);
}

/** {@link parseListing}, keeping each entry's {@link SnapshotExtras} where the server listed them. */
export function parseListingEntries(
  body: Uint8Array,
  name: string,
  scope: NamespaceScope = {},
): ListedSnapshot[] {
  const listed: ListedSnapshot[] = [];
  for (const [i, entry] of parseJsonArray(body, name, 'snapshot list').entries()) {
    const bad = (why: string): ReaderError => malformed(name, 'snapshot list', `entry ${i} ${why}`);
    const fields = (entry ?? {}) as {
      ns?: unknown;
      type?: unknown;
      id?: unknown;
      time?: unknown;
      snapshot?: unknown;
      error?: unknown;
      owner?: unknown;
      protected?: unknown;
      groupNotes?: unknown;
    };
    if (fields.error !== undefined && typeof fields.snapshot === 'string') {
      // A snapshot whose manifest the server cannot read is listed by path only; keep it,
      // so the caller reports it (reading its manifest fails the same way) and lists the rest.
      let spec: ReturnType<typeof parseSnapshotSpec>;
      try {
        spec = parseSnapshotSpec(fields.snapshot);
      } catch {
        throw bad('names no valid snapshot');
      }
      if (spec.time === undefined) throw bad('names no snapshot time');
      const namespace = entryNamespace(spec.namespace, scope, bad);
      listed.push({ ref: inNamespace({ type: spec.type, id: spec.id, time: spec.time }, namespace) });
      continue;
    }
    const namespace = entryNamespace(fields.ns, scope, bad);
    const { type, id, time } = fields;
    if (typeof type !== 'string' || !BACKUP_TYPES.includes(type as BackupType))
      throw bad('has no valid type');
    if (typeof id !== 'string' || !isBackupId(id)) throw bad('has no valid id');
    if (typeof time !== 'number' || !Number.isSafeInteger(time) || time < 0) throw bad('has no valid time');
    const ref = inNamespace({ type: type as BackupType, id, time }, namespace);
    const extras = entryExtras(fields, bad);
    listed.push(extras === undefined ? { ref } : { ref, extras });
  }
  const order = (r: SnapshotRef): string => `${namespaceOf(r)}\0${BACKUP_TYPES.indexOf(r.type)}/${r.id}`;
  return listed.sort(({ ref: a }, { ref: b }) =>
    order(a) < order(b) ? -1 : order(a) > order(b) ? 1 : a.time - b.time,
  );
}

/** Validates the server's namespace listing (`[{ ns }]`), sorted. */
export function parseNamespaceListing(body: Uint8Array, name: string, scope: NamespaceScope = {}): string[] {
  const out: string[] = [];
  const limited = { ...scope, maxDepth: scope.maxDepth ?? MAX_NAMESPACE_DEPTH };
  for (const [i, entry] of parseJsonArray(body, name, 'namespace list').entries()) {
    const bad = (why: string): ReaderError => malformed(name, 'namespace list', `entry ${i} ${why}`);
    const ns = (entry ?? {}) as { ns?: unknown };
    if (typeof ns.ns !== 'string') throw bad('has no ns');
    out.push(entryNamespace(ns.ns, limited, bad));
  }
  return out.sort();
}
