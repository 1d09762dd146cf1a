import { connect, type Socket } from 'node:net';
import { ByteQueue } from './byte-queue.js';
import { NbdError } from './errors.js';
import * as P from './wire.js';

/** Where and what {@link NbdClient.connect} opens. */
export interface NbdClientOptions {
  /** TCP host (default 127.0.0.1) and port (default 10809), or a Unix socket path. */
  host?: string | undefined;
  port?: number | undefined;
  socket?: string | undefined;
  /** Export to open; '' (the default) is the server's default export. */
  exportName?: string | undefined;
  /** Negotiate structured replies (default true; reads may then come back as holes). */
  structuredReplies?: boolean | undefined;
  /** Connect and handshake must finish within this time. Default 30 s. */
  timeoutMs?: number | undefined;
}

/** Options of a write-like request. */
export interface NbdWriteOptions {
  /** Durable before the reply (NBD_CMD_FLAG_FUA). */
  fua?: boolean | undefined;
}

interface Pending {
  readonly type: number;
  /** Target of a read; its `offset` is where the request started. */
  readonly buffer: Uint8Array | undefined;
  readonly offset: number;
  error: NbdError | undefined;
  resolve(): void;
  reject(err: Error): void;
}

/** The socket reads into one buffer of this size, reused for every read. */
const READ_BUFFER_BYTES = 256 * 1024;
function protocolError(message: string): NbdError {
  return new NbdError('ERR_LR_NBD_PROTOCOL', `NBD server: ${message}`);
}

/**
 * An NBD client: fixed-newstyle handshake with NBD_OPT_GO, then reads, writes, zeroing,
 * trim and flush with any number of requests in flight, replies matched by handle in any
 * order (simple or structured). Replies are parsed as bytes arrive, and read data is
 * copied from the socket's buffers straight into the caller's buffer. A request the
 * server refuses rejects with ERR_LR_NBD_REQUEST_FAILED and its `errno`; a broken
 * connection or protocol rejects every pending request.
 */
export class NbdClient {
  readonly #socket: Socket;
  readonly #queue = new ByteQueue();
  readonly #pending = new Map<bigint, Pending>();
  /** Every request not yet settled, for close(). */
  readonly #requests = new Set<Promise<void>>();
  #nextHandle = 1n;
  #failure: Error | undefined;
  /** During the handshake: resolves a waiting `#bytes`. */
  #wake: (() => void) | undefined;
  #transmission = false;
  /** Export size in bytes, transmission flags, and whether structured replies are on. */
  size = 0;
  flags = 0;
  structured = false;

  private constructor(socket: Socket) {
    this.#socket = socket;
    socket.setNoDelay(true);
    socket.on('error', (err) =>
      this.#fail(new NbdError('ERR_LR_NBD_CONNECTION', err.message, { cause: err })),
    );
    socket.on('close', () =>
      this.#fail(new NbdError('ERR_LR_NBD_CONNECTION', 'connection closed by the server')),
    );
  }

  /** Bytes the socket read into its reused buffer: queued at once, then parsed. */
  #received(data: Uint8Array): void {
    this.#queue.push(data);
    if (this.#transmission) this.#parseReplies();
    else this.#notify();
  }

  /** Connects and opens an export. */
  static async connect(options: NbdClientOptions = {}): Promise<NbdClient> {
    const receiver: { client?: NbdClient } = {};
    const onread = {
      buffer: Buffer.allocUnsafe(READ_BUFFER_BYTES),
      callback: (n: number, buffer: Uint8Array): boolean => {
        const client = receiver.client;
        if (client !== undefined) client.#received(buffer.subarray(0, n));
        return true;
      },
    };
    const socket =
      options.socket !== undefined
        ? connect({ path: options.socket, onread })
        : connect({ host: options.host ?? '127.0.0.1', port: options.port ?? P.NBD_DEFAULT_PORT, onread });
    const client = new NbdClient(socket);
    receiver.client = client;
    const timer = setTimeout(
      () => client.#fail(new NbdError('ERR_LR_NBD_CONNECTION', 'NBD handshake timed out')),
      options.timeoutMs ?? 30_000,
    );
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('connect', resolve);
        socket.once('error', reject);
      });
      await client.#handshake(options.exportName ?? '', options.structuredReplies ?? true);
      return client;
    } catch (err) {
      socket.destroy();
      if (err instanceof NbdError) throw err;
      throw new NbdError('ERR_LR_NBD_CONNECTION', `cannot connect: ${(err as Error).message}`, {
        cause: err,
      });
    } finally {
      clearTimeout(timer);
    }
  }

  /** True when the export accepts writes. */
  get writable(): boolean {
    return (this.flags & P.NBD_FLAG_READ_ONLY) === 0;
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  #fail(err: Error): void {
    this.#failure ??= err;
    this.#notify();
    for (const p of this.#pending.values()) p.reject(this.#failure);
    this.#pending.clear();
    this.#socket.destroy();
  }

  async #bytes(n: number): Promise<Buffer> {
    while (this.#queue.length < n) {
      if (this.#failure !== undefined) throw this.#failure;
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
      });
    }
    return this.#queue.read(n);
  }

  #sendOption(option: number, data?: Buffer): void {
    this.#socket.write(P.encodeOption(option, data));
  }

  async #optionReply(option: number): Promise<{ type: number; data: Buffer }> {
    const h = P.decodeOptionReplyHeader(await this.#bytes(P.OPTION_REPLY_HEADER_BYTES));
    if (h === undefined || h.option !== option) throw protocolError('bad option reply');
    if (h.length > P.MAX_OPTION_BYTES) throw protocolError(`option reply of ${h.length} bytes`);
    return { type: h.type, data: await this.#bytes(h.length) };
  }

  async #handshake(exportName: string, structured: boolean): Promise<void> {
    const serverFlags = P.decodeGreeting(await this.#bytes(P.GREETING_BYTES));
    if (serverFlags === undefined) throw protocolError('not a newstyle NBD server');
    if ((serverFlags & P.NBD_FLAG_FIXED_NEWSTYLE) === 0) throw protocolError('no fixed newstyle');
    this.#socket.write(
      P.encodeClientFlags(P.NBD_FLAG_C_FIXED_NEWSTYLE | (serverFlags & P.NBD_FLAG_NO_ZEROES)),
    );
    if (structured) {
      this.#sendOption(P.NBD_OPT_STRUCTURED_REPLY);
      this.structured = (await this.#optionReply(P.NBD_OPT_STRUCTURED_REPLY)).type === P.NBD_REP_ACK;
    }
    this.#sendOption(P.NBD_OPT_GO, P.encodeGoRequest(exportName));
    for (;;) {
      const reply = await this.#optionReply(P.NBD_OPT_GO);
      if (reply.type === P.NBD_REP_ACK) break;
      if (reply.type >= 2 ** 31) {
        throw new NbdError(
          'ERR_LR_NBD_NO_SUCH_EXPORT',
          `NBD server refused export "${exportName}": ${reply.data.toString('utf8') || `error ${reply.type}`}`,
        );
      }
      const info = reply.type === P.NBD_REP_INFO ? P.decodeInfo(reply.data) : undefined;
      if (info?.kind === 'export') {
        this.size = info.size;
        this.flags = info.transmissionFlags;
      }
    }
    this.#transmission = true;
    this.#parseReplies();
  }

  // ─── requests ────────────────────────────────────────────────────────────

  #request(
    type: number,
    flags: number,
    offset: number,
    length: number,
    buffer?: Uint8Array,
    payload?: Uint8Array,
  ): Promise<void> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    if (!Number.isSafeInteger(offset) || offset < 0 || offset + length > this.size) {
      return Promise.reject(
        new RangeError(`request ${offset}+${length} is outside the export (${this.size} bytes)`),
      );
    }
    const handle = this.#nextHandle++;
    const h = P.encodeRequestHeader({ flags, type, handle, offset, length });
    const done = new Promise<void>((resolve, reject) => {
      this.#pending.set(handle, { type, buffer, offset, error: undefined, resolve, reject });
    });
    this.#requests.add(done);
    const forget = (): void => {
      this.#requests.delete(done);
    };
    done.then(forget, forget);
    if (payload === undefined) this.#socket.write(h);
    else {
      this.#socket.cork();
      this.#socket.write(h);
      this.#socket.write(payload);
      this.#socket.uncork();
    }
    return done;
  }

  /** Fills `buffer` with the bytes at `offset`. */
  read(buffer: Uint8Array, offset: number): Promise<void> {
    if (buffer.byteLength > P.MAX_REQUEST_BYTES) return Promise.reject(new RangeError('read over 32 MiB'));
    return this.#request(P.NBD_CMD_READ, 0, offset, buffer.byteLength, buffer);
  }

  write(data: Uint8Array, offset: number, options: NbdWriteOptions = {}): Promise<void> {
    if (data.byteLength > P.MAX_REQUEST_BYTES) return Promise.reject(new RangeError('write over 32 MiB'));
    const flags = options.fua === true ? P.NBD_CMD_FLAG_FUA : 0;
    return this.#request(P.NBD_CMD_WRITE, flags, offset, data.byteLength, undefined, data);
  }

  writeZeroes(
    offset: number,
    length: number,
    options: NbdWriteOptions & { noHole?: boolean } = {},
  ): Promise<void> {
    const flags =
      (options.fua === true ? P.NBD_CMD_FLAG_FUA : 0) |
      (options.noHole === true ? P.NBD_CMD_FLAG_NO_HOLE : 0);
    return this.#request(P.NBD_CMD_WRITE_ZEROES, flags, offset, length);
  }

  trim(offset: number, length: number, options: NbdWriteOptions = {}): Promise<void> {
    return this.#request(P.NBD_CMD_TRIM, options.fua === true ? P.NBD_CMD_FLAG_FUA : 0, offset, length);
  }

  /** Every write completed before this call is durable when it resolves. */
  flush(): Promise<void> {
    return this.#request(P.NBD_CMD_FLUSH, 0, 0, 0);
  }

  /** Waits for pending requests, sends NBD_CMD_DISC and closes the connection. */
  async close(): Promise<void> {
    if (this.#failure === undefined) {
      await Promise.allSettled(this.#requests);
      const h = P.encodeRequestHeader({ flags: 0, type: P.NBD_CMD_DISC, handle: 0n, offset: 0, length: 0 });
      this.#failure = new NbdError('ERR_LR_NBD_CONNECTION', 'client closed');
      this.#socket.end(h);
    }
    if (!this.#socket.destroyed)
      await new Promise<void>((resolve) => this.#socket.once('close', () => resolve()));
  }

  // ─── replies ─────────────────────────────────────────────────────────────

  /** Consumes every complete reply (or reply chunk) in the queue. */
  #parseReplies(): void {
    try {
      while (this.#parseOne()) {}
    } catch (err) {
      this.#fail(err as Error);
    }
  }

  #take(handle: bigint): Pending {
    const p = this.#pending.get(handle);
    if (p === undefined) throw protocolError(`reply to unknown handle ${handle}`);
    return p;
  }

  #parseOne(): boolean {
    const q = this.#queue;
    if (q.length < 4) return false;
    const headerBytes = P.replyHeaderBytes(q.peek(4));
    if (headerBytes === undefined) throw protocolError(`bad reply magic 0x${q.peek(4).toString('hex')}`);
    if (q.length < headerBytes) return false;
    const h = P.decodeReplyHeader(q.peek(headerBytes))!;
    if (h.kind === 'simple') {
      const p = this.#take(h.handle);
      const dataBytes = p.type === P.NBD_CMD_READ && h.error === 0 ? p.buffer!.byteLength : 0;
      if (q.length < headerBytes + dataBytes) return false;
      q.take(headerBytes);
      if (dataBytes > 0) q.take(dataBytes, p.buffer);
      this.#settle(h.handle, p, h.error === 0 ? undefined : requestError(h.error, ''));
      return true;
    }
    const { flags, type, handle, length } = h;
    if (length > P.MAX_REQUEST_BYTES + 1024) throw protocolError(`reply chunk of ${length} bytes`);
    if (q.length < P.STRUCTURED_REPLY_BYTES + length) return false;
    const p = this.#take(handle);
    q.take(P.STRUCTURED_REPLY_BYTES);
    if (type === P.NBD_REPLY_TYPE_OFFSET_DATA || type === P.NBD_REPLY_TYPE_OFFSET_HOLE) {
      const hole =
        type === P.NBD_REPLY_TYPE_OFFSET_HOLE ? P.decodeOffsetHole(q.read(P.OFFSET_HOLE_BYTES)) : undefined;
      const at = (hole?.offset ?? P.decodeOffset(q.read(8))) - p.offset;
      const span = hole?.length ?? length - 8;
      const target = p.buffer;
      if (target === undefined || at < 0 || at + span > target.byteLength)
        throw protocolError('reply data outside the request');
      if (type === P.NBD_REPLY_TYPE_OFFSET_DATA) q.take(span, target, at);
      else target.fill(0, at, at + span);
    } else if ((type & 0x8000) !== 0) {
      const { error, message } = P.decodeErrorPayload(q.read(length));
      p.error ??= requestError(error, message);
    } else {
      q.take(length); // NONE, or metadata we did not ask for
    }
    if ((flags & P.NBD_REPLY_FLAG_DONE) !== 0) this.#settle(handle, p, p.error);
    return true;
  }

  #settle(handle: bigint, p: Pending, error: NbdError | undefined): void {
    this.#pending.delete(handle);
    if (error === undefined) p.resolve();
    else p.reject(error);
  }
}

const ERRNO_NAMES: Record<number, string> = {
  [P.NBD_EPERM]: 'EPERM',
  [P.NBD_EIO]: 'EIO',
  [P.NBD_ENOMEM]: 'ENOMEM',
  [P.NBD_EINVAL]: 'EINVAL',
  [P.NBD_ENOSPC]: 'ENOSPC',
  [P.NBD_EOVERFLOW]: 'EOVERFLOW',
  [P.NBD_ENOTSUP]: 'ENOTSUP',
  [P.NBD_ESHUTDOWN]: 'ESHUTDOWN',
};

/** A request the server refused: `errno` is the NBD error number, `errnoName` its name. */
function requestError(errno: number, message: string): NbdError {
  const name = ERRNO_NAMES[errno] ?? `error ${errno}`;
  return Object.assign(
    new NbdError(
      'ERR_LR_NBD_REQUEST_FAILED',
      `NBD request failed: ${name}${message === '' ? '' : ` (${message})`}`,
    ),
    { errno, errnoName: name },
  );
}
