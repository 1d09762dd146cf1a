import { Datastore } from '@liverestore/datastore';
import { COMMON_OPTIONS, defineCommand, printJson, required } from '../command.js';
import { formatBytes } from '../units.js';

export const snapshotsCommand = defineCommand({
  name: 'snapshots',
  summary: 'list the snapshots of a datastore and their archives',
  help: `Usage: liverestore snapshots --store DIR [--json]

Lists every complete snapshot (TYPE/ID/TIME) with its archives and their sizes,
oldest first within each group. Unfinished backups are never listed.

Options:
  --store DIR   datastore directory (required)
  --json        print a JSON array
  -h, --help    show this help`,
  options: { ...COMMON_OPTIONS, store: { type: 'string' } },
  async run({ values }, io) {
    const store = await Datastore.open(required(values.store, '--store', 'snapshots'));
    const infos = [];
    for (const ref of await store.listSnapshotRefs()) infos.push(await store.snapshotInfo(ref));
    if (values.json === true) {
      printJson(
        io,
        infos.map((s) => ({
          snapshot: s.path,
          type: s.ref.type,
          id: s.ref.id,
          time: s.ref.time,
          archives: s.archives.map((a) => ({
            name: a.name,
            filename: a.filename,
            kind: a.kind,
            sizeBytes: a.sizeBytes,
            cryptMode: a.cryptMode,
          })),
          ...(s.keyFingerprint === undefined ? {} : { keyFingerprint: s.keyFingerprint }),
        })),
      );
      return 0;
    }
    if (infos.length === 0) io.stdout.write('no snapshots\n');
    for (const s of infos) {
      io.stdout.write(`${s.path}${s.keyFingerprint === undefined ? '' : ' (encrypted)'}\n`);
      for (const a of s.archives)
        io.stdout.write(`  ${a.name.padEnd(24)} ${formatBytes(a.sizeBytes).padStart(10)}  ${a.kind}\n`);
    }
    return 0;
  },
});
