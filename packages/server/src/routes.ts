import { formatSnapshot, isBackupId, parseBackupTime, type SnapshotRef } from '@liverestore/datastore';
import { BACKUP_TYPES, type BackupType } from '@liverestore/format';
import { ServerError } from './errors.js';

/** A request path, parsed and validated: every segment that reaches the file system passed a whitelist. */
export type Route =
  | { readonly kind: 'snapshots' }
  | { readonly kind: 'metrics' }
  | { readonly kind: 'chunk'; readonly digestHex: string }
  | { readonly kind: 'snapshot-file'; readonly ref: SnapshotRef; readonly filename: string }
  | { readonly kind: 'image'; readonly ref: SnapshotRef; readonly archive: string };

/** Metric label of a route (bounded cardinality: never the path itself). */
export type RouteLabel = Route['kind'] | 'unknown';

const FILE_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;
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
 * Parses a request path. Encoded slashes, backslashes and NUL (raw or encoded), dot
 * segments and empty segments are refused before anything is decoded further, so no
 * segment can name something outside the snapshot or chunk it addresses.
 */
export function parseRoute(path: string): Route {
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
  if (head !== 'snapshots') throw notFound();
  if (rest.length === 0) return { kind: 'snapshots' };
  if (rest.length !== 4) throw notFound();
  const [type, id, timeText, name] = rest as [string, string, string, string];
  if (!BACKUP_TYPES.includes(type as BackupType))
    throw badPath(`snapshot type must be one of ${BACKUP_TYPES.join(', ')}`);
  if (!isBackupId(id)) throw badPath('invalid backup id');
  const time = parseBackupTime(timeText);
  if (time === undefined) throw badPath('snapshot time must be RFC 3339 UTC like 2026-11-26T10:00:00Z');
  if (!FILE_NAME.test(name) || name.length > MAX_NAME_CHARS) throw badPath('invalid file or archive name');
  const ref: SnapshotRef = { type: type as BackupType, id, time };
  if (name.endsWith('.fidx') || name.endsWith('.didx') || name.endsWith('.blob'))
    return { kind: 'snapshot-file', ref, filename: name };
  return { kind: 'image', ref, archive: name };
}

/** Cache key of a snapshot: `vm/100/2026-11-26T10:00:00Z`. */
export function snapshotKey(ref: SnapshotRef): string {
  return formatSnapshot(ref);
}
