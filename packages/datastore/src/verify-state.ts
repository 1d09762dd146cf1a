import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { decodeBlob, encodeBlob, MANIFEST_BLOB_NAME, type Manifest } from '@liverestore/format';
import { fsyncDir, writeFileAtomic } from './atomic-write.js';
import type { Datastore } from './datastore.js';
import { DatastoreError } from './errors.js';
import { formatSnapshot, type SnapshotRef } from './snapshot-ref.js';

/*
 * How PBS remembers a verify: the snapshot's manifest gets
 * `unprotected.verify_state = { "state": "ok" | "failed", "upid": "UPID:…" }`
 * (`SnapshotVerifyState` in pbs-api-types). `unprotected` lies outside the manifest
 * signature, so rewriting it keeps a signed manifest valid; every other field, known or
 * not, is written back as it was.
 */

/** The result of the last verify of a snapshot, as PBS stores it. */
export interface SnapshotVerifyState {
  readonly state: 'ok' | 'failed';
  /** The PBS task id (UPID) of the verify that produced it. */
  readonly upid: string;
}

/** The key under `unprotected` that PBS reads the verify result from. */
export const VERIFY_STATE_KEY = 'verify_state';

/** The owner PBS would record for a task or group started by the local superuser. */
export const DEFAULT_AUTH_ID = 'root@pam';

/** PBS's UPID syntax (PROXMOX_UPID_REGEX): what a well-formed task id looks like. */
export const UPID_PATTERN =
  /^UPID:[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?:[0-9A-F]{8}:[0-9A-F]{8,9}:[0-9A-F]{8,16}:[0-9A-F]{8}:[^:\s]+:[^:\s]*:[^:\s]+:$/;

/** The verify result recorded in a manifest, if it has the PBS shape. */
export function verifyStateOf(manifest: Manifest): SnapshotVerifyState | undefined {
  const value = manifest.unprotected[VERIFY_STATE_KEY] as { state?: unknown; upid?: unknown } | undefined;
  if (value === null || typeof value !== 'object') return undefined;
  const { state, upid } = value;
  if ((state !== 'ok' && state !== 'failed') || typeof upid !== 'string') return undefined;
  return { state, upid };
}

/** systemd unit-name escaping, as PBS applies it to a UPID's worker id. */
function escapeUnit(text: string): string {
  let out = '';
  for (const [i, byte] of Buffer.from(text, 'utf8').entries()) {
    const c = String.fromCharCode(byte);
    if (c === '/') out += '-';
    else if ((i === 0 && c === '.') || !/[A-Za-z0-9_.]/.test(c)) out += `\\x${byte.toString(16)}`;
    else out += c;
  }
  return out;
}

/** This process's start time in clock ticks since boot (`/proc/self/stat` field 22); 0 where there is none. */
function processStartTicks(): number {
  try {
    const stat = readFileSync('/proc/self/stat', 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[19]);
    return Number.isSafeInteger(ticks) ? ticks : 0;
  } catch {
    return 0;
  }
}

let nextTaskId = 0;

const hex8 = (n: number): string => n.toString(16).toUpperCase().padStart(8, '0');

/**
 * A task id in PBS's UPID syntax for a task of this process, so that what we record reads
 * like what PBS records (`UPID:node:pid:pstart:task:start:type:id:auth:`).
 */
export function makeUpid(options: {
  workerType: string;
  workerId?: string;
  authId?: string;
  startTimeSeconds?: number;
}): string {
  const label = hostname().split('.')[0] ?? '';
  const node = /^[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?$/.test(label) ? label : 'localhost';
  const start = options.startTimeSeconds ?? Math.floor(Date.now() / 1000);
  return (
    `UPID:${node}:${hex8(process.pid)}:${hex8(processStartTicks())}:${hex8(nextTaskId++)}:${hex8(start)}:` +
    `${options.workerType}:${escapeUnit(options.workerId ?? '')}:${options.authId ?? DEFAULT_AUTH_ID}:`
  );
}

function isReadOnlyError(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return code === 'EROFS' || code === 'EACCES' || code === 'EPERM';
}

/**
 * Rewrites the manifest of `ref` with `unprotected.verify_state = state`, atomically (temp
 * file + rename): everything else in the manifest, the signature included, is kept as it
 * was. A store that cannot be written (read-only file system, no permission) is
 * `ERR_LR_STORE_READ_ONLY`.
 */
export async function recordVerifyState(
  store: Datastore,
  ref: SnapshotRef,
  state: SnapshotVerifyState,
): Promise<void> {
  const raw = await store.readSnapshotFile(ref, MANIFEST_BLOB_NAME);
  const json = JSON.parse(decodeBlob(raw, { maxBytes: 16 * 1024 * 1024 }).toString('utf8')) as Record<
    string,
    unknown
  >;
  const unprotected =
    json.unprotected !== null && typeof json.unprotected === 'object' && !Array.isArray(json.unprotected)
      ? (json.unprotected as Record<string, unknown>)
      : {};
  json.unprotected = { ...unprotected, [VERIFY_STATE_KEY]: { state: state.state, upid: state.upid } };
  const dir = store.snapshotDir(ref);
  try {
    await writeFileAtomic(
      join(dir, MANIFEST_BLOB_NAME),
      encodeBlob(Buffer.from(JSON.stringify(json, null, 2), 'utf8'), { compress: 'none' }),
    );
    await fsyncDir(dir);
  } catch (cause) {
    if (isReadOnlyError(cause)) {
      throw new DatastoreError(
        'ERR_LR_STORE_READ_ONLY',
        `cannot record the verify result in ${dir} (${(cause as { code?: string }).code})`,
        { cause },
      );
    }
    throw cause;
  }
}

/**
 * Which snapshots a verify found bad: those with a bad file, and those an archive of which
 * uses a bad chunk. `snapshots` are the paths the report lists (`formatSnapshot`).
 */
export function failedSnapshots(report: {
  readonly snapshots: readonly string[];
  readonly badFiles: readonly { readonly snapshot: string; readonly filename: string }[];
  readonly badChunks: readonly { readonly archives: readonly string[] }[];
}): Set<string> {
  const failed = new Set(report.badFiles.map((f) => f.snapshot));
  const uses = report.badChunks.flatMap((c) => c.archives);
  for (const snapshot of report.snapshots) {
    if (uses.some((archive) => archive.startsWith(`${snapshot}/`))) failed.add(snapshot);
  }
  return failed;
}

/** What {@link recordVerifyResults} did. */
export interface RecordedVerify {
  /** The task id written into every manifest. */
  readonly upid: string;
  /** Snapshots whose manifest now carries the result. */
  readonly recorded: number;
  /** Set when the store could not be written: nothing (more) was recorded. */
  readonly readOnly?: DatastoreError;
}

/**
 * Records a verify report the PBS way in every verified snapshot of a local store: `ok`
 * unless the snapshot has a bad file or uses a bad chunk. Snapshots without a readable
 * manifest are skipped (there is nothing to record in). A read-only store stops the
 * recording and is returned as `readOnly`, not thrown: the verify itself stands.
 */
export async function recordVerifyResults(
  store: Datastore,
  refs: readonly SnapshotRef[],
  report: Parameters<typeof failedSnapshots>[0],
  options: { authId?: string; storeName?: string } = {},
): Promise<RecordedVerify> {
  const single = refs.length === 1 ? refs[0] : undefined;
  const storeName = options.storeName ?? 'store';
  const upid = makeUpid({
    workerType: single === undefined ? 'verify' : 'verify_snapshot',
    workerId: single === undefined ? storeName : `${storeName}:${formatSnapshot(single)}`,
    ...(options.authId === undefined ? {} : { authId: options.authId }),
  });
  const failed = failedSnapshots(report);
  const unreadable = new Set(
    report.badFiles.filter((f) => f.filename === MANIFEST_BLOB_NAME).map((f) => f.snapshot),
  );
  let recorded = 0;
  for (const ref of refs) {
    const path = formatSnapshot(ref);
    if (unreadable.has(path)) continue;
    try {
      await recordVerifyState(store, ref, { state: failed.has(path) ? 'failed' : 'ok', upid });
    } catch (err) {
      if (err instanceof DatastoreError && err.code === 'ERR_LR_STORE_READ_ONLY')
        return { upid, recorded, readOnly: err };
      throw err;
    }
    recorded++;
  }
  return { upid, recorded };
}
