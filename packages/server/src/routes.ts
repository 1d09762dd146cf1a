import {
  formatSnapshot,
  inNamespace,
  isBackupId,
  MAX_NAMESPACE_DEPTH,
  type NamespaceScope,
  parseBackupTime,
  parseNamespace,
  type SnapshotRef,
} from '@liverestore/datastore';
import { checkMaxDepth, isSnapshotFileName, NAMESPACE_DIR } from '@liverestore/datastore/internal';
import { BACKUP_TYPES, type BackupType, LiverestoreError } from '@liverestore/format';
import { ServerError } from './errors.js';

/**
 * A request path, parsed and validated: every segment that reaches the file system passed a
 * whitelist. Namespaced snapshots are addressed as they lie on disk,
 * `/snapshots/ns/a/ns/b/TYPE/ID/TIME/FILE`; `ns` is no backup type, so the root-namespace
 * paths are unchanged.
 */
export type Route =
  | { readonly kind: 'snapshots'; readonly scope: NamespaceScope }
  | { readonly kind: 'namespaces'; readonly scope: NamespaceScope }
  | { readonly kind: 'metrics' }
  | { readonly kind: 'chunk'; readonly digestHex: string }
  | { readonly kind: 'snapshot-file'; readonly ref: SnapshotRef; readonly filename: string }
  | { readonly kind: 'image'; readonly ref: SnapshotRef; readonly archive: string };

/** Metric label of a route (bounded cardinality: never the path itself). */
export type RouteLabel = Route['kind'] | 'unknown';

const DIGEST = /^[0-9a-f]{64}$/;
const MAX_PATH_CHARS = 1024;
const MAX_NAME_CHARS = 255;

function badPath(why: string): ServerError {
  return new ServerError('ERR_LR_HTTP_BAD_PATH', `bad request path: ${why}`);
}

function notFound(): ServerError {
  return new ServerError('ERR_LR_HTTP_NOT_FOUND', 'no such resource');
}

/** The path part of a request target, query dropped. */
export function pathOf(url: string | undefined): string {
  const target = url ?? '/';
  const q = target.indexOf('?');
  return q === -1 ? target : target.slice(0, q);
}

/**
 * The namespace scope of a listing (`?ns=a/b&max-depth=N`, PBS's parameter names): the
 * root alone when absent. `max-depth` defaults to `defaultDepth`.
 */
export function parseScope(query: string, defaultDepth: number): NamespaceScope {
  const params = new URLSearchParams(query);
  let namespace: string;
  try {
    namespace = parseNamespace(params.get('ns') ?? '');
  } catch (err) {
    if (err instanceof LiverestoreError) throw new ServerError(err.code, err.message);
    throw err;
  }
  const depthText = params.get('max-depth');
  const maxDepth = depthText === null ? defaultDepth : Number(depthText);
  if (depthText !== null && !/^\d$/.test(depthText))
    throw badPath(`max-depth must be 0…${MAX_NAMESPACE_DEPTH}`);
  try {
    checkMaxDepth(maxDepth);
  } catch {
    throw badPath(`max-depth must be 0…${MAX_NAMESPACE_DEPTH}`);
  }
  return { namespace, maxDepth };
}

/** The query part of a request target (without `?`), `''` when none. */
export function queryOf(url: string | undefined): string {
  const target = url ?? '/';
  const q = target.indexOf('?');
  return q === -1 ? '' : target.slice(q + 1);
}

/**
 * Parses a request path. Encoded slashes, backslashes and NUL (raw or encoded), dot
 * segments and empty segments are refused before anything is decoded further, so no
 * segment can name something outside the snapshot or chunk it addresses.
 */
export function parseRoute(path: string, query = ''): Route {
  if (path.length > MAX_PATH_CHARS) throw badPath('too long');
  if (!path.startsWith('/')) throw badPath('must start with /');
  if (/%(2f|5c|00)|\\|\0/i.test(path)) throw badPath('encoded slash, backslash or NUL');
  const raw = path === '/' ? [] : path.slice(1).split('/');
  const parts: string[] = [];
  for (const segment of raw) {
    let decoded: string;
    try {
      decoded = decodeURIComponent(segment);
    } catch {
      throw badPath('malformed percent-encoding');
    }
    if (decoded === '' || decoded === '.' || decoded === '..') throw badPath('empty or dot segment');
    if (/[\0/\\]/.test(decoded)) throw badPath('encoded slash, backslash or NUL');
    parts.push(decoded);
  }
  const [head, ...rest] = parts;
  if (head === 'metrics' && rest.length === 0) return { kind: 'metrics' };
  if (head === 'chunks' && rest.length === 1) {
    const digestHex = rest[0]!;
    if (!DIGEST.test(digestHex)) {
      throw new ServerError('ERR_LR_DIGEST_INVALID', 'a chunk digest is 64 lower-case hex digits');
    }
    return { kind: 'chunk', digestHex };
  }
  if (head === 'namespaces' && rest.length === 0)
    return { kind: 'namespaces', scope: parseScope(query, MAX_NAMESPACE_DEPTH) };
  if (head !== 'snapshots') throw notFound();
  if (rest.length === 0) return { kind: 'snapshots', scope: parseScope(query, 0) };
  const names: string[] = [];
  while (rest[0] === NAMESPACE_DIR && rest.length > 4) {
    names.push(rest[1]!);
    rest.splice(0, 2);
  }
  if (rest.length !== 4) throw notFound();
  let namespace: string;
  try {
    namespace = parseNamespace(names.join('/'));
  } catch {
    throw badPath('invalid namespace');
  }
  const [type, id, timeText, name] = rest as [string, string, string, string];
  if (!BACKUP_TYPES.includes(type as BackupType))
    throw badPath(`snapshot type must be one of ${BACKUP_TYPES.join(', ')}`);
  if (!isBackupId(id)) throw badPath('invalid backup id');
  const time = parseBackupTime(timeText);
  if (time === undefined) throw badPath('snapshot time must be RFC 3339 UTC like 2026-11-26T10:00:00Z');
  if (!isSnapshotFileName(name) || name.length > MAX_NAME_CHARS)
    throw badPath('invalid file or archive name');
  const ref: SnapshotRef = inNamespace({ type: type as BackupType, id, time }, namespace);
  if (name.endsWith('.fidx') || name.endsWith('.didx') || name.endsWith('.blob'))
    return { kind: 'snapshot-file', ref, filename: name };
  return { kind: 'image', ref, archive: name };
}

/** Cache key of a snapshot: `vm/100/2026-11-26T10:00:00Z` (`ns/a/vm/100/…` in a namespace). */
export function snapshotKey(ref: SnapshotRef): string {
  return formatSnapshot(ref);
}
