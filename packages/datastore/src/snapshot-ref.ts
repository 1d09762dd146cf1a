import { BACKUP_TYPES, type BackupType } from '@liverestore/format';
import { DatastoreError } from './errors.js';

/** A snapshot's identity: `<type>/<id>/<time>`, e.g. `vm/100/2026-11-26T10:00:00Z`. */
export interface SnapshotRef {
  readonly type: BackupType;
  readonly id: string;
  /** Seconds since the epoch. */
  readonly time: number;
}

/** A backup group, or a snapshot when `time` is given: what a user types on the command line. */
export interface SnapshotSpec {
  readonly type: BackupType;
  readonly id: string;
  readonly time?: number;
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

/** Parses `vm/100` (a group: its latest snapshot) or `vm/100/2026-11-26T10:00:00Z`. */
export function parseSnapshotSpec(text: string): SnapshotSpec {
  const parts = text.replace(/\/+$/, '').split('/');
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

/** `vm/100/2026-11-26T10:00:00Z`. */
export function formatSnapshot(ref: SnapshotRef): string {
  return `${ref.type}/${ref.id}/${formatBackupTime(ref.time)}`;
}
