/*
 * Test helpers for @liverestore/nbd: a small datastore (real backup writer, testkit images,
 * 1 MiB chunks, sizes not multiples of the chunk size) and a minimal hand-written NBD
 * client over node:net, so the wire format is checked independently of the server code.
 */

import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { backup, Datastore } from '@liverestore/datastore';
import { ChunkCache, openSnapshot, type Snapshot } from '@liverestore/reader';
import { type ImageSpec, imageBytes, tempDir, vmImageSet, writeImageFile } from '@liverestore/testkit';

export { prng } from '@liverestore/testkit';

import type { ExecutionContext } from 'ava';
import { type NbdServer, type NbdServerOptions, startNbdServer } from '../src/index.js';

export const MiB = 1024 * 1024;
export const CHUNK_BYTES = MiB;
export const DRIVE_SIZES = [20 * MiB + 512 * 3, 12 * MiB + 512 * 7];

export interface Fixture {
  readonly storeDir: string;
  readonly snapshot: string;
  readonly dir: string;
  readonly drives: readonly { readonly name: string; readonly spec: ImageSpec; readonly path: string }[];
  cleanup(): Promise<void>;
}

export async function makeFixture(): Promise<Fixture> {
  const work = await tempDir('lr-nbd-');
  const storeDir = join(work.path, 'store');
  const store = await Datastore.create(storeDir);
  const drives = vmImageSet(7, { drives: DRIVE_SIZES.length, sizeBytes: DRIVE_SIZES }).map((d) => ({
    ...d,
    path: join(work.path, `${d.name}.raw`),
  }));
  for (const d of drives) await writeImageFile(d.spec, d.path);
  const result = await backup(store, {
    type: 'vm',
    id: '100',
    inputs: drives.map((d) => ({ name: d.name, path: d.path })),
    chunkSizeBytes: CHUNK_BYTES,
    encodeThreads: 0,
  });
  return { storeDir, snapshot: result.snapshot, dir: work.path, drives, cleanup: () => work.cleanup() };
}

/** Indices of the all-zero chunks of a drive, computed from the source bytes. */
export function zeroChunks(spec: ImageSpec): number[] {
  const out: number[] = [];
  for (let i = 0; i * CHUNK_BYTES < spec.sizeBytes; i++) {
    const len = Math.min(CHUNK_BYTES, spec.sizeBytes - i * CHUNK_BYTES);
    if (imageBytes(spec, i * CHUNK_BYTES, len).every((b) => b === 0)) out.push(i);
  }
  return out;
}

/** A server over the fixture with its own small cache; everything is closed on teardown. */
export async function serve(
  t: ExecutionContext,
  f: Fixture,
  options: Partial<NbdServerOptions> = {},
): Promise<{ server: NbdServer; snapshot: Snapshot; cache: ChunkCache }> {
  const cache = new ChunkCache({ cacheBytes: 16 * MiB, workers: 0 });
  const snapshot = await openSnapshot({ source: f.storeDir, snapshot: f.snapshot, cache });
  const server = await startNbdServer({ snapshot, listen: { host: '127.0.0.1', port: 0 }, ...options });
  t.teardown(async () => {
    await server.close();
    await snapshot.close();
    await cache.close();
  });
  return { server, snapshot, cache };
}

/** Buffered reads of exact lengths from a socket. */
export class WireReader {
  #buf = Buffer.alloc(0);
  #waiters: (() => void)[] = [];
  closed = false;

  constructor(readonly socket: Socket) {
    socket.on('data', (d: Buffer) => {
      this.#buf = Buffer.concat([this.#buf, d]);
      this.#wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.#wake();
    });
    socket.on('error', () => {});
  }

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }

  async read(n: number): Promise<Buffer> {
    while (this.#buf.length < n) {
      if (this.closed) throw new Error(`connection closed (wanted ${n} bytes, have ${this.#buf.length})`);
      await new Promise<void>((r) => this.#waiters.push(r));
    }
    const out = this.#buf.subarray(0, n);
    this.#buf = this.#buf.subarray(n);
    return out;
  }

  /** Resolves when the server closed the connection. */
  async closedByPeer(): Promise<void> {
    while (!this.closed) await new Promise<void>((r) => this.#waiters.push(r));
  }
}

export const IHAVEOPT = 0x49484156454f5054n;
export const REP_MAGIC = 0x3e889045565a9n;

export interface OptionReply {
  option: number;
  type: number;
  data: Buffer;
}

/** A minimal NBD client: fixed newstyle handshake, options, requests with out-of-order replies. */
export class MiniClient {
  readonly wire: WireReader;
  structured = false;
  #nextHandle = 1n;
  readonly #pending = new Map<
    bigint,
    { type: number; length: number; resolve: (r: CmdReply) => void; reject: (e: Error) => void }
  >();

  private constructor(readonly socket: Socket) {
    this.wire = new WireReader(socket);
  }

  static async connect(port: number | string): Promise<MiniClient> {
    const socket = typeof port === 'number' ? connect({ host: '127.0.0.1', port }) : connect({ path: port });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    return new MiniClient(socket);
  }

  /** Reads the greeting and answers with client flags FIXED_NEWSTYLE | NO_ZEROES. */
  async greet(): Promise<number> {
    const g = await this.wire.read(18);
    if (g.readBigUInt64BE(0) !== 0x4e42444d41474943n || g.readBigUInt64BE(8) !== IHAVEOPT)
      throw new Error('bad greeting');
    this.socket.write(Buffer.from([0, 0, 0, 3]));
    return g.readUInt16BE(16);
  }

  sendOption(option: number, data: Buffer = Buffer.alloc(0)): void {
    const h = Buffer.alloc(16);
    h.writeBigUInt64BE(IHAVEOPT, 0);
    h.writeUInt32BE(option, 8);
    h.writeUInt32BE(data.length, 12);
    this.socket.write(Buffer.concat([h, data]));
  }

  async optionReply(): Promise<OptionReply> {
    const h = await this.wire.read(20);
    if (h.readBigUInt64BE(0) !== REP_MAGIC) throw new Error('bad option reply magic');
    const length = h.readUInt32BE(16);
    return { option: h.readUInt32BE(8), type: h.readUInt32BE(12), data: await this.wire.read(length) };
  }

  /** Option replies up to and including the final one (ACK or an error). */
  async option(option: number, data?: Buffer): Promise<OptionReply[]> {
    this.sendOption(option, data);
    const out: OptionReply[] = [];
    for (;;) {
      const r = await this.optionReply();
      out.push(r);
      if (r.type === 1 || r.type >= 2 ** 31) return out;
    }
  }

  async list(): Promise<string[]> {
    const replies = await this.option(3);
    return replies
      .filter((r) => r.type === 2)
      .map((r) => r.data.toString('utf8', 4, 4 + r.data.readUInt32BE(0)));
  }

  static goData(name: string): Buffer {
    const n = Buffer.from(name, 'utf8');
    const b = Buffer.alloc(6 + n.length);
    b.writeUInt32BE(n.length, 0);
    n.copy(b, 4);
    return b;
  }

  /** NBD_OPT_GO; returns { size, flags } or throws with the error reply type. */
  async go(name: string): Promise<{ size: bigint; flags: number; blockSize?: number[] }> {
    const replies = await this.option(7, MiniClient.goData(name));
    const last = replies[replies.length - 1]!;
    if (last.type !== 1) throw Object.assign(new Error('GO refused'), { type: last.type });
    const exp = replies.find((r) => r.type === 3 && r.data.readUInt16BE(0) === 0)!;
    const bs = replies.find((r) => r.type === 3 && r.data.readUInt16BE(0) === 3);
    this.#startReplies();
    return {
      size: exp.data.readBigUInt64BE(2),
      flags: exp.data.readUInt16BE(10),
      ...(bs === undefined
        ? {}
        : { blockSize: [bs.data.readUInt32BE(2), bs.data.readUInt32BE(6), bs.data.readUInt32BE(10)] }),
    };
  }

  #startReplies(): void {
    void (async () => {
      try {
        for (;;) {
          const magic = (await this.wire.read(4)).readUInt32BE(0);
          if (magic === 0x67446698) {
            const rest = await this.wire.read(12);
            const error = rest.readUInt32BE(0);
            const handle = rest.readBigUInt64BE(4);
            const p = this.#pending.get(handle);
            if (p === undefined) throw new Error(`unknown handle ${handle}`);
            this.#pending.delete(handle);
            const data = p.type === 0 && error === 0 ? await this.wire.read(p.length) : Buffer.alloc(0);
            p.resolve({ error, data, chunks: [] });
          } else if (magic === 0x668e33ef) {
            const rest = await this.wire.read(16);
            const flags = rest.readUInt16BE(0);
            const type = rest.readUInt16BE(2);
            const handle = rest.readBigUInt64BE(4);
            const payload = await this.wire.read(rest.readUInt32BE(12));
            const p = this.#pending.get(handle);
            if (p === undefined) throw new Error(`unknown handle ${handle}`);
            const acc = (p as unknown as { acc?: { type: number; payload: Buffer }[] }).acc ?? [];
            (p as unknown as { acc: typeof acc }).acc = acc;
            acc.push({ type, payload });
            if ((flags & 1) !== 0) {
              this.#pending.delete(handle);
              const err = acc.find((c) => c.type >= 2 ** 15);
              const data = Buffer.alloc(p.type === 0 ? p.length : 0);
              for (const c of acc) if (c.type === 1) c.payload.copy(data, 0, 8); // single-chunk reads
              p.resolve({ error: err === undefined ? 0 : err.payload.readUInt32BE(0), data, chunks: acc });
            }
          } else throw new Error(`bad reply magic ${magic.toString(16)}`);
        }
      } catch (e) {
        for (const p of this.#pending.values()) p.reject(e as Error);
        this.#pending.clear();
      }
    })();
  }

  /** Sends a request; resolves with its (possibly out-of-order) reply. */
  request(type: number, offset: number, length: number, payload?: Buffer, flags = 0): Promise<CmdReply> {
    const handle = this.#nextHandle++;
    const h = Buffer.alloc(28);
    h.writeUInt32BE(0x25609513, 0);
    h.writeUInt16BE(flags, 4);
    h.writeUInt16BE(type, 6);
    h.writeBigUInt64BE(handle, 8);
    h.writeBigUInt64BE(BigInt(offset), 16);
    h.writeUInt32BE(length, 24);
    const promise = new Promise<CmdReply>((resolve, reject) => {
      this.#pending.set(handle, { type, length, resolve, reject });
    });
    this.socket.write(payload === undefined ? h : Buffer.concat([h, payload]));
    return promise;
  }

  /** NBD_CMD_DISC, then wait for the server to close. */
  async disconnect(): Promise<void> {
    const h = Buffer.alloc(28);
    h.writeUInt32BE(0x25609513, 0);
    h.writeUInt16BE(2, 6);
    this.socket.write(h);
    await this.wire.closedByPeer();
  }
}

export interface CmdReply {
  error: number;
  data: Buffer;
  chunks: { type: number; payload: Buffer }[];
}
