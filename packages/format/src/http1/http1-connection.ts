import { isIP, connect as netConnect, type Socket } from 'node:net';
import { type ConnectionOptions, type TLSSocket, connect as tlsConnect } from 'node:tls';
import { ChunkedDecoder } from './http1-chunked.js';
import {
  type BodyFraming,
  bodyFraming,
  type Http1Head,
  Http1ParseError,
  keepAliveTimeoutMs,
  keepsAlive,
  parseHead,
} from './http1-head.js';

/*
 * One HTTP/1.1 connection carrying one request at a time, whose answer body goes where the
 * caller decides when the head arrives (a {@link BodySink}). Its point is the blob case: a
 * body of known length bound for an array the caller owns is read by the kernel straight
 * into that array (a plain TCP socket's `onread` buffer is the array itself), with no
 * Buffer per read, no stream and no copy. Everything else — the head, chunked bodies,
 * bodies collected as bytes, TLS, whose plaintext arrives in Buffers — passes through
 * one scratch buffer and is copied once.
 *
 * Every byte is consumed as it arrives (the sink never waits for a reader), so the socket
 * is never paused and the scratch buffer holds at most one unfinished head or framing line.
 *
 * Over 400 lines with a reason: one connection's read state (scratch, direct target,
 * current exchange) is touched by every step — choosing the next read buffer, parsing the
 * head, delivering body bytes, finishing or failing — and split apart those steps would
 * share that state through accessors. What stands alone lives beside it: head parsing and
 * framing (http1-head.ts), the chunked coding (http1-chunked.ts), the pool (http1-client.ts).
 */

/** Where an answer's body goes, chosen from its head by the request's `onHead`. */
export type BodySink =
  /**
   * Into `target` from `cursor.start` (advanced as bytes arrive, so a cut answer can be
   * resumed) to the target's end, exactly: a body that is longer or shorter fails with
   * `bad(why)`.
   */
  | {
      readonly kind: 'into';
      readonly target: Uint8Array;
      readonly cursor: { start: number };
      readonly bad: (why: string) => Error;
    }
  /**
   * Collected into one fresh array of at most `maxBytes`. A longer body fails with
   * `tooLarge()`, or without it is cut there (the connection is then closed, not reused).
   */
  | { readonly kind: 'collect'; readonly maxBytes: number; readonly tooLarge?: () => Error };

/** One request as a connection sends it. */
export interface Http1Exchange {
  readonly method: 'GET' | 'HEAD' | 'PUT' | 'POST' | 'DELETE';
  /** The request target: path and query, already encoded. */
  readonly path: string;
  /**
   * Header fields. Host is the origin's unless given here; Content-Length is the body's
   * (one given here must say the same).
   */
  readonly headers: Readonly<Record<string, string>>;
  /** The request's body, sent with its Content-Length. */
  readonly body?: Uint8Array | undefined;
  /** Chooses where the body goes; throwing fails the request with that error. */
  readonly onHead: (head: Http1Head) => BodySink;
}

/** An answer whose body has been read to its end (or cut, see {@link BodySink}). */
export interface Http1Answer {
  readonly head: Http1Head;
  /** The body of a `collect` sink; undefined for an `into` one. */
  readonly collected: Uint8Array | undefined;
}

/** Where connections go: the origin and, for https:, how its certificate is checked. */
export interface Http1Endpoint {
  readonly protocol: 'http:' | 'https:';
  readonly hostname: string;
  readonly port: number;
  /** Host header: `hostname[:port]`. */
  readonly host: string;
  readonly tls?: Http1Tls | undefined;
}

/** Counters of a client's connections: how the answers' bodies arrived. */
export interface Http1Stats {
  /** Answers read to their end. */
  answers: number;
  /** Body bytes the kernel read straight into a sink's target (no copy in user space). */
  bodyBytesDirect: number;
  /** Body bytes copied from the scratch buffer (heads' neighbours, chunked, collected, TLS). */
  bodyBytesCopied: number;
}

/** TLS settings of an https: origin. */
export interface Http1Tls {
  /** Passed to `tls.connect` (ca, rejectUnauthorized, …). */
  readonly options?: ConnectionOptions | undefined;
  /**
   * Checks the server's certificate once the handshake is done (`host` is the origin's
   * `hostname:port`); an error refuses the connection before a byte of a request is sent.
   */
  readonly verify?: ((socket: TLSSocket, host: string) => Error | undefined) | undefined;
}

/** Size of the scratch buffer: the head, framing and bodies that are copied pass through it. */
const SCRATCH_BYTES = 64 * 1024;
/** Longest answer head accepted (status line, fields and the empty line that ends them). */
export const MAX_HEAD_BYTES = 32 * 1024;
const HEAD_END = Buffer.from('\r\n\r\n', 'latin1');

/** The exchange in progress on a connection. */
interface Current {
  readonly exchange: Http1Exchange;
  readonly resolve: (answer: Http1Answer) => void;
  readonly reject: (err: unknown) => void;
  /** Bytes of the answer received so far (0: the server has said nothing yet). */
  answerBytes: number;
  head?: Http1Head;
  framing?: BodyFraming;
  sink?: BodySink;
  /** Body bytes still to come (length framing). */
  remaining: number;
  decoder?: ChunkedDecoder;
  collected: Buffer[];
  collectedBytes: number;
  /** A `collect` body was cut at its bound: the rest is never read. */
  cut: boolean;
}

/** A socket failure or an early end, in the network codes retries look for. */
function connectionError(message: string): Error {
  return Object.assign(new Error(message), { code: 'ECONNRESET' });
}

export class Http1Connection {
  readonly #socket: Socket;
  readonly #endpoint: Http1Endpoint;
  readonly #scratch = Buffer.allocUnsafe(SCRATCH_BYTES);
  /** Unconsumed bytes: `#scratch[#head, #tail)`. */
  #head = 0;
  #tail = 0;
  /** The read in flight goes into the sink's target, not the scratch buffer. */
  #readingDirect = false;
  #current: Current | undefined;
  #unansweredFailure = false;
  /** Why the connection ended; set once. */
  #ended: Error | undefined;
  /** Told when the connection ends (for the pool's count). */
  readonly #onEnd: (connection: Http1Connection) => void;
  readonly #stats: Http1Stats;
  /** Answers read to their end on this connection. */
  answered = 0;
  /** How long the server keeps it open when idle, if its last answer said. */
  serverIdleMs: number | undefined;

  private constructor(
    endpoint: Http1Endpoint,
    stats: Http1Stats,
    onEnd: (connection: Http1Connection) => void,
  ) {
    this.#endpoint = endpoint;
    this.#stats = stats;
    this.#onEnd = onEnd;
    const { hostname, port, tls } = endpoint;
    if (endpoint.protocol === 'http:') {
      this.#socket = netConnect({
        host: hostname,
        port,
        onread: {
          buffer: () => this.#nextReadBuffer(),
          callback: (bytes) => {
            this.#onRead(bytes);
            return true;
          },
        },
      });
    } else {
      const socket = tlsConnect({
        host: hostname,
        port,
        ...(isIP(hostname) === 0 ? { servername: hostname } : {}),
        ...tls?.options,
      });
      // Plaintext arrives in Buffers: copied into the same buffers a plain socket reads into.
      socket.on('data', (data: Buffer) => this.#feed(data));
      this.#socket = socket;
    }
    this.#socket.setNoDelay(true);
    this.#socket.on('end', () => this.#onEof());
    this.#socket.on('error', (err) => this.#end(err));
    this.#socket.on('close', () => this.#end(connectionError('the connection closed')));
  }

  /**
   * Opens a connection to `endpoint`, once connected (and for TLS, verified); `onEnd` is
   * told when it ends; `stats` counts its answers.
   */
  static open(
    endpoint: Http1Endpoint,
    signal: AbortSignal | undefined,
    stats: Http1Stats,
    onEnd: (connection: Http1Connection) => void,
  ): Promise<Http1Connection> {
    const connection = new Http1Connection(endpoint, stats, onEnd);
    return connection.#connected(signal);
  }

  /** True once the connection has ended; it takes no more requests. */
  get ended(): boolean {
    return this.#ended !== undefined;
  }

  /** Sends one request and reads its answer; `signal` aborts it (and ends the connection). */
  exchange(exchange: Http1Exchange, signal: AbortSignal | undefined): Promise<Http1Answer> {
    if (this.#ended !== undefined) return Promise.reject(this.#ended);
    if (this.#current !== undefined) throw new Error('Http1Connection: one request at a time');
    const request = requestText(exchange, this.#endpoint.host);
    return new Promise<Http1Answer>((resolve, reject) => {
      const onAbort = () => this.#end(signal!.reason);
      const settle =
        <T>(then: (value: T) => void) =>
        (value: T) => {
          signal?.removeEventListener('abort', onAbort);
          then(value);
        };
      this.#current = {
        exchange,
        resolve: settle(resolve),
        reject: settle(reject),
        answerBytes: 0,
        remaining: 0,
        collected: [],
        collectedBytes: 0,
        cut: false,
      };
      if (signal?.aborted === true) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#socket.write(request, 'latin1');
      if (exchange.body !== undefined && exchange.body.byteLength > 0) this.#socket.write(exchange.body);
    });
  }

  /**
   * Whether the last exchange failed before any byte of its answer arrived: on a reused
   * connection, the server had closed it while idle, and the request never reached it.
   */
  get failedUnanswered(): boolean {
    return this.#unansweredFailure;
  }

  /** Ends the connection (an idle one the pool lets go, or on close). */
  destroy(reason: Error = connectionError('the connection was closed by the client')): void {
    this.#end(reason);
  }

  #connected(signal: AbortSignal | undefined): Promise<Http1Connection> {
    const event = this.#endpoint.protocol === 'http:' ? 'connect' : 'secureConnect';
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        this.#end(signal!.reason);
        reject(signal!.reason);
      };
      if (signal?.aborted === true) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      const done = (err: Error | undefined) => {
        signal?.removeEventListener('abort', onAbort);
        this.#socket.off(event, onConnect).off('error', onError).off('close', onClose);
        if (err === undefined) return resolve(this);
        this.#end(err);
        reject(err);
      };
      const onConnect = () =>
        done(this.#endpoint.tls?.verify?.(this.#socket as TLSSocket, this.#endpoint.host));
      const onError = (err: Error) => done(err);
      const onClose = () => done(this.#ended ?? connectionError('the connection closed while it was opened'));
      this.#socket.once(event, onConnect).once('error', onError).once('close', onClose);
    });
  }

  /** The buffer the next read goes into: the sink's target when the body may go there directly. */
  #nextReadBuffer(): Uint8Array {
    const current = this.#current;
    const sink = current?.sink;
    if (
      sink?.kind === 'into' &&
      current!.framing?.kind === 'length' &&
      current!.remaining > 0 &&
      this.#head === this.#tail
    ) {
      this.#readingDirect = true;
      const { start } = sink.cursor;
      return sink.target.subarray(start, start + current!.remaining);
    }
    this.#readingDirect = false;
    if (this.#head === this.#tail) {
      this.#head = 0;
      this.#tail = 0;
    } else if (SCRATCH_BYTES - this.#tail < MAX_HEAD_BYTES) {
      this.#scratch.copyWithin(0, this.#head, this.#tail);
      this.#tail -= this.#head;
      this.#head = 0;
    }
    // At most MAX_HEAD_BYTES are ever unconsumed (more fails the answer), so this is never empty.
    return this.#scratch.subarray(this.#tail);
  }

  /** TLS: plaintext copied into the read buffers, as a plain socket's kernel reads would fill them. */
  #feed(data: Buffer): void {
    for (let at = 0; at < data.byteLength && this.#ended === undefined; ) {
      const buffer = this.#nextReadBuffer();
      const bytes = Math.min(buffer.byteLength, data.byteLength - at);
      buffer.set(data.subarray(at, at + bytes));
      at += bytes;
      this.#onRead(bytes, 'copied');
    }
  }

  /**
   * `bytes` were read into the buffer {@link #nextReadBuffer} gave last: by the kernel
   * (a plain socket) or `'copied'` there from TLS plaintext.
   */
  #onRead(bytes: number, how: 'read' | 'copied' = 'read'): void {
    const current = this.#current;
    if (current === undefined) {
      // A server may not speak unasked; whatever it said, this connection is done.
      this.#end(connectionError('the server sent bytes on an idle connection'));
      return;
    }
    current.answerBytes += bytes;
    try {
      if (this.#readingDirect) {
        const sink = current.sink as Extract<BodySink, { kind: 'into' }>;
        sink.cursor.start += bytes;
        if (how === 'read') this.#stats.bodyBytesDirect += bytes;
        else this.#stats.bodyBytesCopied += bytes;
        current.remaining -= bytes;
        if (current.remaining === 0) this.#finish(current);
        return;
      }
      this.#tail += bytes;
      this.#consume(current);
    } catch (err) {
      this.#end(err);
    }
  }

  /** Parses and delivers what the scratch buffer holds, as far as it goes. */
  #consume(current: Current): void {
    while (this.#current === current) {
      if (current.sink === undefined) {
        if (!this.#readHead(current)) return;
        continue;
      }
      const framing = current.framing!;
      if (framing.kind === 'chunked') {
        const used = current.decoder!.decode(this.#scratch, this.#head, this.#tail, (data) =>
          this.#deliver(current, data),
        );
        this.#head += used;
        if (current.decoder!.done) this.#finish(current);
        return;
      }
      const available = this.#tail - this.#head;
      const take = framing.kind === 'length' ? Math.min(available, current.remaining) : available;
      this.#deliver(current, this.#scratch.subarray(this.#head, this.#head + take));
      this.#head += take;
      current.remaining -= take;
      if (framing.kind === 'length' && current.remaining === 0) this.#finish(current);
      return;
    }
  }

  /** Reads the head if it is all here: true when it was (the body's sink is then chosen). */
  #readHead(current: Current): boolean {
    const end = this.#scratch.subarray(this.#head, this.#tail).indexOf(HEAD_END);
    // Checked whether or not its end is here: a long head that arrives in one read is still too long.
    if (end < 0 ? this.#tail - this.#head > MAX_HEAD_BYTES : end + HEAD_END.byteLength > MAX_HEAD_BYTES)
      throw new Http1ParseError('HPE_HEADER_OVERFLOW', `the answer's head is over ${MAX_HEAD_BYTES} bytes`);
    if (end < 0) return false;
    const head = parseHead(this.#scratch.toString('latin1', this.#head, this.#head + end));
    this.#head += end + HEAD_END.byteLength;
    // An interim answer (100 Continue, 103 Early Hints) comes before the real one.
    if (head.status >= 100 && head.status < 200 && head.status !== 101) return true;
    if (head.status === 101)
      throw new Http1ParseError('HPE_INVALID_STATUS', 'the server switched protocols unasked (101)');
    const framing = bodyFraming(head, current.exchange.method);
    current.head = head;
    current.framing = framing;
    current.sink = current.exchange.onHead(head);
    current.remaining = framing.kind === 'length' ? framing.bytes : 0;
    if (framing.kind === 'chunked') current.decoder = new ChunkedDecoder();
    const { sink } = current;
    if (sink.kind === 'into') {
      const room = sink.target.byteLength - sink.cursor.start;
      if (framing.kind === 'none' && room > 0)
        throw sink.bad(`the answer has no body, ${room} bytes were expected`);
      if (framing.kind === 'length' && framing.bytes !== room)
        throw sink.bad(`its Content-Length is ${framing.bytes} bytes, ${room} were expected`);
    }
    if (framing.kind === 'none' || (framing.kind === 'length' && framing.bytes === 0)) this.#finish(current);
    return true;
  }

  /** Hands body bytes (a view of the scratch buffer) to the sink. */
  #deliver(current: Current, data: Uint8Array): void {
    const sink = current.sink!;
    if (data.byteLength === 0) return;
    this.#stats.bodyBytesCopied += data.byteLength;
    if (sink.kind === 'into') {
      const { cursor, target } = sink;
      if (cursor.start + data.byteLength > target.byteLength)
        throw sink.bad(`the body is longer than the ${target.byteLength} bytes expected`);
      target.set(data, cursor.start);
      cursor.start += data.byteLength;
      return;
    }
    if (current.cut) return;
    const room = sink.maxBytes - current.collectedBytes;
    if (data.byteLength > room) {
      if (sink.tooLarge !== undefined) throw sink.tooLarge();
      current.cut = true;
      data = data.subarray(0, room);
    }
    current.collected.push(Buffer.from(data));
    current.collectedBytes += data.byteLength;
    if (current.cut) this.#finish(current);
  }

  /** The answer is complete: settle it, and keep the connection only when it can carry another. */
  #finish(current: Current): void {
    const head = current.head!;
    const sink = current.sink!;
    if (sink.kind === 'into' && sink.cursor.start !== sink.target.byteLength)
      throw sink.bad(`the body ended at byte ${sink.cursor.start} of the ${sink.target.byteLength} expected`);
    this.#current = undefined;
    this.answered++;
    this.#stats.answers++;
    this.serverIdleMs = keepAliveTimeoutMs(head);
    const reusable =
      keepsAlive(head) && current.framing!.kind !== 'close' && !current.cut && this.#head === this.#tail;
    if (!reusable) this.#end(connectionError('the answer ended the connection'));
    current.resolve({
      head,
      collected: sink.kind === 'collect' ? joined(current.collected, current.collectedBytes) : undefined,
    });
  }

  /** The server closed its side: the end of a body framed by the close, else a cut answer. */
  #onEof(): void {
    const current = this.#current;
    if (current?.framing?.kind === 'close') {
      try {
        this.#finish(current);
      } catch (err) {
        this.#end(err);
      }
      return;
    }
    this.#end(connectionError('the server closed the connection before the answer ended'));
  }

  /** Ends the connection once: the exchange in progress (if any) fails with `reason` (an abort's, whatever it is). */
  #end(reason: unknown): void {
    const current = this.#current;
    this.#current = undefined;
    if (current !== undefined) {
      this.#unansweredFailure = current.answerBytes === 0;
      current.reject(reason);
    }
    if (this.#ended !== undefined) return;
    this.#ended = reason instanceof Error ? reason : new Error(String(reason));
    this.#head = 0;
    this.#tail = 0;
    this.#socket.destroy();
    this.#onEnd(this);
  }
}

/** `parts` (of `bytes` in all) in one fresh array: never a view of a pooled Buffer, so the caller may transfer it. */
function joined(parts: readonly Uint8Array[], bytes: number): Uint8Array {
  const out = new Uint8Array(bytes);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.byteLength;
  }
  return out;
}

/** The request's bytes; a header name or value that could split the request is refused. */
function requestText(exchange: Http1Exchange, host: string): string {
  if (!/^[!-~]+$/.test(exchange.path))
    throw new TypeError(`not a request target: ${JSON.stringify(exchange.path)}`);
  let text = `${exchange.method} ${exchange.path} HTTP/1.1\r\n`;
  let hasHost = false;
  const length = exchange.body?.byteLength ?? 0;
  for (const [name, value] of Object.entries(exchange.headers)) {
    // A field value is tab, visible ASCII and obs-text; sent as latin1, a character past U+00FF
    // would go out as its low byte (U+010A as LF), so it is refused too.
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name) || /[^\t\x20-\x7e\x80-\xff]/.test(value))
      throw new TypeError(`not a header field: ${JSON.stringify(name)}`);
    const lower = name.toLowerCase();
    if (lower === 'transfer-encoding' || (lower === 'content-length' && value.trim() !== String(length)))
      throw new TypeError(`${name}: ${value} does not describe the request's body (${length} bytes)`);
    if (lower === 'content-length') continue;
    if (lower === 'host') hasHost = true;
    text += `${name}: ${value}\r\n`;
  }
  if (!hasHost) text += `host: ${host}\r\n`;
  if (exchange.body !== undefined || exchange.method === 'PUT' || exchange.method === 'POST')
    text += `content-length: ${length}\r\n`;
  return `${text}\r\n`;
}
