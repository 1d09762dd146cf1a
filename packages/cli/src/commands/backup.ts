import { backup, parseSnapshotSpec } from '@liverestore/datastore';
import type { Compression } from '@liverestore/format';
import { checkFixedChunkSize } from '@liverestore/format/internal';
import {
  COMMON_OPTIONS,
  commandProgress,
  defineCommand,
  loadKeyFile,
  printJson,
  required,
} from '../command.js';
import { UsageError } from '../errors.js';
import { backupResultJson } from '../json-shapes.js';
import type { Progress } from '../progress.js';
import { S3_OPTIONS, s3Help, s3OptionsFromValues } from '../s3-options.js';
import { NAMESPACE_OPTION, openBackupStore } from '../source.js';
import { formatBytes, formatRate, parseBytes } from '../units.js';

const COMPRESSIONS: readonly Compression[] = ['zstd', 'deflate', 'none'];

export const backupCommand = defineCommand({
  name: 'backup',
  summary: 'back up disk images and files into a new snapshot',
  help: `Usage: liverestore backup --store DIR|s3://BUCKET/STORE [--ns NS] --snapshot TYPE/ID ARCHIVE=PATH [ARCHIVE=PATH ...] [options]

Backs up raw disk images, block devices and other files into a new snapshot
TYPE/ID/<now> of the datastore DIR (created if missing), in the Proxmox Backup Server
format, or of the S3 datastore s3://BUCKET/STORE (PBS 4.x's S3 layout; the bucket
must exist; endpoint, region and keys by the --s3-* options, else from
AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY). Chunks already in the store are reused, so a second backup of a barely
changed image writes only the changed chunks. A new group gets an owner file
(root@pam) as PBS writes it; an existing group keeps its owner, notes and
snapshots untouched.

Archive names follow PBS:
  drive-scsi0.img=PATH   fixed-index disk image, stored as drive-scsi0.img.fidx
  drive-scsi0=PATH       the same (no extension means .img)
  notes.txt=PATH         any other extension: dynamic index (content-defined
                         chunks), stored as notes.txt.didx

Options:
  --store DIR|URL      datastore directory or s3://BUCKET/STORE (required)
  --snapshot TYPE/ID   backup group, e.g. vm/100 (TYPE is vm, ct or host) (required)
  --ns NS              PBS namespace to back up into, e.g. prod or prod/db (up to
                       7 levels; created if missing; default: the root namespace)
  --compress ALGO      zstd (default: level 1, as PBS writes), deflate (liverestore's
                       own blob magic, PBS cannot read it) or none. Chunks that do not
                       shrink are stored uncompressed, as PBS does.
  --chunk-size SIZE    fixed-index chunk size, power of two 64KiB..4MiB (default 4MiB)
  --keyfile FILE       encrypt with this PBS key file (see: liverestore key create)
${s3Help(23)}
  --json               print the result as JSON
  -h, --help           show this help

Prints the new snapshot (e.g. vm/100/2026-11-26T10:00:00Z) and counts: bytes read,
chunks new and reused, bytes written.`,
  options: {
    ...COMMON_OPTIONS,
    store: { type: 'string' },
    ...S3_OPTIONS,
    snapshot: { type: 'string' },
    ...NAMESPACE_OPTION,
    compress: { type: 'string' },
    'chunk-size': { type: 'string' },
    keyfile: { type: 'string' },
  },
  async run(args, io) {
    const { values, positionals } = args;
    const storeDir = required(values.store, '--store', 'backup');
    const spec = parseSnapshotSpec(required(values.snapshot, '--snapshot', 'backup'), values.ns);
    if (spec.time !== undefined)
      throw new UsageError('backup: --snapshot takes TYPE/ID; the time is chosen by the backup');
    const compress = (values.compress ?? 'zstd') as Compression;
    if (!COMPRESSIONS.includes(compress)) {
      throw new UsageError(
        `backup: --compress must be one of ${COMPRESSIONS.join(', ')}, got "${values.compress}"`,
      );
    }
    const chunkSizeBytes =
      values['chunk-size'] === undefined ? undefined : parseBytes(values['chunk-size'], '--chunk-size');
    if (chunkSizeBytes !== undefined) {
      try {
        checkFixedChunkSize(chunkSizeBytes, '--chunk-size');
      } catch (err) {
        throw new UsageError(`backup: ${(err as Error).message}`);
      }
    }
    if (positionals.length === 0) throw new UsageError('backup: name at least one ARCHIVE=PATH');
    const inputs = positionals.map((arg) => {
      const eq = arg.indexOf('=');
      if (eq <= 0 || eq === arg.length - 1) throw new UsageError(`backup: "${arg}" is not ARCHIVE=PATH`);
      return { name: arg.slice(0, eq), path: arg.slice(eq + 1) };
    });
    const crypt = await loadKeyFile(values.keyfile);
    const store = await openBackupStore(
      storeDir,
      'backup',
      await s3OptionsFromValues(values, storeDir, 'backup'),
    );
    let progress: Progress | undefined;
    let result: Awaited<ReturnType<typeof backup>>;
    try {
      result = await backup(store, {
        namespace: spec.namespace,
        type: spec.type,
        id: spec.id,
        inputs,
        compress,
        crypt,
        ...(chunkSizeBytes === undefined ? {} : { chunkSizeBytes }),
        onProgress: (p) => {
          progress ??= commandProgress(io, 'backup', p.totalBytes, values.json);
          progress.update(p.totalBytesDone);
        },
      });
    } finally {
      await store.close?.();
    }
    progress?.finish();
    if (values.json === true) {
      printJson(io, backupResultJson(result));
      return 0;
    }
    io.stdout.write(`${result.snapshot}\n`);
    for (const a of result.archives) {
      io.stdout.write(
        `  ${a.filename}: ${formatBytes(a.sizeBytes)}, ${a.chunks} chunks (${a.chunksNew} new, ${a.chunksReused} reused, ${a.zeroChunks} zero)\n`,
      );
    }
    io.stdout.write(
      `read ${formatBytes(result.bytesRead)} in ${result.seconds.toFixed(1)} s (${formatRate(result.bytesRead, result.seconds)}); ` +
        `chunks: ${result.chunksNew} new, ${result.chunksReused} reused; wrote ${formatBytes(result.bytesWritten)}\n`,
    );
    return 0;
  },
});
