/**
 * The fixed-newstyle handshake, server side: greeting, client flags, then options until
 * NBD_OPT_GO / NBD_OPT_EXPORT_NAME picks an export (or the client aborts or breaks the
 * protocol). What it negotiates is the connection's {@link Session}; transmission is
 * another module. With TLS configured, TLS is required (as qemu-nbd --tls-creds does it):
 * until NBD_OPT_STARTTLS has upgraded the connection, every option but STARTTLS and ABORT
 * is answered NBD_REP_ERR_TLS_REQD (NBD_OPT_EXPORT_NAME, which cannot be answered, ends
 * the connection), and the options agreed before STARTTLS are forgotten after it.
 */

import type { NbdExport } from './export.js';
import type { Input } from './input.js';
import * as W from './wire.js';

/** The exports a handshake may open: the list (default first) and a lookup by name. */
export interface ExportDirectory {
  readonly exportList: readonly NbdExport[];
  /** The export of a name; '' is the default export. */
  find(name: string): NbdExport | undefined;
}

/** What a finished handshake agreed on. */
export interface Session {
  readonly export: NbdExport;
  /** Structured replies were negotiated (reads and block status answer with chunks). */
  readonly structured: boolean;
  /** `base:allocation` was selected for this export, so NBD_CMD_BLOCK_STATUS is allowed. */
  readonly baseAllocation: boolean;
}

/**
 * Flush is always accepted (a no-op when read-only). Multi-conn is safe for writable
 * exports too: every connection writes through the same export object, and a flush on
 * any of them makes every completed write durable.
 */
export function transmissionFlags(exp: NbdExport): number {
  const common = W.NBD_FLAG_HAS_FLAGS | W.NBD_FLAG_SEND_FLUSH | W.NBD_FLAG_CAN_MULTI_CONN;
  if (exp.writer === undefined) return common | W.NBD_FLAG_READ_ONLY;
  return common | W.NBD_FLAG_SEND_FUA | W.NBD_FLAG_SEND_TRIM | W.NBD_FLAG_SEND_WRITE_ZEROES;
}

type Step = 'continue' | 'go' | 'close' | 'starttls';

/** How the handshake talks to its client; STARTTLS swaps the transport under it. */
export interface HandshakeChannel {
  /** The connection's input (a new one once TLS is on). */
  readonly input: Input;
  send(...parts: Buffer[]): void;
  /** True once the connection is encrypted. */
  readonly secure: boolean;
  /**
   * Present when the server has TLS: stops reading the plain socket, sends `ack` (the
   * STARTTLS reply) and resolves once the TLS handshake is done; rejects when it fails.
   */
  readonly startTls?: ((ack: Buffer) => Promise<void>) | undefined;
}

/**
 * Runs the handshake on a connection. Resolves with the session, or undefined when the
 * connection must end (bad magic or flags, oversized option, NBD_OPT_ABORT, an unknown
 * export with NBD_OPT_EXPORT_NAME, or `stopping()` turned true).
 */
export async function negotiate(
  channel: HandshakeChannel,
  exports: ExportDirectory,
  stopping: () => boolean,
): Promise<Session | undefined> {
  return new Handshake(channel, exports, stopping).run();
}

class Handshake {
  readonly #channel: HandshakeChannel;
  readonly #exports: ExportDirectory;
  readonly #stopping: () => boolean;
  #noZeroes = false;
  #structured = false;
  /** Export names a SET_META_CONTEXT selected `base:allocation` for. */
  readonly #metaExports = new Set<string>();
  #session: Session | undefined;

  constructor(channel: HandshakeChannel, exports: ExportDirectory, stopping: () => boolean) {
    this.#channel = channel;
    this.#exports = exports;
    this.#stopping = stopping;
  }

  async run(): Promise<Session | undefined> {
    this.#send(W.encodeGreeting(W.NBD_FLAG_FIXED_NEWSTYLE | W.NBD_FLAG_NO_ZEROES));
    const clientFlags = (await this.#channel.input.read(W.CLIENT_FLAGS_BYTES)).readUInt32BE(0);
    const known = W.NBD_FLAG_C_FIXED_NEWSTYLE | W.NBD_FLAG_C_NO_ZEROES;
    // Only fixed newstyle is spoken; unknown client flags must end the session (proto.md).
    if ((clientFlags & ~known) !== 0 || (clientFlags & W.NBD_FLAG_C_FIXED_NEWSTYLE) === 0) return undefined;
    this.#noZeroes = (clientFlags & W.NBD_FLAG_C_NO_ZEROES) !== 0;
    for (;;) {
      if (this.#stopping()) return undefined;
      const input = this.#channel.input;
      const header = W.decodeOptionHeader(await input.read(W.OPTION_HEADER_BYTES));
      if (header === undefined || header.length > W.MAX_OPTION_BYTES) return undefined;
      const data = header.length > 0 ? await input.read(header.length) : Buffer.alloc(0);
      const step =
        this.#tlsRequired && !this.#channel.secure
          ? this.#beforeTls(header.option, data)
          : this.#option(header.option, data);
      if (step === 'close') return undefined;
      if (step === 'go') return this.#session;
      if (step === 'starttls') {
        await this.#channel.startTls!(W.encodeOptionReplyHeader(W.NBD_OPT_STARTTLS, W.NBD_REP_ACK, 0));
        // Nothing agreed in the clear carries over (proto.md, "TLS support").
        this.#structured = false;
        this.#metaExports.clear();
      }
    }
  }

  get #tlsRequired(): boolean {
    return this.#channel.startTls !== undefined;
  }

  /** An option before TLS when TLS is required: only STARTTLS and ABORT are served. */
  #beforeTls(option: number, data: Buffer): Step {
    if (option === W.NBD_OPT_STARTTLS || option === W.NBD_OPT_ABORT) return this.#option(option, data);
    if (option === W.NBD_OPT_EXPORT_NAME) return 'close';
    this.#replyError(option, W.NBD_REP_ERR_TLS_REQD, 'TLS is required: send NBD_OPT_STARTTLS first');
    return 'continue';
  }

  #send(...parts: Buffer[]): void {
    this.#channel.send(...parts);
  }

  #reply(option: number, type: number, data: Buffer = Buffer.alloc(0)): void {
    this.#send(W.encodeOptionReplyHeader(option, type, data.length), data);
  }

  #replyError(option: number, type: number, message: string): void {
    this.#reply(option, type, Buffer.from(message, 'utf8'));
  }

  #option(option: number, data: Buffer): Step {
    switch (option) {
      case W.NBD_OPT_EXPORT_NAME: {
        const exp = this.#exports.find(data.toString('utf8'));
        if (exp === undefined) return 'close'; // no way to report an error to this option
        this.#send(W.encodeExportNameReply(exp.size, transmissionFlags(exp), this.#noZeroes));
        this.#enter(exp);
        return 'go';
      }
      case W.NBD_OPT_ABORT:
        this.#reply(option, W.NBD_REP_ACK);
        return 'close';
      case W.NBD_OPT_STARTTLS:
        if (this.#channel.startTls === undefined) {
          this.#replyError(option, W.NBD_REP_ERR_UNSUP, 'this server has no TLS certificate');
          return 'continue';
        }
        if (data.length !== 0) {
          this.#replyError(option, W.NBD_REP_ERR_INVALID, 'NBD_OPT_STARTTLS takes no data');
          return 'continue';
        }
        if (this.#channel.secure) {
          this.#replyError(option, W.NBD_REP_ERR_INVALID, 'TLS is already on');
          return 'continue';
        }
        return 'starttls';
      case W.NBD_OPT_LIST:
        if (data.length !== 0) {
          this.#replyError(option, W.NBD_REP_ERR_INVALID, 'NBD_OPT_LIST takes no data');
          return 'continue';
        }
        for (const exp of this.#exports.exportList)
          this.#reply(option, W.NBD_REP_SERVER, W.encodeServerReply(exp.name));
        this.#reply(option, W.NBD_REP_ACK);
        return 'continue';
      case W.NBD_OPT_INFO:
      case W.NBD_OPT_GO:
        return this.#infoOrGo(option, data);
      case W.NBD_OPT_STRUCTURED_REPLY:
        if (data.length !== 0) {
          this.#replyError(option, W.NBD_REP_ERR_INVALID, 'NBD_OPT_STRUCTURED_REPLY takes no data');
        } else {
          this.#structured = true;
          this.#reply(option, W.NBD_REP_ACK);
        }
        return 'continue';
      case W.NBD_OPT_LIST_META_CONTEXT:
      case W.NBD_OPT_SET_META_CONTEXT:
        this.#metaContext(option, data);
        return 'continue';
      default:
        this.#replyError(option, W.NBD_REP_ERR_UNSUP, `option ${option} is not supported`);
        return 'continue';
    }
  }

  #infoOrGo(option: number, data: Buffer): Step {
    const request = W.decodeGoRequest(data);
    if (typeof request === 'string') {
      this.#replyError(option, W.NBD_REP_ERR_INVALID, request);
      return 'continue';
    }
    const exp = this.#exports.find(request.exportName);
    if (exp === undefined) {
      this.#replyError(option, W.NBD_REP_ERR_UNKNOWN, `no export named "${request.exportName}"`);
      return 'continue';
    }
    this.#reply(option, W.NBD_REP_INFO, W.encodeInfoExport(exp.size, transmissionFlags(exp)));
    this.#reply(
      option,
      W.NBD_REP_INFO,
      W.encodeInfoBlockSize(W.MIN_BLOCK_BYTES, W.PREFERRED_BLOCK_BYTES, W.MAX_REQUEST_BYTES),
    );
    this.#reply(option, W.NBD_REP_ACK);
    if (option === W.NBD_OPT_INFO) return 'continue';
    this.#enter(exp);
    return 'go';
  }

  /** LIST/SET_META_CONTEXT; only `base:allocation` exists. */
  #metaContext(option: number, data: Buffer): void {
    if (!this.#structured) {
      this.#replyError(option, W.NBD_REP_ERR_INVALID, 'negotiate structured replies first');
      return;
    }
    const request = W.decodeMetaContextRequest(data);
    if (request === undefined) {
      this.#replyError(option, W.NBD_REP_ERR_INVALID, 'malformed meta context request');
      return;
    }
    if (this.#exports.find(request.exportName) === undefined) {
      this.#replyError(option, W.NBD_REP_ERR_UNKNOWN, `no export named "${request.exportName}"`);
      return;
    }
    const list = option === W.NBD_OPT_LIST_META_CONTEXT;
    const matches =
      request.queries.length === 0
        ? list
        : request.queries.some((q) => q === W.BASE_ALLOCATION || (list && q === 'base:'));
    if (!list) {
      // A SET replaces any earlier selection.
      this.#metaExports.clear();
      if (matches) this.#metaExports.add(request.exportName);
    }
    if (matches)
      this.#reply(
        option,
        W.NBD_REP_META_CONTEXT,
        W.encodeMetaContextReply(W.BASE_ALLOCATION_ID, W.BASE_ALLOCATION),
      );
    this.#reply(option, W.NBD_REP_ACK);
  }

  #enter(exp: NbdExport): void {
    // Default export: base:allocation was negotiated for whatever name the client used.
    const defaultName = this.#exports.exportList[0]?.name;
    const baseAllocation =
      this.#structured &&
      [...this.#metaExports].some(
        (n) => this.#exports.find(n) === exp || (n === '' && exp.name === defaultName),
      );
    this.#session = { export: exp, structured: this.#structured, baseAllocation };
  }
}
