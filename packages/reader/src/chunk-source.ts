import {
  Datastore,
  type NamespaceScope,
  type SnapshotInfo,
  type SnapshotRef,
  type SnapshotSpec,
} from '@liverestore/datastore';
import type { BodyMemory } from '@liverestore/format/internal';

/**
 * Where raw chunk blobs and snapshot files come from: a local datastore
 * ({@link LocalChunkSource}) or a liverestore HTTP server (`HttpChunkSource`). A source may be asked for many chunks at once and should fetch them
 * in parallel; retrying is its business (it knows what a transient failure looks like),
 * the cache never retries on its own. Blobs are untrusted: the decode pool checks them.
 */
export interface ChunkSource {
  /** Short description for logs and errors: a path or a URL. */
  readonly name: string;
  /**
   * The raw blob of a chunk. Must honour `signal`. `hints.urgent` says whether a reader
   * waits for it now (read it each time it matters: the cache raises it when a waiting
   * reader joins a readahead load); without hints a fetch is urgent. A source whose
   * bandwidth is scarce serves urgent fetches first.
   */
  fetchChunk(digestHex: string, signal?: AbortSignal, hints?: FetchHints): Promise<Uint8Array>;
  /**
   * True when every blob `fetchChunk` returns is the caller's alone (the source keeps no
   * reference): the decode pool may then take its memory instead of copying it.
   */
  readonly blobsAreTransferable?: boolean;
  /**
   * True when a blob's bytes come over time (a network answer) into the memory the hints
   * give, each arrival reported through `hints.blobMemory.arrived`: the cache may then
   * decode the blob as it arrives. A source that reads a blob at once (a file) leaves it out.
   */
  readonly blobsArrive?: boolean;
  /**
   * The cache calls this when a blob `fetchChunk` returned failed verification (CRC, digest,
   * length, decryption). A source that keeps copies of blobs (a persistent chunk cache)
   * drops its copy here, so that it is never served again, and resolves true when it had
   * one: a second fetch may then bring other bytes, and the cache fetches once more.
   * Without it (or on false) the failure is final for that load.
   */
  discardBlob?(digestHex: string): Promise<boolean>;
  /**
   * Snapshots this source offers: of the root namespace, or of `scope.namespace`, and of
   * the namespaces `scope.maxDepth` levels below it.
   */
  listSnapshots(scope?: NamespaceScope): Promise<SnapshotRef[]>;
  /**
   * `scope.namespace` (default the root) and the namespaces below it (default all levels),
   * sorted. A source without it knows only the root namespace.
   */
  listNamespaces?(scope?: NamespaceScope): Promise<string[]>;
  /**
   * Resolves a group (`time` absent) to its latest snapshot, or checks a full reference, in
   * the spec's namespace (`ERR_LR_SNAPSHOT_NOT_FOUND` names the namespace it looked in).
   */
  resolveSnapshot(spec: SnapshotSpec): Promise<SnapshotRef>;
  /** A file of a snapshot directory (`index.json.blob`, `drive-scsi0.img.fidx`), raw. */
  readSnapshotFile(ref: SnapshotRef, filename: string): Promise<Uint8Array>;
  /**
   * A snapshot as listings show it: what its manifest says, plus what the store keeps beside
   * it (the group's owner, `.protected`, group notes). A source without it offers only the
   * manifest (`readSnapshotInfo` over `readSnapshotFile`).
   */
  snapshotInfo?(ref: SnapshotRef): Promise<SnapshotInfo>;
  close?(): Promise<void>;
}

/**
 * How much a fetch matters, as a live view: the cache owns it and may raise `urgent`
 * while the fetch runs.
 * - urgent: a reader waits for this chunk and its read is not part of a sequential
 *   stream (a guest's random read);
 * - not urgent (background): readahead, and the reads of sequential streams (a copy
 *   job, a restore), which want throughput rather than latency.
 */
export interface FetchHints {
  readonly urgent: boolean;
  /**
   * Calls `listener` once if `urgent` is raised later (not when it is already true);
   * returns the unsubscribe. A source whose background fetch waits (for a lane, for the
   * link) uses it to go on as urgent at once, not when the wait ends. Optional: without
   * it the source looks at `urgent` when it can.
   */
  onUrgent?(listener: () => void): () => void;
  /**
   * Memory for the chunk's blob, of the size the source learns: a source that reads a
   * blob into memory it allocates takes it here (the chunk cache reuses blob memory once
   * the decode is done, so a fetch allocates and faults in no fresh pages). Optional on
   * both sides: a source may allocate its own, and without it every source does.
   */
  readonly blobMemory?: BodyMemory | undefined;
}

/**
 * The listing half of a datastore, local or S3: what a chunk source over a store passes
 * through unchanged.
 */
export interface SnapshotStore {
  listSnapshotRefs(scope?: NamespaceScope): Promise<SnapshotRef[]>;
  listNamespaces(scope?: NamespaceScope): Promise<string[]>;
  resolveSnapshot(spec: SnapshotSpec): Promise<SnapshotRef>;
  readSnapshotFile(ref: SnapshotRef, filename: string): Promise<Uint8Array>;
  snapshotInfo(ref: SnapshotRef): Promise<SnapshotInfo>;
}

/**
 * A chunk source over a datastore it holds: listings, snapshot files and snapshot info come
 * from the store as it answers them; only fetching chunks (and naming the source) differ
 * between stores.
 */
export abstract class StoreChunkSource<Store extends SnapshotStore> implements ChunkSource {
  protected constructor(readonly store: Store) {}

  abstract readonly name: string;

  abstract fetchChunk(digestHex: string, signal?: AbortSignal, hints?: FetchHints): Promise<Uint8Array>;

  listSnapshots(scope?: NamespaceScope): Promise<SnapshotRef[]> {
    return this.store.listSnapshotRefs(scope);
  }

  listNamespaces(scope?: NamespaceScope): Promise<string[]> {
    return this.store.listNamespaces(scope);
  }

  resolveSnapshot(spec: SnapshotSpec): Promise<SnapshotRef> {
    return this.store.resolveSnapshot(spec);
  }

  readSnapshotFile(ref: SnapshotRef, filename: string): Promise<Uint8Array> {
    return this.store.readSnapshotFile(ref, filename);
  }

  snapshotInfo(ref: SnapshotRef): Promise<SnapshotInfo> {
    return this.store.snapshotInfo(ref);
  }
}

/** A datastore on the local file system as a chunk source. */
export class LocalChunkSource extends StoreChunkSource<Datastore> {
  /**
   * Every blob is a Buffer read for this call alone (`Datastore.readChunk`), so the decode
   * pool may move it to a worker instead of copying it: one copy and one fresh allocation
   * less per chunk on the main thread (docs/benchmarks.md, "CPU per stage").
   */
  readonly blobsAreTransferable: boolean = true;

  get name(): string {
    return this.store.dir;
  }

  static async open(dir: string): Promise<LocalChunkSource> {
    return new LocalChunkSource(await Datastore.open(dir));
  }

  fetchChunk(digestHex: string, signal?: AbortSignal, hints?: FetchHints): Promise<Uint8Array> {
    return this.store.readChunk(digestHex, signal, hints?.blobMemory);
  }
}
