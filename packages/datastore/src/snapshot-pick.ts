import { DatastoreError } from './errors.js';
import { describeNamespace } from './namespace.js';
import {
  formatBackupTime,
  formatGroup,
  formatSnapshot,
  inNamespace,
  type SnapshotRef,
  type SnapshotSpec,
} from './snapshot-ref.js';

/** How many names a hint offers at most. */
const MAX_SUGGESTIONS = 3;
/** How many groups (or times) a hint lists when nothing is close. */
const MAX_LISTED = 5;

/** Levenshtein distance of two short strings (group names, ids). */
export function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min(previous[j]! + 1, current[j - 1]! + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length]!;
}

/**
 * The names among `candidates` close enough to `typed` to be what the user meant (a typo
 * or two, more for longer names), nearest first; none when nothing is close.
 */
export function closestNames(typed: string, candidates: readonly string[]): string[] {
  const limit = Math.max(2, Math.floor(typed.length / 3));
  return [...new Set(candidates)]
    .map((name) => ({ name, distance: editDistance(typed, name) }))
    .filter((c) => c.distance <= limit)
    .sort((x, y) => x.distance - y.distance || x.name.localeCompare(y.name))
    .slice(0, MAX_SUGGESTIONS)
    .map((c) => c.name);
}

function listed(names: readonly string[]): string {
  const shown = names.slice(0, MAX_LISTED).join(', ');
  return names.length > MAX_LISTED ? `${shown}, … (${names.length} in all)` : shown;
}

/**
 * What to add to "no snapshot X": the snapshots that do exist where the user looked.
 * `existing` are the snapshots of the spec's namespace. For a group that exists (a
 * mistyped time), its snapshot times nearest to the one typed; otherwise the groups
 * whose names are closest to the one typed, or the groups there are; or that the
 * namespace is empty. Returns '' when there is nothing useful to say.
 */
export function snapshotHint(spec: SnapshotSpec, existing: readonly SnapshotRef[]): string {
  if (existing.length === 0) return 'it has no snapshots';
  const sameGroup = existing.filter((ref) => ref.type === spec.type && ref.id === spec.id);
  if (sameGroup.length > 0 && spec.time !== undefined) {
    const typed = spec.time;
    const nearest = sameGroup
      .map((ref) => ref.time)
      .sort((a, b) => Math.abs(a - typed) - Math.abs(b - typed) || b - a)
      .slice(0, MAX_SUGGESTIONS)
      .map((time) => `${formatGroup(spec)}/${formatBackupTime(time)}`);
    return `did you mean ${nearest.join(' or ')}?`;
  }
  const groups = [...new Set(existing.map((ref) => formatGroup(ref)))].sort();
  const close = closestNames(formatGroup(spec), groups);
  if (close.length > 0) return `did you mean ${close.join(' or ')}?`;
  return `its groups: ${listed(groups)}`;
}

/**
 * The snapshot of `spec` among the snapshots `existing` of its namespace `namespace`: its
 * own time when listed, the latest of its group when `spec.time` is absent. A datastore
 * and an HTTP source resolve the same way; `where` names the store in the
 * ERR_LR_SNAPSHOT_NOT_FOUND message (`of /srv/store`, `at https://host`), which also names
 * the snapshots that do exist nearest to the one asked for (snapshot-suggestions.ts).
 */
export function pickSnapshot(
  spec: SnapshotSpec,
  existing: readonly SnapshotRef[],
  namespace: string,
  where: string,
): SnapshotRef {
  const times = existing.filter((ref) => ref.type === spec.type && ref.id === spec.id).map((ref) => ref.time);
  const latest = times.reduce<number | undefined>(
    (max, time) => (max === undefined || time > max ? time : max),
    undefined,
  );
  const time = spec.time ?? latest;
  if (time === undefined || !times.includes(time)) {
    const what = spec.time === undefined ? formatGroup(spec) : formatSnapshot({ ...spec, time: spec.time });
    throw new DatastoreError(
      'ERR_LR_SNAPSHOT_NOT_FOUND',
      `no snapshot ${what} in ${describeNamespace(namespace)} ${where}; ${snapshotHint(spec, existing)}`,
    );
  }
  return inNamespace({ type: spec.type, id: spec.id, time }, namespace);
}
