/**
 * A small NBD client for the live-restore benchmark: fixed newstyle handshake,
 * NBD_OPT_STRUCTURED_REPLY (optional), NBD_OPT_GO, then NBD_CMD_READ with many requests
 * in flight and replies in any order, simple or structured (OFFSET_DATA, OFFSET_HOLE,
 * NONE, ERROR). It plays QEMU's part: one connection per drive. Reply data is copied
 * straight from the socket's buffers into the caller's buffer.
 */

import { connect, type Socket } from 'node:net';

const NBDMAGIC = 0x4e42444d41474943n;
const IHAVEOPT = 0x49484156454f5054n;
const REP_MAGIC = 0x3e889045565a9n;
const REQUEST_MAGIC = 0x25609513;
const SIMPLE_REPLY_MAGIC = 0x67446698;
const STRUCTURED_REPLY_MAGIC = 0x668e33ef;
const FLAG_FIXED_NEWSTYLE = 1;
const FLAG_NO_ZEROES = 2;
const OPT_GO = 7;
const OPT_STRUCTURED_REPLY = 8;
const REP_ACK = 1;
const REP_INFO = 3;
const INFO_EXPORT = 0;
const CMD_READ = 0;
const CMD_DISC = 2;
const REPLY_FLAG_DONE = 1;
const REPLY_TYPE_NONE = 0;
const REPLY_TYPE_OFFSET_DATA = 1;
const REPLY_TYPE_OFFSET_HOLE = 2;
const REPLY_TYPE_ERROR_BIT = 0x8000;
/** Largest option reply accepted during the handshake. */
const MAX_OPTION_REPLY = 64 * 1024;

/** An error the server sent for a request, or a protocol violation. */
export class NbdClientError extends Error {
  constructor(
    message: string,
    readonly errno?: number,
  ) {
    super(message);
    this.name = 'NbdClientError';
  }
}

/** Bytes received and not yet consumed, as a list of socket buffers. */
class ByteQueue {
  #chunks: Buffer[] = [];
  #first = 0;
  length = 0;

  push(data: Buffer): void {
    this.#chunks.push(data);
    this.length += data.length;
  }

  /** The next `n` bytes (n ≤ length) as one buffer: a view when they lie in one chunk. */
  take(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0);
    const head = this.#chunks[0]!;
    if (head.length - this.#first >= n) {
      const out = head.subarray(this.#first, this.#first + n);
      this.#advance(n);
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    this.copyTo(out, 0, n);
    return out;
  }

  /** Moves the next `n` bytes (n ≤ length) into `target` at `at`. */
  copyTo(target: Uint8Array, at: number, n: number): void {
    let left = n;
    let pos = at;
    while (left > 0) {
      const head = this.#chunks[0]!;
      const take = Math.min(left, head.length - this.#first);
      head.copy(target, pos, this.#first, this.#first + take);
      pos += take;
      left -= take;
      this.#advance(take);
    }
  }

  /** The next 4 bytes as a big-endian u32, not consumed (length ≥ 4). */
  peekUInt32(): number {
    const head = this.#chunks[0]!;
    if (head.length - this.#first >= 4) return head.readUInt32BE(this.#first);
    const b = Buffer.allocUnsafe(4);
    let pos = 0;
    for (let i = 0, from = this.#first; pos < 4; i++, from = 0) {
      const c = this.#chunks[i]!;
      const n = Math.min(4 - pos, c.length - from);
      c.copy(b, pos, from, from + n);
      pos += n;
    }
    return b.readUInt32BE(0);
  }

  skip(n: number): void {
    let left = n;
    while (left > 0) {
      const take = Math.min(left, this.#chunks[0]!.length - this.#first);
      this.#advance(take);
      left -= take;
    }
  }

  #advance(n: number): void {
    this.#first += n;
    this.length -= n;
    if (this.#first === this.#chunks[0]!.length) {
      this.#chunks.shift();
      this.#first = 0;
    }
  }
}

interface Pending {
  readonly buffer: Uint8Array;
  readonly offset: number;
  resolve(): void;
  reject(error: Error): void;
  error?: Error;
}

/** What {@link NbdClient.connect} negotiates. */
export interface NbdClientOptions {
  readonly host?: string;
  readonly port: number;
  readonly exportName: string;
  /** Ask for structured replies (as QEMU does). Default true. */
  readonly structuredReplies?: boolean;
}

/** One NBD connection in transmission phase. */
export class NbdClient {
  readonly #socket: Socket;
  readonly #queue = new ByteQueue();
  readonly #pending = new Map<bigint, Pending>();
  #nextHandle = 1n;
  #wake: (() => void) | undefined;
  #failed: Error | undefined;
  /** Export size in bytes. */
  size = 0;
  /** Transmission flags of the export. */
  flags = 0;
  /** Whether the server agreed to structured replies. */
  structured = false;
  // Reply parser state: the header being worked on.
  #reply: { handle: bigint; pending: Pending; type: number; flags: number; left: number } | undefined;

  private constructor(socket: Socket) {
    this.#socket = socket;
    socket.setNoDelay(true);
    socket.on('data', (data: Buffer) => {
      this.#queue.push(data);
      if (this.#wake !== undefined) {
        const wake = this.#wake;
        this.#wake = undefined;
        wake();
      } else if (this.#reply !== undefined || this.#pending.size > 0) this.#parse();
    });
    const fail = (error: Error): void => {
      this.#failed ??= error;
      const wake = this.#wake;
      this.#wake = undefined;
      wake?.();
      for (const p of this.#pending.values()) p.reject(this.#failed);
      this.#pending.clear();
    };
    socket.on('error', fail);
    socket.on('close', () => fail(new NbdClientError('connection closed')));
  }

  /** Connects, negotiates and enters transmission (NBD_OPT_GO on `exportName`). */
  static async connect(options: NbdClientOptions): Promise<NbdClient> {
    const socket = connect({ host: options.host ?? '127.0.0.1', port: options.port });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const client = new NbdClient(socket);
    try {
      await client.#handshake(options);
    } catch (error) {
      socket.destroy();
      throw error;
    }
    return client;
  }

  async #bytes(n: number): Promise<Buffer> {
    while (this.#queue.length < n) {
      if (this.#failed !== undefined) throw this.#failed;
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
      });
    }
    return this.#queue.take(n);
  }

  #sendOption(option: number, data: Buffer): void {
    const h = Buffer.alloc(16);
    h.writeBigUInt64BE(IHAVEOPT, 0);
    h.writeUInt32BE(option, 8);
    h.writeUInt32BE(data.length, 12);
    this.#socket.write(Buffer.concat([h, data]));
  }

  async #optionReply(option: number): Promise<{ type: number; data: Buffer }> {
    const h = await this.#bytes(20);
    if (h.readBigUInt64BE(0) !== REP_MAGIC) throw new NbdClientError('bad option reply magic');
    if (h.readUInt32BE(8) !== option) throw new NbdClientError('option reply for another option');
    const type = h.readUInt32BE(12);
    const length = h.readUInt32BE(16);
    if (length > MAX_OPTION_REPLY) throw new NbdClientError('option reply too long');
    return { type, data: Buffer.from(await this.#bytes(length)) };
  }

  async #handshake(options: NbdClientOptions): Promise<void> {
    const greeting = await this.#bytes(18);
    if (greeting.readBigUInt64BE(0) !== NBDMAGIC || greeting.readBigUInt64BE(8) !== IHAVEOPT)
      throw new NbdClientError('not a newstyle NBD server');
    const serverFlags = greeting.readUInt16BE(16);
    if ((serverFlags & FLAG_FIXED_NEWSTYLE) === 0) throw new NbdClientError('server is not fixed newstyle');
    const clientFlags = FLAG_FIXED_NEWSTYLE | (serverFlags & FLAG_NO_ZEROES);
    const cf = Buffer.alloc(4);
    cf.writeUInt32BE(clientFlags);
    this.#socket.write(cf);

    if (options.structuredReplies !== false) {
      this.#sendOption(OPT_STRUCTURED_REPLY, Buffer.alloc(0));
      const reply = await this.#optionReply(OPT_STRUCTURED_REPLY);
      this.structured = reply.type === REP_ACK;
    }

    const name = Buffer.from(options.exportName, 'utf8');
    const go = Buffer.alloc(4 + name.length + 2);
    go.writeUInt32BE(name.length, 0);
    name.copy(go, 4);
    go.writeUInt16BE(0, 4 + name.length); // no information requests: NBD_INFO_EXPORT is always sent
    this.#sendOption(OPT_GO, go);
    let sawExport = false;
    for (;;) {
      const reply = await this.#optionReply(OPT_GO);
      if (reply.type === REP_INFO) {
        if (reply.data.length >= 12 && reply.data.readUInt16BE(0) === INFO_EXPORT) {
          this.size = Number(reply.data.readBigUInt64BE(2));
          this.flags = reply.data.readUInt16BE(10);
          sawExport = true;
        }
      } else if (reply.type === REP_ACK) {
        break;
      } else if (reply.type >= 2 ** 31) {
        throw new NbdClientError(
          `server refused export "${options.exportName}": ${reply.data.toString('utf8') || `error ${reply.type}`}`,
        );
      }
    }
    if (!sawExport) throw new NbdClientError('server sent no NBD_INFO_EXPORT');
    if (this.#queue.length > 0) this.#parse();
  }

  /** Reads `buffer.length` bytes at `offset` (within the export). Many may be in flight. */
  read(buffer: Uint8Array, offset: number): Promise<void> {
    if (this.#failed !== undefined) return Promise.reject(this.#failed);
    if (offset < 0 || offset + buffer.byteLength > this.size)
      return Promise.reject(new RangeError('read outside the export'));
    const handle = this.#nextHandle++;
    const h = Buffer.allocUnsafe(28);
    h.writeUInt32BE(REQUEST_MAGIC, 0);
    h.writeUInt16BE(0, 4);
    h.writeUInt16BE(CMD_READ, 6);
    h.writeBigUInt64BE(handle, 8);
    h.writeBigUInt64BE(BigInt(offset), 16);
    h.writeUInt32BE(buffer.byteLength, 24);
    const promise = new Promise<void>((resolve, reject) => {
      this.#pending.set(handle, { buffer, offset, resolve, reject });
    });
    this.#socket.write(h);
    return promise;
  }

  /** Parses as many replies as have arrived. */
  #parse(): void {
    try {
      for (;;) {
        const r = this.#reply;
        if (r === undefined) {
          if (!this.#readHeader()) return;
          continue;
        }
        // Inside a reply: `left` payload bytes of the current piece remain.
        if (r.type === -1) {
          // Simple reply data.
          if (this.#queue.length < r.left) return;
          this.#queue.copyTo(r.pending.buffer, 0, r.left);
          this.#finish(r.handle, r.pending);
        } else {
          if (this.#queue.length < r.left) return;
          this.#structuredPayload(r);
          if ((r.flags & REPLY_FLAG_DONE) !== 0) this.#finish(r.handle, r.pending);
          else this.#reply = undefined;
        }
      }
    } catch (error) {
      this.#socket.destroy(error as Error);
    }
  }

  /** Reads a reply header if one has arrived; false when more bytes are needed. */
  #readHeader(): boolean {
    if (this.#queue.length < 4) return false;
    const m = this.#queue.peekUInt32();
    const headerBytes = m === SIMPLE_REPLY_MAGIC ? 12 : m === STRUCTURED_REPLY_MAGIC ? 16 : -1;
    if (headerBytes < 0) throw new NbdClientError(`bad reply magic 0x${m.toString(16)}`);
    if (this.#queue.length < 4 + headerBytes) return false;
    this.#queue.skip(4);
    const h = this.#queue.take(headerBytes);
    if (m === SIMPLE_REPLY_MAGIC) {
      const error = h.readUInt32BE(0);
      const handle = h.readBigUInt64BE(4);
      const pending = this.#take(handle);
      if (error !== 0) {
        this.#pending.delete(handle);
        pending.reject(new NbdClientError(`NBD read failed: errno ${error}`, error));
        return true;
      }
      this.#reply = { handle, pending, type: -1, flags: 0, left: pending.buffer.byteLength };
    } else {
      const flags = h.readUInt16BE(0);
      const type = h.readUInt16BE(2);
      const handle = h.readBigUInt64BE(4);
      const length = h.readUInt32BE(12);
      const pending = this.#take(handle);
      this.#reply = { handle, pending, type, flags, left: length };
    }
    return true;
  }

  #take(handle: bigint): Pending {
    const p = this.#pending.get(handle);
    if (p === undefined) throw new NbdClientError(`reply for unknown handle ${handle}`);
    return p;
  }

  #structuredPayload(r: { pending: Pending; type: number; left: number }): void {
    const p = r.pending;
    if (r.type === REPLY_TYPE_OFFSET_DATA) {
      const head = this.#queue.take(8);
      const at = Number(head.readBigUInt64BE(0)) - p.offset;
      const n = r.left - 8;
      if (at < 0 || at + n > p.buffer.byteLength) throw new NbdClientError('OFFSET_DATA outside the request');
      this.#queue.copyTo(p.buffer, at, n);
    } else if (r.type === REPLY_TYPE_OFFSET_HOLE) {
      const head = this.#queue.take(12);
      const at = Number(head.readBigUInt64BE(0)) - p.offset;
      const n = head.readUInt32BE(8);
      if (at < 0 || at + n > p.buffer.byteLength) throw new NbdClientError('OFFSET_HOLE outside the request');
      p.buffer.fill(0, at, at + n);
    } else if ((r.type & REPLY_TYPE_ERROR_BIT) !== 0) {
      const payload = this.#queue.take(r.left);
      const errno = payload.length >= 4 ? payload.readUInt32BE(0) : 5;
      p.error ??= new NbdClientError(`NBD read failed: errno ${errno}`, errno);
    } else if (r.type === REPLY_TYPE_NONE) {
      this.#queue.skip(r.left);
    } else {
      throw new NbdClientError(`unexpected structured reply type ${r.type}`);
    }
  }

  #finish(handle: bigint, pending: Pending): void {
    this.#reply = undefined;
    this.#pending.delete(handle);
    if (pending.error !== undefined) pending.reject(pending.error);
    else pending.resolve();
  }

  /** NBD_CMD_DISC and close (after every reply has arrived). */
  async close(): Promise<void> {
    if (this.#failed === undefined && !this.#socket.destroyed) {
      const h = Buffer.alloc(28);
      h.writeUInt32BE(REQUEST_MAGIC, 0);
      h.writeUInt16BE(CMD_DISC, 6);
      h.writeBigUInt64BE(this.#nextHandle++, 8);
      this.#socket.end(h);
    }
    if (!this.#socket.destroyed) {
      await new Promise<void>((resolve) => {
        this.#socket.once('close', () => resolve());
        setTimeout(() => {
          this.#socket.destroy();
          resolve();
        }, 2000).unref();
      });
    }
  }
}
