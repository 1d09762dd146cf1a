import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { type ChunkIndex, CryptConfig, readIndex } from '@liverestore/format';
import { type Endpoint, expose, type Remote, transferHandlers, wrap } from 'comlink';
import { type ArchiveReaderOptions, CachedChunkReader } from './cached-chunk-reader.js';
import type { ChunkAccess } from './chunk-access.js';
import { chunkCacheInternals } from './chunk-cache.js';
import { abortError, fromErrorRecord, ReaderError, toErrorRecord } from './errors.js';
import { type Lease, type SharedCacheMemory, type SlotIndex, SlotTable } from './slot-table.js';
import type { Snapshot } from './snapshot.js';

/*
 * Readers in other threads. The coordinator stays on its thread; a worker gets a
 * MessagePort to a small comlink endpoint (acquire/prefetch for one archive) plus the
 * SharedArrayBuffers, and copies chunk bytes out of shared memory itself. Pins are taken
 * by the coordinator before a lease crosses the port and dropped by the reader with
 * Atomics, so no message is needed to release.
 */

// comlink serialises only name, message and stack of a thrown error; keep `code` too,
// since that is what callers match on.
const originalThrow = transferHandlers.get('throw')!;
transferHandlers.set('throw', {
  canHandle: originalThrow.canHandle,
  serialize: ({ value }: { value: unknown }) =>
    value instanceof Error
      ? [{ isError: true, value: toErrorRecord(value) }, []]
      : [{ isError: false, value }, []],
  deserialize: (serialized: { isError: boolean; value: unknown }) => {
    if (serialized.isError) throw fromErrorRecord(serialized.value as Parameters<typeof fromErrorRecord>[0]);
    throw serialized.value;
  },
} as Parameters<typeof transferHandlers.set>[1]);

/** Node's MessagePort is an EventTarget with `data` on its message events: what comlink expects. */
function asEndpoint(port: MessagePort): Endpoint {
  return port as unknown as Endpoint;
}

/** The calls a remote reader makes to the coordinator (bound to one archive's source and key). */
export interface RemoteChunkEndpoint {
  acquire(digestHex: string, length: number, background: boolean): Promise<Lease>;
  prefetch(digestHex: string, length: number): void;
}

/** Everything a worker thread needs to read one archive; post it with `transferList: [handle.port]`. */
export interface RemoteArchiveHandle {
  readonly name: string;
  /** The raw index file (checked against the manifest when the handle was made). */
  readonly index: Uint8Array;
  /** Raw key of an encrypted archive. */
  readonly key?: Uint8Array;
  readonly memory: SharedCacheMemory;
  readonly capacityBytes: number;
  readonly port: MessagePort;
  /** Per-slot count of pins the remote side holds (see exportArchive). */
  readonly held: SharedArrayBuffer;
}

/**
 * Makes a handle through which a reader in another thread reads `archive` of `snapshot`
 * via the snapshot's shared cache. Close the port (or let the worker exit) when done.
 */
export async function exportArchive(snapshot: Snapshot, archive: string): Promise<RemoteArchiveHandle> {
  const { name, raw } = await snapshot.readIndex(archive);
  const key = snapshot.crypt?.exportKey();
  const { cache, source } = snapshot;
  const { table, memory } = chunkCacheInternals(cache);
  // Pins this export handed out and not yet dropped, per slot (shared: the remote side
  // decrements as it unpins). If the remote thread dies holding leases, its port closes
  // and we drop what it still held, so one dead reader cannot wedge the cache.
  const held = new Int32Array(new SharedArrayBuffer(table.slotCount * 4));
  let portClosed = false;
  const endpoint: RemoteChunkEndpoint = {
    acquire: async (digestHex, length, background) => {
      const lease = await cache.acquire({ digestHex, length, source, key, background });
      if (portClosed) {
        // The reader died while its chunk loaded: nobody will ever unpin this lease.
        cache.release(lease);
        throw new ReaderError('ERR_LR_ABORTED', 'the remote reader is gone');
      }
      Atomics.add(held, lease.slot, 1);
      return lease;
    },
    prefetch: (digestHex, length) => {
      cache.prefetch({ digestHex, length, source, key });
    },
  };
  const { port1, port2 } = new MessageChannel();
  expose(endpoint, asEndpoint(port1));
  port1.once('close', () => {
    portClosed = true;
    for (let slot = 0; slot < held.length; slot++) {
      for (let n = Atomics.exchange(held, slot, 0); n > 0; n--) table.unpinSlot(slot as SlotIndex);
    }
  });
  return {
    name,
    index: raw,
    ...(key === undefined ? {} : { key }),
    memory,
    capacityBytes: cache.capacityBytes,
    port: port2,
    held: held.buffer as SharedArrayBuffer,
  };
}

/** Opens, in any thread, the reader of an archive exported with {@link exportArchive}. */
export function openRemoteArchive(
  handle: RemoteArchiveHandle,
  options: ArchiveReaderOptions = {},
): CachedChunkReader {
  const table = new SlotTable(handle.memory);
  const held = new Int32Array(handle.held);
  const unpin = (lease: Lease): void => {
    Atomics.sub(held, lease.slot, 1);
    table.unpin(lease);
  };
  const remote: Remote<RemoteChunkEndpoint> = wrap<RemoteChunkEndpoint>(asEndpoint(handle.port));
  const access: ChunkAccess = {
    table,
    capacityBytes: handle.capacityBytes,
    acquire: (digestHex, length, signal, background = false) => {
      const pending = remote.acquire(digestHex, length, background) as Promise<Lease>;
      if (signal === undefined) return pending;
      if (signal.aborted) {
        // Through `unpin`, so the `held` count drops too (else the port's close unpins again).
        void pending.then(
          (lease) => unpin(lease),
          () => undefined,
        );
        return Promise.reject(abortError(signal));
      }
      // The coordinator pins before replying; a reader that gave up still owes the unpin.
      return new Promise<Lease>((resolve, reject) => {
        let settled = false;
        const onAbort = (): void => {
          settled = true;
          reject(abortError(signal));
        };
        signal.addEventListener('abort', onAbort, { once: true });
        pending.then(
          (lease) => {
            signal.removeEventListener('abort', onAbort);
            if (settled) unpin(lease);
            else resolve(lease);
          },
          (err: unknown) => {
            signal.removeEventListener('abort', onAbort);
            if (!settled) reject(err);
          },
        );
      });
    },
    release: unpin,
    prefetch: (digestHex, length) => {
      void remote.prefetch(digestHex, length);
    },
  };
  const index: ChunkIndex = readIndex(handle.index);
  const crypt = handle.key === undefined ? undefined : new CryptConfig(handle.key);
  return new CachedChunkReader(handle.name, index, access, crypt, options);
}
