/**
 * The JSON that `--json` prints, one shape per concept across commands (docs/cli.md,
 * "JSON output"): a result about one snapshot carries the snapshot's fields
 * (`snapshot`, `ns`, `type`, `id`, `time`) at its top level; a list of snapshots holds
 * one object with those fields per snapshot; an archive is `{ name, … }`; a `snapshot`
 * string is always the snapshot's name as PBS prints it.
 */

import {
  type BackupResult,
  formatSnapshot,
  type SnapshotJson,
  type SnapshotRef,
  snapshotJson,
  type VerifyReport,
} from '@liverestore/datastore';

/** `backup --json` (and the demo's backup): the snapshot's fields, its archives and counts. */
export function backupResultJson(result: BackupResult) {
  const { ref, snapshot: _name, ...counts } = result;
  return { ...snapshotJson(ref), ...counts };
}

/**
 * `verify --json` (and the demo's verify): the report with its snapshots as objects, and
 * what was recorded in the store when it was.
 */
export function verifyReportJson(
  report: VerifyReport,
  refs: readonly SnapshotRef[],
  recorded?: { readonly upid: string; readonly snapshots: number },
) {
  const byName = new Map(refs.map((ref) => [formatSnapshot(ref), ref]));
  const snapshots: (SnapshotJson | { snapshot: string })[] = report.snapshots.map((name) => {
    const ref = byName.get(name);
    return ref === undefined ? { snapshot: name } : snapshotJson(ref);
  });
  return { ...report, snapshots, ...(recorded === undefined ? {} : { recorded }) };
}
