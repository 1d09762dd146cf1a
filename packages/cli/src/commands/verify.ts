import { basename, resolve } from 'node:path';
import {
  MAX_NAMESPACE_DEPTH,
  parseNamespace,
  parseSnapshotSpec,
  type RecordedVerify,
  recordVerifyResults,
  type SnapshotRef,
  verifySnapshots,
} from '@liverestore/datastore';
import type { SnapshotFiles } from '@liverestore/datastore/internal';
import { LocalChunkSource } from '@liverestore/reader';
import { COMMON_OPTIONS, commandProgress, defineCommand, loadKeyFile, printJson } from '../command.js';
import { UsageError } from '../errors.js';
import { verifyReportJson } from '../json-shapes.js';
import type { Progress } from '../progress.js';
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

export const verifyCommand = defineCommand({
  name: 'verify',
  summary: 'decode every chunk of snapshots and check every digest',
  help: `Usage: liverestore verify --from DIR|URL [--token-file FILE] [--ns NS] [SNAPSHOT] [--keyfile FILE]
                          [--no-record] [--json]

Reads the manifest and indexes of the snapshot (TYPE/ID/TIME, or TYPE/ID for the
latest of a group; when omitted, every snapshot of the namespace NS (default the
root) and of all namespaces below it), then decodes every chunk they use and
checks its CRC-32, its digest and its length. Each bad chunk is named with every
archive that uses it. Exit status 0 only when everything verifies, 1 otherwise.
Over an http(s) --from every byte is checked here, as it arrived: the server is not
trusted; a server that cannot be reached or refuses the token stops the verify.

On a datastore directory the result is recorded the PBS way: each snapshot's
manifest gets unprotected.verify_state = {"state": "ok"|"failed", "upid": …},
rewritten atomically (the signature stays valid; PBS shows it as the snapshot's
verify state). A read-only store is still verified, with a warning that nothing was
recorded. Over http(s) nothing is recorded (the server is read-only). With --json
the report gains "recorded": {"upid": …, "snapshots": N} when it was recorded.

Encrypted snapshots need --keyfile for a full check; without it only the CRC-32 of
their chunks is checked, and the summary says so.

Options:
  --from DIR|URL      datastore directory, http(s):// URL of a liverestore
                      server, or S3 datastore s3://BUCKET/STORE (required, or --store)
  --token-file FILE   bearer token for an http(s) --from
${tlsTrustHelp(22)}
${s3Help(22)}
  --store DIR         datastore directory or s3://BUCKET/STORE (same as --from)
  --keyfile FILE      PBS key file of encrypted snapshots
  --ns NS             namespace of SNAPSHOT, or where to start verifying all
                      (e.g. prod or prod/db; default: the root namespace)
  --no-record         do not record the result in the manifests
  --json              print the report as JSON
  -h, --help          show this help`,
  options: {
    ...COMMON_OPTIONS,
    ...STORE_SOURCE_OPTIONS,
    ...NAMESPACE_OPTION,
    keyfile: { type: 'string' },
    'no-record': { type: 'boolean' },
  },
  async run({ values, positionals }, io) {
    if (positionals.length > 1) throw new UsageError('verify: give at most one SNAPSHOT');
    const source = await openStoreSource(values, 'verify', io);
    try {
      const refs: SnapshotRef[] =
        positionals[0] === undefined
          ? await source.listSnapshots({
              namespace: parseNamespace(values.ns ?? ''),
              maxDepth: MAX_NAMESPACE_DEPTH,
            })
          : [await source.resolveSnapshot(parseSnapshotSpec(positionals[0], values.ns))];
      const crypt = await loadKeyFile(values.keyfile);
      const files: SnapshotFiles = {
        readSnapshotFile: (ref, filename) => source.readSnapshotFile(ref, filename),
        readChunk: (hex) => source.fetchChunk(hex),
      };
      let progress: Progress | undefined;
      const report = await verifySnapshots(files, refs, {
        crypt,
        stopOn: isSourceFailure,
        onProgress: (p) => {
          progress ??= commandProgress(io, 'verify', p.chunksTotal, values.json, 'items');
          progress.update(p.chunksDone);
        },
      });
      progress?.finish();
      let recorded: RecordedVerify | undefined;
      const localStore = source instanceof LocalChunkSource ? source.store : undefined;
      if (values['no-record'] !== true && localStore !== undefined) {
        recorded = await recordVerifyResults(localStore, refs, report, {
          storeName: basename(resolve(localStore.dir)),
        });
        if (recorded.readOnly !== undefined) {
          io.stderr.write(
            `liverestore: warning: ${recorded.readOnly.code}: ${recorded.readOnly.message}; the result is not recorded\n`,
          );
        }
      }
      if (values.json === true) {
        const record =
          recorded === undefined ? undefined : { upid: recorded.upid, snapshots: recorded.recorded };
        printJson(io, verifyReportJson(report, refs, record));
        return report.ok ? 0 : 1;
      }
      for (const f of report.badFiles)
        io.stdout.write(
          `BAD FILE ${printableLine(`${f.snapshot}/${f.filename}: ${f.code}: ${f.message}`)}\n`,
        );
      for (const c of report.badChunks) {
        io.stdout.write(
          `BAD CHUNK ${c.digest}: ${printableLine(`${c.code}: ${c.message}`)}\n  used by: ${c.archives.join(', ')}\n`,
        );
      }
      io.stdout.write(
        `${report.ok ? 'OK' : 'FAILED'}: ${report.snapshots.length} snapshot(s), ${report.archives} archive(s), ${report.chunks} chunk(s), ` +
          `${formatBytes(report.bytes)} verified; ${report.badChunks.length} bad chunk(s), ${report.badFiles.length} bad file(s)` +
          `${report.crcOnlyChunks > 0 ? `; ${report.crcOnlyChunks} encrypted chunk(s) CRC-checked only (no --keyfile)` : ''}\n`,
      );
      return report.ok ? 0 : 1;
    } finally {
      await source.close?.();
    }
  },
});
