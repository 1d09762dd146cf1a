import {
  formatSnapshot,
  readSnapshotInfo,
  type SnapshotInfo,
  snapshotListingJson,
} from '@liverestore/datastore';
import { LiverestoreError } from '@liverestore/format';
import { COMMON_OPTIONS, defineCommand, printJson } from '../command.js';
import { isSourceFailure, openStoreSource, STORE_SOURCE_OPTIONS } from '../source.js';
import { printableLine } from '../terminal-text.js';
import { formatBytes } from '../units.js';

export const snapshotsCommand = defineCommand({
  name: 'snapshots',
  summary: 'list the snapshots of a datastore and their archives',
  help: `Usage: liverestore snapshots --from DIR|URL [--token-file FILE] [--json]

Lists every complete snapshot (TYPE/ID/TIME) with its archives and their sizes,
oldest first within each group. Unfinished backups are never listed. A snapshot whose
manifest cannot be read is reported on stderr (with --json: as an entry with "error")
and the exit status is 1; the other snapshots are still listed.

Options:
  --from DIR|URL      datastore directory, or http(s):// URL of a liverestore
                      server (required, or --store)
  --token-file FILE   bearer token for an http(s) --from
  --store DIR         datastore directory (same as --from DIR)
  --json              print a JSON array
  -h, --help          show this help`,
  options: { ...COMMON_OPTIONS, ...STORE_SOURCE_OPTIONS },
  async run({ values }, io) {
    const source = await openStoreSource(values, 'snapshots');
    try {
      const refs = await source.listSnapshots();
      const infos: SnapshotInfo[] = [];
      const broken: { snapshot: string; code: string; message: string }[] = [];
      for (const ref of refs) {
        try {
          infos.push(await readSnapshotInfo(source, ref));
        } catch (err) {
          // One unreadable manifest must not hide the other snapshots; an unreachable source is no one snapshot's fault.
          if (!(err instanceof LiverestoreError) || isSourceFailure(err)) throw err;
          broken.push({ snapshot: formatSnapshot(ref), code: err.code, message: err.message });
        }
      }
      for (const b of broken)
        io.stderr.write(`liverestore: ${printableLine(`${b.code}: snapshot ${b.snapshot}: ${b.message}`)}\n`);
      const status = broken.length === 0 ? 0 : 1;
      if (values.json === true) {
        printJson(io, [
          ...infos.map(snapshotListingJson),
          ...broken.map((b) => ({ snapshot: b.snapshot, error: { code: b.code, message: b.message } })),
        ]);
        return status;
      }
      if (refs.length === 0) io.stdout.write('no snapshots\n');
      for (const s of infos) {
        io.stdout.write(`${s.path}${s.keyFingerprint === undefined ? '' : ' (encrypted)'}\n`);
        for (const a of s.archives)
          io.stdout.write(`  ${a.name.padEnd(24)} ${formatBytes(a.sizeBytes).padStart(10)}  ${a.kind}\n`);
      }
      return status;
    } finally {
      await source.close?.();
    }
  },
});
