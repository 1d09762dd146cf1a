import { once, setMaxListeners } from 'node:events';
import { createServer, type Server, type Socket } from 'node:net';
import type { Snapshot } from '@liverestore/reader';
import { NbdError } from './errors.js';
import { type NbdExport, snapshotExports } from './export.js';
import * as P from './protocol.js';

/** Where the server listens: TCP (127.0.0.1:10809 by default; port 0 = ephemeral) or a Unix socket. */
export type NbdListen = { host?: string; port?: number } | { socket: string };

/** Options of {@link startNbdServer}. */
export interface NbdServerOptions {
  /**
   * The snapshot to export read-only (from `openSnapshot`): its fixed-index archives
   * become exports. Give either this or {@link exports}.
   */
  snapshot?: Snapshot | undefined;
  /** The exports to serve (read-only or writable), default first; instead of `snapshot`. */
  exports?: readonly NbdExport[] | undefined;
  listen?: NbdListen | undefined;
  /** Readahead window per export of `snapshot`, in chunks (see CachedChunkReader). */
  readaheadChunks?: number | undefined;
  /** Replies queued per connection before it stops reading requests. Default 64 MiB. */
  maxQueuedBytes?: number | undefined;
  /** How long `close()` waits for in-flight requests before destroying sockets. Default 5 s. */
  closeTimeoutMs?: number | undefined;
  /** A connection must finish its handshake within this time. Default 30 s. */
  handshakeTimeoutMs?: number | undefined;
}

/** A running NBD server. */
export interface NbdServer {
  /** `127.0.0.1:10809` or the socket path. */
  readonly address: string;
  /** The TCP port (absent for a Unix socket). */
  readonly port?: number;
  /** Export names, default (first drive) first. */
  readonly exports: readonly string[];
  /** Live counters: connections, requests in flight, reply bytes queued (all connections). */
  stats(): { connections: number; inFlight: number; queuedBytes: number };
  /** Stops accepting, lets in-flight requests finish (bounded), closes every connection. */
  close(): Promise<void>;
}

const DEFAULT_MAX_QUEUED_BYTES = 64 * 1024 * 1024;
/** Bytes of unread input kept before the socket is paused. */
const INPUT_HIGH_WATER = 1024 * 1024;
/** Requests in flight per connection, whatever their size (tiny requests still cost memory). */
const MAX_IN_FLIGHT = 1024;
/** At most this many extents in one block-status reply. */
const MAX_EXTENTS = 65536;

/** The peer closed, or sent something that ends the connection. */
class ConnectionClosed extends Error {}

/**
 * Buffered input of a socket with `read(n)` that resolves once n bytes arrived. Input is
 * bounded: the socket is paused while more than {@link INPUT_HIGH_WATER} bytes wait, so a
 * client that floods requests is throttled by TCP, not by our memory.
 */
class Input {
  readonly #socket: Socket;
  #chunks: Buffer[] = [];
  #length = 0;
  #ended = false;
  #interrupted = false;
  #wake: (() => void) | undefined;

  constructor(socket: Socket) {
    this.#socket = socket;
    socket.on('data', (data: Buffer) => {
      this.#chunks.push(data);
      this.#length += data.length;
      if (this.#length >= INPUT_HIGH_WATER) socket.pause();
      this.#notify();
    });
    const end = (): void => {
      this.#ended = true;
      this.#notify();
    };
    socket.on('end', end);
    socket.on('close', end);
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  /** Makes a waiting (and any later waiting) read fail: the server is closing. */
  interrupt(): void {
    this.#interrupted = true;
    this.#notify();
  }

  async #waitFor(n: number): Promise<void> {
    while (this.#length < n) {
      if (this.#ended) throw new ConnectionClosed('connection closed by the client');
      if (this.#interrupted) throw new ConnectionClosed('server closing');
      this.#socket.resume();
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
      });
    }
  }

  /** The next `n` bytes (n ≤ a bound the caller enforces). */
  async read(n: number): Promise<Buffer> {
    await this.#waitFor(n);
    return this.tryRead(n)!;
  }

  /** The next `n` bytes if they have arrived, without waiting; undefined otherwise. */
  tryRead(n: number): Buffer | undefined {
    if (this.#length < n) return undefined;
    const all = this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.#chunks = rest.length > 0 ? [rest] : [];
    this.#length = rest.length;
    if (this.#length < INPUT_HIGH_WATER && !this.#ended) this.#socket.resume();
    return out;
  }

  /** Discards `n` bytes without keeping them (write payloads we refuse). */
  async skip(n: number): Promise<void> {
    let left = n;
    while (left > 0) {
      await this.#waitFor(1);
      const take = Math.min(left, this.#length, INPUT_HIGH_WATER);
      await this.read(take);
      left -= take;
    }
  }
}

function u32(value: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(value >>> 0);
  return b;
}

/** Replies up to this size are copied into one buffer and written with one call. */
const COALESCE_REPLY_BYTES = 64 * 1024;

/**
 * Reusable read-reply buffers in power-of-two sizes from 64 KiB to 4 MiB (the 512 KiB
 * reads of a block-stream job, the 2 MiB of qemu-img convert). A fresh buffer per large
 * read is off-heap memory that only a garbage collection returns: at a few hundred MB/s
 * that was a fifth of the event loop and a peak RSS that grew with the clients. A buffer
 * comes back only when nothing refers to it any more (its socket write completed, or it
 * was copied into a coalesced reply); the pool keeps at most 32 MiB.
 */
class ReplyBuffers {
  static readonly MIN = 64 * 1024;
  static readonly MAX = 4 * 1024 * 1024;
  static readonly KEEP_BYTES = 32 * 1024 * 1024;
  readonly #free = new Map<number, Buffer[]>();
  #keptBytes = 0;

  /** A buffer of exactly `length` bytes (contents unspecified). */
  take(length: number): Buffer {
    if (length < ReplyBuffers.MIN || length > ReplyBuffers.MAX) return Buffer.allocUnsafe(length);
    const size = 2 ** Math.ceil(Math.log2(length));
    const whole = this.#free.get(size)?.pop();
    if (whole !== undefined) this.#keptBytes -= size;
    return (whole ?? Buffer.allocUnsafeSlow(size)).subarray(0, length);
  }

  /** Returns a buffer from {@link take} that nothing uses any more (others are ignored). */
  give(buffer: Buffer): void {
    const size = buffer.buffer.byteLength;
    if (
      buffer.byteOffset !== 0 ||
      size < ReplyBuffers.MIN ||
      size > ReplyBuffers.MAX ||
      (size & (size - 1)) !== 0 ||
      this.#keptBytes + size > ReplyBuffers.KEEP_BYTES
    )
      return;
    const list = this.#free.get(size) ?? [];
    this.#free.set(size, list);
    list.push(Buffer.from(buffer.buffer, 0, size));
    this.#keptBytes += size;
  }
}

/** One client connection: handshake, then transmission with many requests in flight. */
class Connection {
  readonly #socket: Socket;
  readonly #input: Input;
  readonly #server: NbdServerImpl;
  readonly #abort = new AbortController();
  #structured = false;
  #noZeroes = false;
  #metaExports = new Set<string>();
  #export: NbdExport | undefined;
  #baseAllocation = false;
  #inFlight = 0;
  #queuedBytes = 0;
  #idle: (() => void) | undefined;
  #stopping = false;
  /** Resolves when the connection is over. */
  readonly done: Promise<void>;

  constructor(socket: Socket, server: NbdServerImpl) {
    this.#socket = socket;
    this.#server = server;
    this.#input = new Input(socket);
    socket.setNoDelay(true);
    // Every pending read listens on the connection's signal; there may be many.
    setMaxListeners(MAX_IN_FLIGHT + 16, this.#abort.signal);
    socket.on('error', () => {});
    socket.on('close', () => this.#abort.abort(new NbdError('ERR_LR_NBD_DISCONNECTED', 'client went away')));
    socket.on('drain', () => this.#wakeIdle());
    socket.on('close', () => this.#wakeIdle());
    this.done = this.#run().then(
      () => this.#finish(),
      () => this.#finish(),
    );
  }

  /** Graceful stop: no new requests; in-flight ones finish, then the socket closes. */
  stop(): void {
    this.#stopping = true;
    this.#input.interrupt();
    if (this.#export === undefined) this.#socket.destroy();
    this.#wakeIdle();
  }

  destroy(): void {
    this.#socket.destroy();
  }

  /** Reply bytes owed or queued to this client (pending reads + unsent socket data). */
  get queuedBytes(): number {
    return this.#queuedBytes + this.#socket.writableLength;
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  /** Ends the socket after the last replies are flushed; resolves once it is closed (bounded). */
  async #finish(): Promise<void> {
    this.#abort.abort(new NbdError('ERR_LR_NBD_DISCONNECTED', 'connection closed'));
    if (this.#socket.destroyed) return;
    const closed = once(this.#socket, 'close').then(
      () => {},
      () => {},
    );
    this.#socket.end();
    // A peer that never reads its last replies must not hold the socket open forever.
    const timer = setTimeout(() => this.#socket.destroy(), this.#server.lingerMs);
    timer.unref();
    await closed;
    clearTimeout(timer);
  }

  #wakeIdle(): void {
    const wake = this.#idle;
    this.#idle = undefined;
    wake?.();
  }

  async #run(): Promise<void> {
    const timer = setTimeout(() => this.#socket.destroy(), this.#server.handshakeTimeoutMs);
    timer.unref();
    try {
      const ok = await this.#handshake();
      if (!ok) return;
    } finally {
      clearTimeout(timer);
    }
    await this.#transmission();
  }

  /**
   * Writes reply bytes. A small reply (header + data up to 64 KiB: the 4 KiB guest reads)
   * goes out as one buffer, so it costs one socket write instead of one per part; larger
   * replies are written part by part rather than copied.
   */
  #send(...parts: Buffer[]): void {
    if (this.#socket.destroyed) return;
    let total = 0;
    for (const p of parts) total += p.byteLength;
    if (parts.length > 1 && total <= COALESCE_REPLY_BYTES) {
      this.#socket.write(Buffer.concat(parts, total));
      return;
    }
    for (const p of parts) this.#socket.write(p);
  }

  // ─── handshake ───────────────────────────────────────────────────────────

  async #handshake(): Promise<boolean> {
    const greet = Buffer.alloc(18);
    greet.writeBigUInt64BE(P.NBDMAGIC, 0);
    greet.writeBigUInt64BE(P.IHAVEOPT, 8);
    greet.writeUInt16BE(P.NBD_FLAG_FIXED_NEWSTYLE | P.NBD_FLAG_NO_ZEROES, 16);
    this.#send(greet);
    const clientFlags = (await this.#input.read(4)).readUInt32BE(0);
    const known = P.NBD_FLAG_C_FIXED_NEWSTYLE | P.NBD_FLAG_C_NO_ZEROES;
    // Only fixed newstyle is spoken; unknown client flags must end the session (proto.md).
    if ((clientFlags & ~known) !== 0 || (clientFlags & P.NBD_FLAG_C_FIXED_NEWSTYLE) === 0) return false;
    this.#noZeroes = (clientFlags & P.NBD_FLAG_C_NO_ZEROES) !== 0;
    for (;;) {
      if (this.#stopping) return false;
      const header = await this.#input.read(P.OPTION_HEADER_BYTES);
      if (header.readBigUInt64BE(0) !== P.IHAVEOPT) return false;
      const option = header.readUInt32BE(8);
      const length = header.readUInt32BE(12);
      if (length > P.MAX_OPTION_BYTES) return false;
      const data = length > 0 ? await this.#input.read(length) : Buffer.alloc(0);
      const result = this.#option(option, data);
      if (result === 'close') return false;
      if (result === 'go') return true;
    }
  }

  #reply(option: number, type: number, data: Buffer = Buffer.alloc(0)): void {
    const h = Buffer.allocUnsafe(20);
    h.writeBigUInt64BE(P.NBD_REP_MAGIC, 0);
    h.writeUInt32BE(option, 8);
    h.writeUInt32BE(type >>> 0, 12);
    h.writeUInt32BE(data.length, 16);
    this.#send(h, data);
  }

  #replyError(option: number, type: number, message: string): void {
    this.#reply(option, type, Buffer.from(message, 'utf8'));
  }

  /**
   * Flush is always accepted (a no-op when read-only). Multi-conn is safe for writable
   * exports too: every connection writes through the same export object, and a flush
   * on any of them makes every completed write durable.
   */
  #transmissionFlags(exp: NbdExport): number {
    const common = P.NBD_FLAG_HAS_FLAGS | P.NBD_FLAG_SEND_FLUSH | P.NBD_FLAG_CAN_MULTI_CONN;
    if (exp.writer === undefined) return common | P.NBD_FLAG_READ_ONLY;
    return common | P.NBD_FLAG_SEND_FUA | P.NBD_FLAG_SEND_TRIM | P.NBD_FLAG_SEND_WRITE_ZEROES;
  }

  /** Handles one option; 'go' enters transmission, 'close' ends the connection. */
  #option(option: number, data: Buffer): 'continue' | 'go' | 'close' {
    switch (option) {
      case P.NBD_OPT_EXPORT_NAME: {
        const exp = this.#server.find(data.toString('utf8'));
        if (exp === undefined) return 'close'; // no way to report an error to this option
        const b = Buffer.alloc(this.#noZeroes ? 10 : 134);
        b.writeBigUInt64BE(BigInt(exp.size), 0);
        b.writeUInt16BE(this.#transmissionFlags(exp), 8);
        this.#send(b);
        this.#enter(exp);
        return 'go';
      }
      case P.NBD_OPT_ABORT:
        this.#reply(option, P.NBD_REP_ACK);
        return 'close';
      case P.NBD_OPT_LIST: {
        if (data.length !== 0) {
          this.#replyError(option, P.NBD_REP_ERR_INVALID, 'NBD_OPT_LIST takes no data');
          return 'continue';
        }
        for (const exp of this.#server.exportList) {
          const name = Buffer.from(exp.name, 'utf8');
          this.#reply(option, P.NBD_REP_SERVER, Buffer.concat([u32(name.length), name]));
        }
        this.#reply(option, P.NBD_REP_ACK);
        return 'continue';
      }
      case P.NBD_OPT_INFO:
      case P.NBD_OPT_GO:
        return this.#infoOrGo(option, data);
      case P.NBD_OPT_STRUCTURED_REPLY:
        if (data.length !== 0) {
          this.#replyError(option, P.NBD_REP_ERR_INVALID, 'NBD_OPT_STRUCTURED_REPLY takes no data');
        } else {
          this.#structured = true;
          this.#reply(option, P.NBD_REP_ACK);
        }
        return 'continue';
      case P.NBD_OPT_LIST_META_CONTEXT:
      case P.NBD_OPT_SET_META_CONTEXT:
        this.#metaContext(option, data);
        return 'continue';
      default:
        this.#replyError(option, P.NBD_REP_ERR_UNSUP, `option ${option} is not supported`);
        return 'continue';
    }
  }

  #infoOrGo(option: number, data: Buffer): 'continue' | 'go' {
    // name length u32, name, count u16, count × u16 info requests
    if (data.length < 6) {
      this.#replyError(option, P.NBD_REP_ERR_INVALID, 'option data too short');
      return 'continue';
    }
    const nameLength = data.readUInt32BE(0);
    if (nameLength > data.length - 6) {
      this.#replyError(option, P.NBD_REP_ERR_INVALID, 'export name overruns option data');
      return 'continue';
    }
    const name = data.toString('utf8', 4, 4 + nameLength);
    const count = data.readUInt16BE(4 + nameLength);
    if (data.length !== 6 + nameLength + 2 * count) {
      this.#replyError(option, P.NBD_REP_ERR_INVALID, 'information request list has the wrong length');
      return 'continue';
    }
    const exp = this.#server.find(name);
    if (exp === undefined) {
      this.#replyError(option, P.NBD_REP_ERR_UNKNOWN, `no export named "${name}"`);
      return 'continue';
    }
    const info = Buffer.alloc(12);
    info.writeUInt16BE(P.NBD_INFO_EXPORT, 0);
    info.writeBigUInt64BE(BigInt(exp.size), 2);
    info.writeUInt16BE(this.#transmissionFlags(exp), 10);
    this.#reply(option, P.NBD_REP_INFO, info);
    const block = Buffer.alloc(14);
    block.writeUInt16BE(P.NBD_INFO_BLOCK_SIZE, 0);
    block.writeUInt32BE(P.MIN_BLOCK_BYTES, 2);
    block.writeUInt32BE(P.PREFERRED_BLOCK_BYTES, 6);
    block.writeUInt32BE(P.MAX_REQUEST_BYTES, 10);
    this.#reply(option, P.NBD_REP_INFO, block);
    this.#reply(option, P.NBD_REP_ACK);
    if (option === P.NBD_OPT_INFO) return 'continue';
    this.#enter(exp);
    return 'go';
  }

  /** Parses LIST/SET_META_CONTEXT; only `base:allocation` exists. */
  #metaContext(option: number, data: Buffer): void {
    if (!this.#structured) {
      this.#replyError(option, P.NBD_REP_ERR_INVALID, 'negotiate structured replies first');
      return;
    }
    const parsed = parseMetaQuery(data);
    if (parsed === undefined) {
      this.#replyError(option, P.NBD_REP_ERR_INVALID, 'malformed meta context request');
      return;
    }
    if (this.#server.find(parsed.exportName) === undefined) {
      this.#replyError(option, P.NBD_REP_ERR_UNKNOWN, `no export named "${parsed.exportName}"`);
      return;
    }
    const list = option === P.NBD_OPT_LIST_META_CONTEXT;
    const matches =
      parsed.queries.length === 0
        ? list
        : parsed.queries.some((q) => q === P.BASE_ALLOCATION || (list && q === 'base:'));
    if (!list) {
      // A SET replaces any earlier selection.
      this.#metaExports.clear();
      if (matches) this.#metaExports.add(parsed.exportName);
    }
    if (matches) {
      const name = Buffer.from(P.BASE_ALLOCATION, 'utf8');
      this.#reply(option, P.NBD_REP_META_CONTEXT, Buffer.concat([u32(P.BASE_ALLOCATION_ID), name]));
    }
    this.#reply(option, P.NBD_REP_ACK);
  }

  #enter(exp: NbdExport): void {
    this.#export = exp;
    // Default export: base:allocation was negotiated for whatever name the client used.
    const defaultName = this.#server.exportList[0]?.name;
    this.#baseAllocation =
      this.#structured &&
      [...this.#metaExports].some(
        (n) => this.#server.find(n) === exp || (n === '' && exp.name === defaultName),
      );
  }

  // ─── transmission ────────────────────────────────────────────────────────

  #hasCapacity(): boolean {
    return (
      this.#socket.destroyed ||
      (this.#inFlight < MAX_IN_FLIGHT &&
        this.#queuedBytes + this.#socket.writableLength <= this.#server.maxQueuedBytes)
    );
  }

  async #waitCapacity(): Promise<void> {
    while (!this.#hasCapacity()) {
      await new Promise<void>((resolve) => {
        this.#idle = resolve;
      });
    }
  }

  async #drainInFlight(): Promise<void> {
    while (this.#inFlight > 0 && !this.#socket.destroyed) {
      await new Promise<void>((resolve) => {
        this.#idle = resolve;
      });
    }
  }

  /**
   * Requests that have already arrived are handled synchronously, one after another, and
   * the replies they produce on the spot (cached reads) are corked into one socket write;
   * the batch is uncorked before every wait. So a burst of 16 cached 4 KiB reads costs one
   * `writev`, not 16 writes, and no promise per request.
   */
  #cork(): void {
    if (this.#socket.writableCorked === 0) this.#socket.cork();
  }

  #uncork(): void {
    while (this.#socket.writableCorked > 0) this.#socket.uncork();
  }

  /** The next `n` input bytes, after uncorking: waiting must not hold replies back. */
  #next(n: number): Promise<Buffer> {
    this.#uncork();
    return this.#input.read(n);
  }

  async #transmission(): Promise<void> {
    const exp = this.#export!;
    try {
      for (;;) {
        if (!this.#hasCapacity()) {
          this.#uncork();
          await this.#waitCapacity();
        }
        if (this.#stopping || this.#socket.destroyed) break;
        // Not `await this.#next()`: a request already buffered must not cost a microtask.
        let header = this.#input.tryRead(P.REQUEST_HEADER_BYTES);
        if (header === undefined) {
          this.#uncork();
          try {
            header = await this.#input.read(P.REQUEST_HEADER_BYTES);
          } catch (err) {
            if (err instanceof ConnectionClosed && this.#stopping) break;
            throw err;
          }
        }
        if (header.readUInt32BE(0) !== P.NBD_REQUEST_MAGIC) break;
        this.#cork();
        const flags = header.readUInt16BE(4);
        const type = header.readUInt16BE(6);
        const handle = Buffer.from(header.subarray(8, 16));
        const offset = Number(header.readBigUInt64BE(16));
        const length = header.readUInt32BE(24);
        switch (type) {
          case P.NBD_CMD_READ:
            this.#read(exp, handle, offset, length);
            break;
          case P.NBD_CMD_WRITE: {
            // The payload follows the header; it must be consumed to stay in sync.
            if (length > P.MAX_REQUEST_BYTES) return;
            if (exp.writer === undefined) {
              this.#uncork();
              await this.#input.skip(length);
              this.#simpleReply(handle, P.NBD_EPERM);
              break;
            }
            const data = this.#input.tryRead(length) ?? (await this.#next(length));
            const writer = exp.writer;
            const fua = (flags & P.NBD_CMD_FLAG_FUA) !== 0;
            this.#update(exp, handle, offset, length, length, () => writer.write(data, offset, fua));
            break;
          }
          case P.NBD_CMD_WRITE_ZEROES:
          case P.NBD_CMD_TRIM: {
            const writer = exp.writer;
            if (writer === undefined) {
              this.#simpleReply(handle, P.NBD_EPERM);
              break;
            }
            const fua = (flags & P.NBD_CMD_FLAG_FUA) !== 0;
            const noHole = (flags & P.NBD_CMD_FLAG_NO_HOLE) !== 0;
            this.#update(exp, handle, offset, length, 0, () =>
              type === P.NBD_CMD_TRIM
                ? writer.trim(offset, length, fua)
                : writer.writeZeroes(offset, length, fua, noHole),
            );
            break;
          }
          case P.NBD_CMD_FLUSH: {
            const writer = exp.writer;
            if (writer === undefined) this.#simpleReply(handle, 0);
            else this.#update(exp, handle, 0, 0, 0, () => writer.flush());
            break;
          }
          case P.NBD_CMD_BLOCK_STATUS:
            this.#blockStatus(exp, handle, offset, length, flags);
            break;
          case P.NBD_CMD_DISC:
            this.#uncork();
            await this.#drainInFlight();
            return;
          default:
            this.#errorReply(handle, P.NBD_EINVAL, `unknown command ${type}`, false);
        }
      }
    } finally {
      this.#uncork();
    }
    await this.#drainInFlight();
  }

  #simpleHeader(handle: Buffer, error: number): Buffer {
    const h = Buffer.allocUnsafe(P.SIMPLE_REPLY_BYTES);
    h.writeUInt32BE(P.NBD_SIMPLE_REPLY_MAGIC, 0);
    h.writeUInt32BE(error, 4);
    handle.copy(h, 8);
    return h;
  }

  /** A simple reply without data (write-like commands, and errors without structured replies). */
  #simpleReply(handle: Buffer, error: number): void {
    this.#send(this.#simpleHeader(handle, error));
  }

  #structuredHeader(handle: Buffer, flags: number, type: number, length: number): Buffer {
    const h = Buffer.allocUnsafe(P.STRUCTURED_REPLY_BYTES);
    h.writeUInt32BE(P.NBD_STRUCTURED_REPLY_MAGIC, 0);
    h.writeUInt16BE(flags, 4);
    h.writeUInt16BE(type, 6);
    handle.copy(h, 8);
    h.writeUInt32BE(length, 16);
    return h;
  }

  /** An error reply: structured (with a message) for reads/block status when negotiated. */
  #errorReply(handle: Buffer, error: number, message: string, structuredCommand: boolean): void {
    if (!(this.#structured && structuredCommand)) {
      this.#simpleReply(handle, error);
      return;
    }
    const msg = Buffer.from(message.slice(0, 1024), 'utf8');
    const payload = Buffer.allocUnsafe(6 + msg.length);
    payload.writeUInt32BE(error, 0);
    payload.writeUInt16BE(msg.length, 4);
    msg.copy(payload, 6);
    this.#send(
      this.#structuredHeader(handle, P.NBD_REPLY_FLAG_DONE, P.NBD_REPLY_TYPE_ERROR, payload.length),
      payload,
    );
  }

  /**
   * The successful reply of a read whose data is in `buffer` (from the server's reply
   * buffers): the buffer goes back to them once the socket no longer needs it.
   */
  #readReply(handle: Buffer, offset: number, buffer: Buffer): void {
    const buffers = this.#server.replyBuffers;
    if (this.#structured && buffer.length === 0) {
      this.#send(this.#structuredHeader(handle, P.NBD_REPLY_FLAG_DONE, P.NBD_REPLY_TYPE_NONE, 0));
      return;
    }
    let head: Buffer[];
    if (this.#structured) {
      const off = Buffer.allocUnsafe(8);
      off.writeBigUInt64BE(BigInt(offset));
      head = [
        this.#structuredHeader(
          handle,
          P.NBD_REPLY_FLAG_DONE,
          P.NBD_REPLY_TYPE_OFFSET_DATA,
          8 + buffer.length,
        ),
        off,
      ];
    } else {
      head = [this.#simpleHeader(handle, 0)];
    }
    if (this.#socket.destroyed) return; // the buffer is left to the garbage collector
    if (buffer.length + 32 <= COALESCE_REPLY_BYTES) {
      this.#send(...head, buffer); // copied into one write: the buffer is free at once
      buffers.give(buffer);
      return;
    }
    for (const h of head) this.#socket.write(h);
    this.#socket.write(buffer, (err) => {
      if (err === undefined || err === null) buffers.give(buffer);
    });
  }

  /** EINVAL (replied) unless [offset, offset + length) lies within the export. */
  #checkRange(exp: NbdExport, handle: Buffer, offset: number, length: number, structured: boolean): boolean {
    if (Number.isSafeInteger(offset) && offset + length <= exp.size) return true;
    this.#errorReply(handle, P.NBD_EINVAL, 'request beyond the end of the export', structured);
    return false;
  }

  #read(exp: NbdExport, handle: Buffer, offset: number, length: number): void {
    if (length > P.MAX_REQUEST_BYTES) {
      this.#errorReply(handle, P.NBD_EOVERFLOW, `read of ${length} bytes exceeds 32 MiB`, true);
      return;
    }
    if (!this.#checkRange(exp, handle, offset, length, true)) return;
    const buffer = this.#server.replyBuffers.take(length);
    if (exp.tryReadSync?.(buffer, offset) === true) {
      this.#readReply(handle, offset, buffer);
      return;
    }
    this.#inFlight++;
    this.#queuedBytes += length;
    exp
      .read(buffer, offset, this.#abort.signal)
      .then(
        () => this.#readReply(handle, offset, buffer),
        (err: unknown) => {
          const code = (err as { code?: unknown }).code;
          this.#errorReply(handle, nbdErrno(err), `read failed: ${String(code ?? 'EIO')}`, true);
        },
      )
      .finally(() => {
        this.#inFlight--;
        this.#queuedBytes -= length;
        this.#wakeIdle();
      });
  }

  /** Runs a write, zeroing, trim or flush; replies 0 or its NBD error when it settles. */
  #update(
    exp: NbdExport,
    handle: Buffer,
    offset: number,
    length: number,
    heldBytes: number,
    run: () => Promise<void>,
  ): void {
    if (!this.#checkRange(exp, handle, offset, length, false)) return;
    this.#inFlight++;
    this.#queuedBytes += heldBytes;
    run()
      .then(
        () => this.#simpleReply(handle, 0),
        (err: unknown) => this.#simpleReply(handle, nbdErrno(err)),
      )
      .finally(() => {
        this.#inFlight--;
        this.#queuedBytes -= heldBytes;
        this.#wakeIdle();
      });
  }

  #blockStatus(exp: NbdExport, handle: Buffer, offset: number, length: number, flags: number): void {
    if (!this.#baseAllocation) {
      this.#errorReply(handle, P.NBD_EINVAL, 'no metadata context negotiated', true);
      return;
    }
    if (length === 0 || !Number.isSafeInteger(offset) || offset + length > exp.size) {
      this.#errorReply(handle, P.NBD_EINVAL, 'block status range is invalid', true);
      return;
    }
    const reqOne = (flags & P.NBD_CMD_FLAG_REQ_ONE) !== 0;
    const extents = exp.blockStatus(offset, length, reqOne ? 1 : MAX_EXTENTS);
    const payload = Buffer.allocUnsafe(4 + 8 * extents.length);
    payload.writeUInt32BE(P.BASE_ALLOCATION_ID, 0);
    extents.forEach((e, k) => {
      payload.writeUInt32BE(e.length, 4 + 8 * k);
      payload.writeUInt32BE((e.hole ? P.NBD_STATE_HOLE : 0) | (e.zero ? P.NBD_STATE_ZERO : 0), 8 + 8 * k);
    });
    this.#send(
      this.#structuredHeader(handle, P.NBD_REPLY_FLAG_DONE, P.NBD_REPLY_TYPE_BLOCK_STATUS, payload.length),
      payload,
    );
  }
}

/** The NBD error for an exception: its `code` when NBD has one (ENOSPC, EPERM…), else EIO. */
function nbdErrno(err: unknown): number {
  switch ((err as { code?: unknown } | undefined)?.code) {
    case 'ENOSPC':
    case 'EDQUOT':
      return P.NBD_ENOSPC;
    case 'EPERM':
    case 'EACCES':
    case 'EROFS':
      return P.NBD_EPERM;
    case 'EINVAL':
      return P.NBD_EINVAL;
    case 'ENOMEM':
      return P.NBD_ENOMEM;
    default:
      return P.NBD_EIO;
  }
}

/** Parses `exportNameLength u32, name, count u32, (len u32, query)*`; undefined when malformed. */
function parseMetaQuery(data: Buffer): { exportName: string; queries: string[] } | undefined {
  let pos = 0;
  const take = (n: number): Buffer | undefined => {
    if (pos + n > data.length) return undefined;
    const out = data.subarray(pos, pos + n);
    pos += n;
    return out;
  };
  const nameLen = take(4)?.readUInt32BE(0);
  if (nameLen === undefined) return undefined;
  const name = take(nameLen);
  const count = take(4)?.readUInt32BE(0);
  if (name === undefined || count === undefined) return undefined;
  const queries: string[] = [];
  for (let k = 0; k < count; k++) {
    const len = take(4)?.readUInt32BE(0);
    if (len === undefined) return undefined;
    const q = take(len);
    if (q === undefined) return undefined;
    queries.push(q.toString('utf8'));
  }
  if (pos !== data.length) return undefined;
  return { exportName: name.toString('utf8'), queries };
}

class NbdServerImpl {
  readonly exportList: NbdExport[];
  readonly #byName: Map<string, NbdExport>;
  readonly maxQueuedBytes: number;
  readonly handshakeTimeoutMs: number;
  /** How long a finished connection may take to flush its last replies. */
  readonly lingerMs: number;
  readonly connections = new Set<Connection>();
  readonly replyBuffers = new ReplyBuffers();

  constructor(exports: NbdExport[], options: NbdServerOptions) {
    this.exportList = exports;
    this.#byName = new Map(exports.map((e) => [e.name, e]));
    this.maxQueuedBytes = options.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_BYTES;
    this.handshakeTimeoutMs = options.handshakeTimeoutMs ?? 30_000;
    this.lingerMs = options.closeTimeoutMs ?? 5000;
  }

  /** The export of a name; the empty name is the default export (the first drive). */
  find(name: string): NbdExport | undefined {
    if (name === '') return this.exportList[0];
    return this.#byName.get(name) ?? this.#byName.get(`${name}.img`);
  }

  accept(socket: Socket): void {
    const conn = new Connection(socket, this);
    this.connections.add(conn);
    void conn.done.then(() => this.connections.delete(conn));
  }
}

/**
 * Starts an NBD server. With `snapshot`, every fixed-index archive (disk image) of the
 * snapshot is a read-only export, all read through the snapshot's one shared cache; with
 * `exports`, the given (possibly writable) exports are served.
 */
export async function startNbdServer(options: NbdServerOptions): Promise<NbdServer> {
  const { snapshot } = options;
  if ((snapshot === undefined) === (options.exports === undefined)) {
    throw new TypeError('startNbdServer: give exactly one of `snapshot` and `exports`');
  }
  const exports =
    options.exports !== undefined
      ? [...options.exports]
      : await snapshotExports(
          snapshot!,
          options.readaheadChunks === undefined ? {} : { readaheadChunks: options.readaheadChunks },
        );
  if (exports.length === 0) {
    throw new NbdError(
      'ERR_LR_NBD_NO_EXPORTS',
      snapshot === undefined
        ? 'no exports to serve'
        : `snapshot ${snapshot.path} has no disk image (.fidx) to export`,
    );
  }
  const names = new Set<string>();
  for (const e of exports) {
    if (names.has(e.name)) throw new TypeError(`startNbdServer: two exports are named "${e.name}"`);
    names.add(e.name);
  }
  const impl = new NbdServerImpl(exports, options);
  const server: Server = createServer({ pauseOnConnect: false }, (socket) => impl.accept(socket));
  const listen = options.listen ?? {};
  try {
    if ('socket' in listen) {
      server.listen(listen.socket);
    } else {
      server.listen(listen.port ?? P.NBD_DEFAULT_PORT, listen.host ?? '127.0.0.1');
    }
    await Promise.race([
      once(server, 'listening'),
      once(server, 'error').then(([err]) => {
        throw err;
      }),
    ]);
  } catch (err) {
    throw new NbdError('ERR_LR_NBD_LISTEN', `cannot listen: ${(err as Error).message}`, { cause: err });
  }
  const addr = server.address();
  const closeTimeoutMs = options.closeTimeoutMs ?? 5000;
  let closing: Promise<void> | undefined;
  const result: NbdServer = {
    address: typeof addr === 'string' ? addr : `${addr?.address ?? ''}:${addr?.port ?? ''}`,
    ...(addr !== null && typeof addr === 'object' ? { port: addr.port } : {}),
    exports: exports.map((e) => e.name),
    stats() {
      let inFlight = 0;
      let queuedBytes = 0;
      for (const c of impl.connections) {
        inFlight += c.inFlight;
        queuedBytes += c.queuedBytes;
      }
      return { connections: impl.connections.size, inFlight, queuedBytes };
    },
    close() {
      closing ??= (async () => {
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
        const conns = [...impl.connections];
        for (const c of conns) c.stop();
        const all = Promise.all(conns.map((c) => c.done));
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          all,
          new Promise<void>((resolve) => (timer = setTimeout(resolve, closeTimeoutMs))),
        ]);
        clearTimeout(timer);
        for (const c of conns) c.destroy();
        await stopped;
      })();
      return closing;
    },
  };
  return result;
}
