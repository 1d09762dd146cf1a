/**
 * One client connection's life: handshake (bounded by a timeout), then transmission,
 * then a bounded linger while the last replies leave. The server stops it gracefully
 * (`stop`) or cuts it (`destroy`) when it stalls, idles or the server closes.
 */

import { once, setMaxListeners } from 'node:events';
import type { Socket } from 'node:net';
import { type SecureContext, TLSSocket } from 'node:tls';
import { NbdError } from './errors.js';
import { type ExportDirectory, type HandshakeChannel, negotiate } from './handshake.js';
import { Input } from './input.js';
import { MAX_IN_FLIGHT, Transmission, type TransmissionHost } from './transmission.js';

/** What a connection needs from its server. */
export interface ConnectionHost extends ExportDirectory, TransmissionHost {
  readonly handshakeTimeoutMs: number;
  /** How long a finished connection may take to flush its last replies. */
  readonly lingerMs: number;
  /** The server's certificate: TLS is offered, and required (NBD_OPT_STARTTLS). */
  readonly tls?: SecureContext | undefined;
}

export class Connection {
  /** The plain socket, then the TLS socket over it after STARTTLS. */
  #socket: Socket;
  #input: Input;
  readonly #host: ConnectionHost;
  readonly #abort = new AbortController();
  #transmission: Transmission | undefined;
  #stopping = false;
  /** Resolves when the connection is over. */
  readonly done: Promise<void>;

  constructor(socket: Socket, host: ConnectionHost) {
    this.#socket = socket;
    this.#host = host;
    this.#input = new Input(socket);
    socket.setNoDelay(true);
    // Every pending read listens on the connection's signal; there may be many.
    setMaxListeners(MAX_IN_FLIGHT + 16, this.#abort.signal);
    socket.on('error', () => {});
    socket.on('close', () => this.#abort.abort(new NbdError('ERR_LR_NBD_DISCONNECTED', 'client went away')));
    this.done = this.#run().then(
      () => this.#finish(),
      () => this.#finish(),
    );
  }

  /** Graceful stop: no new requests; in-flight ones finish, then the socket closes. */
  stop(): void {
    this.#stopping = true;
    this.#input.interrupt();
    if (this.#transmission === undefined) this.#socket.destroy();
    else this.#transmission.stop();
  }

  /** Cuts the connection at once; what it held is released. */
  destroy(): void {
    this.#socket.destroy();
  }

  get inFlight(): number {
    return this.#transmission?.inFlight ?? 0;
  }

  /** Reply bytes owed or queued to this client. */
  get queuedBytes(): number {
    return this.#transmission?.queuedBytes ?? 0;
  }

  /** In transmission and not reading requests (its own bound, or the server budget). */
  get blocked(): boolean {
    return this.#transmission?.blocked ?? false;
  }

  /** How long replies have waited for a client that does not read them (0: none wait). */
  stalledMs(now: number): number {
    return this.#transmission?.stalledMs(now) ?? 0;
  }

  /** How long a connection in transmission has had nothing in flight or queued (0 otherwise). */
  idleMs(now: number): number {
    return this.#transmission?.idleMs(now) ?? 0;
  }

  #send = (...parts: Buffer[]): void => {
    if (this.#socket.destroyed) return;
    this.#socket.write(parts.length === 1 ? parts[0]! : Buffer.concat(parts));
  };

  async #run(): Promise<void> {
    const timer = setTimeout(() => this.#socket.destroy(), this.#host.handshakeTimeoutMs);
    timer.unref();
    let session: Awaited<ReturnType<typeof negotiate>>;
    const connection = this;
    const channel: HandshakeChannel = {
      get input() {
        return connection.#input;
      },
      get secure() {
        return connection.#socket instanceof TLSSocket;
      },
      send: this.#send,
      ...(this.#host.tls === undefined ? {} : { startTls: (ack: Buffer) => this.#startTls(ack) }),
    };
    try {
      session = await negotiate(channel, this.#host, () => this.#stopping);
    } finally {
      clearTimeout(timer);
    }
    if (session === undefined || this.#stopping) return;
    this.#transmission = new Transmission(this.#socket, this.#input, session, this.#host, this.#abort.signal);
    await this.#transmission.run();
  }

  /**
   * STARTTLS: the plain input stops (the client's next bytes are its TLS hello), the
   * acknowledgement goes out in the clear, and from then on the connection reads and
   * writes through a TLS socket over the same TCP connection.
   */
  async #startTls(ack: Buffer): Promise<void> {
    const early = this.#input.detach();
    if (early.length > 0)
      throw new NbdError('ERR_LR_NBD_PROTOCOL', 'the client sent data before the STARTTLS reply');
    const plain = this.#socket;
    plain.write(ack);
    const secure = new TLSSocket(plain, { isServer: true, secureContext: this.#host.tls! });
    secure.on('error', () => {});
    this.#socket = secure;
    this.#input = new Input(secure);
    secure.setNoDelay(true);
    await Promise.race([
      once(secure, 'secure'),
      once(secure, 'close').then(() => {
        throw new NbdError('ERR_LR_NBD_DISCONNECTED', 'the TLS handshake failed');
      }),
    ]);
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
    const timer = setTimeout(() => this.#socket.destroy(), this.#host.lingerMs);
    timer.unref();
    await closed;
    clearTimeout(timer);
  }
}
