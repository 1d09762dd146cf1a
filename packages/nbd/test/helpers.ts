/*
 * Test helpers for @liverestore/nbd: a small datastore (real backup writer, testkit images,
 * 1 MiB chunks, sizes not multiples of the chunk size) and a minimal NBD client over
 * node:net that tests drive step by step.
 */

import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { backup, Datastore } from '@liverestore/datastore';
import { ChunkCache, openSnapshot, type Snapshot } from '@liverestore/reader';
import {
  type ImageSpec,
  imageBytes,
  shareFixture,
  tempDir,
  type VmImageFile,
  writeVmImageFiles,
} from '@liverestore/testkit';

export { prng } from '@liverestore/testkit';

import anyTest, { type ExecutionContext, type TestFn } from 'ava';
import { type NbdServer, type NbdServerOptions, startNbdServer } from '../src/index.js';
import * as W from '../src/wire.js';

export const MiB = 1024 * 1024;
export const CHUNK_BYTES = MiB;
export const DRIVE_SIZES = [20 * MiB + 512 * 3, 12 * MiB + 512 * 7];

export interface Fixture {
  readonly storeDir: string;
  readonly snapshot: string;
  readonly dir: string;
  readonly drives: readonly VmImageFile[];
  cleanup(): Promise<void>;
}

export async function makeFixture(): Promise<Fixture> {
  const work = await tempDir('lr-nbd-');
  const storeDir = join(work.path, 'store');
  const store = await Datastore.create(storeDir);
  const drives = await writeVmImageFiles(work.path, 7, DRIVE_SIZES);
  const result = await backup(store, {
    type: 'vm',
    id: '100',
    inputs: drives.map((d) => ({ name: d.name, path: d.path })),
    chunkSizeBytes: CHUNK_BYTES,
    encodeThreads: 0,
  });
  return { storeDir, snapshot: result.snapshot, dir: work.path, drives, cleanup: () => work.cleanup() };
}

/**
 * The ava `test` of a file whose tests share one {@link Fixture}: made before the first
 * test, cleaned up after the last. Call once, at the top of the file.
 */
export function fixtureTest(): TestFn<{ fixture: Fixture }> {
  return shareFixture(anyTest as TestFn<{ fixture: Fixture }>, 'fixture', makeFixture);
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

export interface OptionReply {
  option: number;
  type: number;
  data: Buffer;
}

/**
 * A minimal NBD client: fixed newstyle handshake, options, requests with out-of-order
 * replies. It speaks through the shared wire module (wire.test.ts checks that module
 * against byte layouts written out from proto.md), but keeps its own simple control flow,
 * so tests can send what a real client never would: raw options, unknown flags, garbage.
 */
export class MiniClient {
  readonly wire: WireReader;
  structured = false;
  #nextHandle = 1n;
  readonly #pending = new Map<
    bigint,
    {
      type: number;
      length: number;
      chunks: { type: number; payload: Buffer }[];
      resolve: (r: CmdReply) => void;
      reject: (e: Error) => void;
    }
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
    const flags = W.decodeGreeting(await this.wire.read(W.GREETING_BYTES));
    if (flags === undefined) throw new Error('bad greeting');
    this.socket.write(W.encodeClientFlags(W.NBD_FLAG_C_FIXED_NEWSTYLE | W.NBD_FLAG_C_NO_ZEROES));
    return flags;
  }

  sendOption(option: number, data?: Buffer): void {
    this.socket.write(W.encodeOption(option, data));
  }

  async optionReply(): Promise<OptionReply> {
    const h = W.decodeOptionReplyHeader(await this.wire.read(W.OPTION_REPLY_HEADER_BYTES));
    if (h === undefined) throw new Error('bad option reply magic');
    return { option: h.option, type: h.type, data: await this.wire.read(h.length) };
  }

  /** Option replies up to and including the final one (ACK or an error). */
  async option(option: number, data?: Buffer): Promise<OptionReply[]> {
    this.sendOption(option, data);
    const out: OptionReply[] = [];
    for (;;) {
      const r = await this.optionReply();
      out.push(r);
      if (r.type === W.NBD_REP_ACK || r.type >= 2 ** 31) return out;
    }
  }

  async list(): Promise<string[]> {
    const replies = await this.option(W.NBD_OPT_LIST);
    return replies.filter((r) => r.type === W.NBD_REP_SERVER).map((r) => W.decodeServerReply(r.data));
  }

  static goData(name: string): Buffer {
    return W.encodeGoRequest(name);
  }

  /** NBD_OPT_GO; returns { size, flags } or throws with the error reply type. */
  async go(name: string): Promise<{ size: bigint; flags: number; blockSize?: number[] }> {
    const replies = await this.option(W.NBD_OPT_GO, MiniClient.goData(name));
    const last = replies[replies.length - 1]!;
    if (last.type !== W.NBD_REP_ACK) throw Object.assign(new Error('GO refused'), { type: last.type });
    const infos = replies.filter((r) => r.type === W.NBD_REP_INFO).map((r) => W.decodeInfo(r.data));
    const exp = infos.find((i) => i.kind === 'export')!;
    const bs = infos.find((i) => i.kind === 'block-size');
    this.#startReplies();
    return {
      size: BigInt(exp.size),
      flags: exp.transmissionFlags,
      ...(bs === undefined ? {} : { blockSize: [bs.minimum, bs.preferred, bs.maximum] }),
    };
  }

  #startReplies(): void {
    void (async () => {
      try {
        for (;;) {
          const start = await this.wire.read(4);
          const bytes = W.replyHeaderBytes(start);
          if (bytes === undefined) throw new Error(`bad reply magic ${start.toString('hex')}`);
          const h = W.decodeReplyHeader(Buffer.concat([start, await this.wire.read(bytes - 4)]))!;
          const p = this.#pending.get(h.handle);
          if (p === undefined) throw new Error(`unknown handle ${h.handle}`);
          if (h.kind === 'simple') {
            this.#pending.delete(h.handle);
            const data =
              p.type === W.NBD_CMD_READ && h.error === 0 ? await this.wire.read(p.length) : Buffer.alloc(0);
            p.resolve({ error: h.error, data, chunks: [] });
            continue;
          }
          p.chunks.push({ type: h.type, payload: await this.wire.read(h.length) });
          if ((h.flags & W.NBD_REPLY_FLAG_DONE) === 0) continue;
          this.#pending.delete(h.handle);
          const err = p.chunks.find((c) => c.type >= 2 ** 15);
          const data = Buffer.alloc(p.type === W.NBD_CMD_READ ? p.length : 0);
          for (const c of p.chunks) if (c.type === W.NBD_REPLY_TYPE_OFFSET_DATA) c.payload.copy(data, 0, 8); // single-chunk reads
          p.resolve({
            error: err === undefined ? 0 : W.decodeErrorPayload(err.payload).error,
            data,
            chunks: p.chunks,
          });
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
    const h = W.encodeRequestHeader({ flags, type, handle, offset, length });
    const promise = new Promise<CmdReply>((resolve, reject) => {
      this.#pending.set(handle, { type, length, chunks: [], resolve, reject });
    });
    this.socket.write(payload === undefined ? h : Buffer.concat([h, payload]));
    return promise;
  }

  /** NBD_CMD_DISC, then wait for the server to close. */
  async disconnect(): Promise<void> {
    this.socket.write(
      W.encodeRequestHeader({ flags: 0, type: W.NBD_CMD_DISC, handle: 0n, offset: 0, length: 0 }),
    );
    await this.wire.closedByPeer();
  }
}

export interface CmdReply {
  error: number;
  data: Buffer;
  chunks: { type: number; payload: Buffer }[];
}

/**
 * Resolves once `condition()` holds, checking every few milliseconds: for states the
 * server shows only through its counters (a connection blocked, a slot freed). A test
 * that waits with it also sets `t.timeout`, so a state never reached fails with a message.
 */
export async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((r) => setTimeout(r, 5));
}
