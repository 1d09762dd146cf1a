import {
  describeNamespace,
  formatSnapshot,
  MAX_NAMESPACE_DEPTH,
  namespaceOf,
  parseNamespace,
  type SnapshotInfo,
  type SnapshotRef,
} from '@liverestore/datastore';
import { readSnapshotInfo, snapshotListingJson } from '@liverestore/datastore/internal';
import { LiverestoreError } from '@liverestore/format';
import { COMMON_OPTIONS, type CommandIo, defineCommand, printJson } from '../command.js';
import { s3Help } from '../s3-options.js';
import {
  isSourceFailure,
  NAMESPACE_OPTION,
  openStoreSource,
  STORE_SOURCE_OPTIONS,
  tlsTrustHelp,
} from '../source.js';
import { printableLine } from '../terminal-text.js';
import { formatBytes } from '../units.js';

/**
 * What lies below the listed namespace but was not listed: "3 more snapshot(s) in
 * namespaces below: prod (2), prod/db (1)", so a store whose snapshots all sit in
 * namespaces never looks empty.
 */
function hiddenSummary(hidden: readonly SnapshotRef[]): string | undefined {
  if (hidden.length === 0) return undefined;
  const counts = new Map<string, number>();
  for (const ref of hidden) counts.set(namespaceOf(ref), (counts.get(namespaceOf(ref)) ?? 0) + 1);
  const list = [...counts].map(([ns, n]) => `${ns} (${n})`).join(', ');
  return (
    `${hidden.length} more snapshot(s) in namespaces below: ${list}; ` +
    'list them with --ns NAME or --recursive'
  );
}

/**
 * What the text listing says after a snapshot's name: ` (encrypted) (verify ok)
 * (protected) owner root@pam, group notes`, each part only when it applies and the source
 * shows it. The owner is PBS's Authid syntax, which has no space or control character.
 */
function snapshotMarks(s: SnapshotInfo): string {
  const marks = [
    s.keyFingerprint === undefined ? '' : ' (encrypted)',
    s.verifyState === undefined ? '' : ` (verify ${s.verifyState.state})`,
    s.protected === true ? ' (protected)' : '',
    s.owner === undefined ? '' : ` owner ${s.owner}`,
    s.groupNotes === true ? `${s.owner === undefined ? '' : ','} group notes` : '',
  ];
  return printableLine(marks.join(''));
}

/** The listing as text; `empty` says the namespace has no snapshots at all, with `hint` when some lie below. */
function printText(
  io: CommandIo,
  infos: readonly SnapshotInfo[],
  empty: string | undefined,
  hint: string | undefined,
): void {
  if (empty !== undefined && hint === undefined) io.stdout.write(`${empty}\n`);
  for (const s of infos) {
    io.stdout.write(`${s.path}${snapshotMarks(s)}\n`);
    for (const a of s.archives)
      io.stdout.write(`  ${a.name.padEnd(24)} ${formatBytes(a.sizeBytes).padStart(10)}  ${a.kind}\n`);
  }
  if (hint !== undefined) io.stdout.write(`${empty === undefined ? '' : `${empty}; `}${hint}\n`);
}

export const snapshotsCommand = defineCommand({
  name: 'snapshots',
  summary: 'list the snapshots of a datastore and their archives',
  help: `Usage: liverestore snapshots --from DIR|URL [--token-file FILE] [--ns NS] [--recursive] [--json]

Lists every complete snapshot (TYPE/ID/TIME) of the root namespace, or of the PBS
namespace NS, with its archives and their sizes, oldest first within each group, and
the result of the last verify when one was recorded; from a local or S3 store also
"(protected)", the group's owner and whether the group has notes ("owner root@pam,
group notes"). Unfinished backups are never listed. Snapshots in namespaces below
are counted ("3 more snapshot(s) in namespaces below: prod (2), prod/db (1)"; on
stderr with --json), or listed with --recursive, each as PBS prints it:
ns/prod/vm/100/TIME. A snapshot whose manifest cannot be read is reported on stderr
(with --json: as an entry with "error") and the exit status is 1; the other
snapshots are still listed.

Options:
  --from DIR|URL      datastore directory, http(s):// URL of a liverestore
                      server, or S3 datastore s3://BUCKET/STORE (required, or --store)
  --token-file FILE   bearer token for an http(s) --from
${tlsTrustHelp(22)}
${s3Help(22)}
  --store DIR         datastore directory or s3://BUCKET/STORE (same as --from)
  --ns NS             namespace to list, e.g. prod or prod/db (default: the root)
  -r, --recursive     also list every namespace below (all of them, from the root)
  --json              print a JSON array (each entry has "ns", "" for the root)
  -h, --help          show this help`,
  options: {
    ...COMMON_OPTIONS,
    ...STORE_SOURCE_OPTIONS,
    ...NAMESPACE_OPTION,
    recursive: { type: 'boolean', short: 'r' },
  },
  async run({ values }, io) {
    const namespace = parseNamespace(values.ns ?? '');
    const source = await openStoreSource(values, 'snapshots', io);
    try {
      const all = await source.listSnapshots({ namespace, maxDepth: MAX_NAMESPACE_DEPTH });
      const refs = values.recursive === true ? all : all.filter((ref) => namespaceOf(ref) === namespace);
      const hint =
        values.recursive === true ? undefined : hiddenSummary(all.filter((r) => !refs.includes(r)));
      const infos: SnapshotInfo[] = [];
      const broken: { snapshot: string; ns: string; code: string; message: string }[] = [];
      for (const ref of refs) {
        try {
          infos.push(await (source.snapshotInfo?.(ref) ?? readSnapshotInfo(source, ref)));
        } catch (err) {
          // One unreadable manifest must not hide the other snapshots; an unreachable source is no one snapshot's fault.
          if (!(err instanceof LiverestoreError) || isSourceFailure(err)) throw err;
          broken.push({
            snapshot: formatSnapshot(ref),
            ns: namespaceOf(ref),
            code: err.code,
            message: err.message,
          });
        }
      }
      for (const b of broken)
        io.stderr.write(`liverestore: ${printableLine(`${b.code}: snapshot ${b.snapshot}: ${b.message}`)}\n`);
      const status = broken.length === 0 ? 0 : 1;
      if (values.json === true) {
        if (hint !== undefined) io.stderr.write(`liverestore: ${hint}\n`);
        printJson(io, [
          ...infos.map(snapshotListingJson),
          ...broken.map((b) => ({
            snapshot: b.snapshot,
            ns: b.ns,
            error: { code: b.code, message: b.message },
          })),
        ]);
        return status;
      }
      const empty = refs.length > 0 ? undefined : `no snapshots in ${describeNamespace(namespace)}`;
      printText(io, infos, empty, hint);
      return status;
    } finally {
      await source.close?.();
    }
  },
});
