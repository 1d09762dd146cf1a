import {
  type ChunkIndex,
  type CryptConfig,
  checkBlobAgainstManifest,
  decodeChunk,
  LiverestoreError,
  type Manifest,
  toHex,
  verifyBlobCrc,
} from '@liverestore/format';
import { archiveOfFilename, isSnapshotFileName } from './archive-name.js';
import { readSnapshotArchiveIndex, readSnapshotManifest, type SnapshotFiles } from './snapshot-files.js';
import { formatSnapshot, type SnapshotRef } from './snapshot-ref.js';

/** A chunk that failed verification and every archive that needs it. */
export interface BadChunk {
  readonly digest: string;
  readonly code: string;
  readonly message: string;
  /** `vm/100/…/drive-scsi0.img` for every archive using the chunk. */
  readonly archives: readonly string[];
}

/** A file of a snapshot that could not be checked at all (bad manifest, bad index). */
export interface BadFile {
  readonly snapshot: string;
  readonly filename: string;
  readonly code: string;
  readonly message: string;
}

/** Result of {@link verifySnapshots}. */
export interface VerifyReport {
  readonly ok: boolean;
  readonly snapshots: readonly string[];
  readonly archives: number;
  /** Distinct chunks checked. */
  readonly chunks: number;
  /** Plaintext bytes decoded and hashed. */
  readonly bytes: number;
  readonly badChunks: readonly BadChunk[];
  readonly badFiles: readonly BadFile[];
  /** Encrypted chunks that could only be CRC-checked because no key was given. */
  readonly crcOnlyChunks: number;
}

/** Progress of a running verify, after every chunk. */
export interface VerifyProgress {
  readonly chunksDone: number;
  readonly chunksTotal: number;
}

function codeOf(err: unknown): string {
  return err instanceof LiverestoreError ? err.code : ((err as { code?: string }).code ?? 'ERR_LR_UNKNOWN');
}

interface ChunkUse {
  readonly archives: Set<string>;
  /** Every plaintext length an index expects for this digest. */
  readonly lengths: Set<number>;
  /** Used by an encrypted archive: its digest is keyed, its blob encrypted. */
  encrypted: boolean;
}

/**
 * Decodes every chunk the snapshots use, checks every digest and chunk length, and
 * reports each bad chunk with the archives it breaks. Each distinct chunk is read once,
 * however many archives and snapshots share it. Works over any {@link SnapshotFiles}: a
 * local `Datastore` or a remote source; nothing read through it is trusted.
 */
export async function verifySnapshots(
  store: SnapshotFiles,
  refs: readonly SnapshotRef[],
  options: {
    crypt?: CryptConfig | undefined;
    onProgress?: (p: VerifyProgress) => void;
    concurrency?: number;
    /**
     * Errors that stop the verify (it rejects with the first) instead of being reported
     * against a file or chunk: a remote source that is unreachable or refuses the token
     * says nothing about the chunks. Default: none (every error is reported).
     */
    stopOn?: (err: unknown) => boolean;
  } = {},
): Promise<VerifyReport> {
  const stopOn = options.stopOn ?? (() => false);
  const uses = new Map<string, ChunkUse>();
  const badFiles: BadFile[] = [];
  /** Reports a file that could not be checked, unless the error stops the whole verify. */
  const badFile = (snapshot: string, filename: string, err: unknown): void => {
    if (stopOn(err)) throw err;
    badFiles.push({ snapshot, filename, code: codeOf(err), message: (err as Error).message });
  };
  let archives = 0;
  for (const ref of refs) {
    const snapshot = formatSnapshot(ref);
    let manifest: Manifest;
    try {
      manifest = await readSnapshotManifest(store, ref, options.crypt);
    } catch (err) {
      badFile(snapshot, 'index.json.blob', err);
      continue;
    }
    for (const file of manifest.files) {
      if (!isSnapshotFileName(file.filename)) {
        // Never read, but never silently dropped either: the manifest is not one PBS writes.
        badFiles.push({
          snapshot,
          filename: 'index.json.blob',
          code: 'ERR_LR_MANIFEST_INVALID',
          message: `the manifest lists a file with an invalid name: ${JSON.stringify(file.filename)}`,
        });
        continue;
      }
      const archive = archiveOfFilename(file.filename);
      if (archive === undefined) {
        // A blob file the manifest lists (PBS's client.log.blob, say): checked as PBS's verify does.
        if (file.filename.endsWith('.blob')) {
          try {
            const raw = await store.readSnapshotFile(ref, file.filename);
            checkBlobAgainstManifest(file, raw);
            verifyBlobCrc(raw);
          } catch (err) {
            badFile(snapshot, file.filename, err);
          }
        }
        continue;
      }
      archives++;
      let index: ChunkIndex;
      try {
        index = await readSnapshotArchiveIndex(store, ref, archive.name, manifest);
      } catch (err) {
        badFile(snapshot, file.filename, err);
        continue;
      }
      for (let i = 0; i < index.chunkCount; i++) {
        const hex = toHex(index.digestAt(i));
        let use = uses.get(hex);
        if (use === undefined) {
          use = { archives: new Set(), lengths: new Set(), encrypted: false };
          uses.set(hex, use);
        }
        use.archives.add(`${snapshot}/${archive.name}`);
        if (file.cryptMode === 'encrypt') use.encrypted = true;
        use.lengths.add(index.chunkEnd(i) - index.chunkStart(i));
      }
    }
  }

  const badChunks: BadChunk[] = [];
  let bytes = 0;
  let crcOnlyChunks = 0;
  let done = 0;
  let stopped: { err: unknown } | undefined;
  const digests = [...uses.keys()];
  const check = async (hex: string): Promise<void> => {
    const use = uses.get(hex)!;
    try {
      const blob = await store.readChunk(hex);
      // Every CRC, as PBS's verify checks it: the read path leaves out the CRC the digest
      // covers (format's crcCoveredByDigest), so a damaged CRC field alone shows only here.
      verifyBlobCrc(blob);
      if (use.encrypted && options.crypt === undefined) {
        // Without the key only the CRC can be checked (the digest is keyed); say so instead of pretending.
        crcOnlyChunks++;
      } else {
        const crypt = use.encrypted ? options.crypt : undefined;
        const plain = decodeChunk(blob, Buffer.from(hex, 'hex'), { crypt });
        if (use.lengths.size !== 1 || !use.lengths.has(plain.byteLength)) {
          throw new LiverestoreError(
            'ERR_LR_CHUNK_LENGTH_MISMATCH',
            `chunk ${hex} holds ${plain.byteLength} bytes, the index expects ${[...use.lengths].join(' or ')}`,
          );
        }
        bytes += plain.byteLength;
      }
    } catch (err) {
      if (stopOn(err)) {
        stopped ??= { err };
        return;
      }
      badChunks.push({
        digest: hex,
        code: codeOf(err),
        message: (err as Error).message,
        archives: [...use.archives].sort(),
      });
    }
    done++;
    options.onProgress?.({ chunksDone: done, chunksTotal: digests.length });
  };
  let next = 0;
  const workers = Array.from({ length: Math.max(1, options.concurrency ?? 4) }, async () => {
    while (stopped === undefined && next < digests.length) await check(digests[next++]!);
  });
  await Promise.all(workers);
  if (stopped !== undefined) throw stopped.err;
  badChunks.sort((a, b) => (a.digest < b.digest ? -1 : 1));
  return {
    ok: badChunks.length === 0 && badFiles.length === 0,
    snapshots: refs.map(formatSnapshot),
    archives,
    chunks: digests.length,
    bytes,
    badChunks,
    badFiles,
    crcOnlyChunks,
  };
}
