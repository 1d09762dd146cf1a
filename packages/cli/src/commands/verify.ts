import { Datastore, parseSnapshotSpec, type SnapshotRef, verifySnapshots } from '@liverestore/datastore';
import {
  COMMON_OPTIONS,
  commandProgress,
  defineCommand,
  loadKeyFile,
  printJson,
  required,
} from '../command.js';
import { UsageError } from '../errors.js';
import type { Progress } from '../progress.js';
import { formatBytes } from '../units.js';

export const verifyCommand = defineCommand({
  name: 'verify',
  summary: 'decode every chunk of snapshots and check every digest',
  help: `Usage: liverestore verify --store DIR [SNAPSHOT] [--keyfile FILE] [--json]

Reads the manifest and indexes of the snapshot (TYPE/ID/TIME, or TYPE/ID for the
latest of a group; all snapshots when omitted), then decodes every chunk they use and
checks its CRC-32, its digest and its length. Each bad chunk is named with every
archive that uses it. Exit status 0 only when everything verifies, 1 otherwise.

Encrypted snapshots need --keyfile for a full check; without it only the CRC-32 of
their chunks is checked, and the summary says so.

Options:
  --store DIR       datastore directory (required)
  --keyfile FILE    PBS key file of encrypted snapshots
  --json            print the report as JSON
  -h, --help        show this help`,
  options: { ...COMMON_OPTIONS, store: { type: 'string' }, keyfile: { type: 'string' } },
  async run({ values, positionals }, io) {
    const storeDir = required(values.store, '--store', 'verify');
    if (positionals.length > 1) throw new UsageError('verify: give at most one SNAPSHOT');
    const store = await Datastore.open(storeDir);
    const refs: SnapshotRef[] =
      positionals[0] === undefined
        ? await store.listSnapshotRefs()
        : [await store.resolveSnapshot(parseSnapshotSpec(positionals[0]))];
    const crypt = await loadKeyFile(values.keyfile);
    let progress: Progress | undefined;
    const report = await verifySnapshots(store, refs, {
      crypt,
      onProgress: (p) => {
        progress ??= commandProgress(io, 'verify', p.chunksTotal, values.json, 'items');
        progress.update(p.chunksDone);
      },
    });
    progress?.finish();
    if (values.json === true) {
      printJson(io, report);
      return report.ok ? 0 : 1;
    }
    for (const f of report.badFiles)
      io.stdout.write(`BAD FILE ${f.snapshot}/${f.filename}: ${f.code}: ${f.message}\n`);
    for (const c of report.badChunks) {
      io.stdout.write(
        `BAD CHUNK ${c.digest}: ${c.code}: ${c.message}\n  used by: ${c.archives.join(', ')}\n`,
      );
    }
    io.stdout.write(
      `${report.ok ? 'OK' : 'FAILED'}: ${report.snapshots.length} snapshot(s), ${report.archives} archive(s), ${report.chunks} chunk(s), ` +
        `${formatBytes(report.bytes)} verified; ${report.badChunks.length} bad chunk(s), ${report.badFiles.length} bad file(s)` +
        `${report.crcOnlyChunks > 0 ? `; ${report.crcOnlyChunks} encrypted chunk(s) CRC-checked only (no --keyfile)` : ''}\n`,
    );
    return report.ok ? 0 : 1;
  },
});
