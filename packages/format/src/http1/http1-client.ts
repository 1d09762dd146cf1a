import {
  type Http1Answer,
  Http1Connection,
  type Http1Endpoint,
  type Http1Exchange,
  type Http1Stats,
  type Http1Tls,
} from './http1-connection.js';

/*
 * Keep-alive HTTP/1.1 connections to one origin, one request on each at a time (no
 * pipelining): a request takes the connection idle longest-recently-used last (the warmest),
 * opens one while fewer than `connections` are open, or waits its turn. An idle connection
 * is closed after `idleTimeoutMs`, or a second before the server's own `Keep-Alive:
 * timeout`. An idempotent request on a reused connection that fails before the server said
 * anything (the server closed it while idle, most likely before the request arrived) is
 * sent once more on a fresh connection; every other failure is the caller's to retry.
 */

/** Options of {@link Http1Client}. */
export interface Http1ClientOptions {
  /** Connections open at most (requests on the wire at most). */
  readonly connections: number;
  /** How long an idle connection is kept (default 4 s). */
  readonly idleTimeoutMs?: number | undefined;
  /** For an https: origin: the trust settings and certificate check. */
  readonly tls?: Http1Tls | undefined;
}

/** A request: what a connection sends, and a signal that aborts it (waiting, connecting or reading). */
export interface Http1Request extends Http1Exchange {
  readonly signal?: AbortSignal | undefined;
}

const DEFAULT_IDLE_TIMEOUT_MS = 4_000;
/** Methods whose request may be sent again when it may have arrived (RFC 9110 §9.2.2). */
const IDEMPOTENT: ReadonlySet<string> = new Set(['GET', 'HEAD', 'PUT', 'DELETE']);

interface Waiter {
  readonly take: (connection: Http1Connection | undefined) => void;
}

export class Http1Client {
  readonly #endpoint: Http1Endpoint;
  readonly #options: Http1ClientOptions;
  /** Idle connections, the most recently used last, each with its idle timer. */
  readonly #idle: { connection: Http1Connection; timer: NodeJS.Timeout }[] = [];
  /** Requests waiting for a connection, first come first served. */
  readonly #waiters: Waiter[] = [];
  /** Connections opening, busy or idle: what {@link close} ends. */
  readonly #open = new Set<Http1Connection>();
  /** Connections being opened (not in {@link #open} until they are). */
  #opening = 0;
  #closed: Error | undefined;
  /** How the answers' bodies arrived, over every connection of this client. */
  readonly stats: Http1Stats = { answers: 0, bodyBytesDirect: 0, bodyBytesCopied: 0 };

  constructor(origin: URL | string, options: Http1ClientOptions) {
    const url = new URL(origin);
    if (url.protocol !== 'http:' && url.protocol !== 'https:')
      throw new TypeError(`Http1Client: ${url.protocol} is not http: or https:`);
    if (!(Number.isSafeInteger(options.connections) && options.connections >= 1))
      throw new RangeError(`Http1Client: connections must be a whole number ≥ 1, not ${options.connections}`);
    this.#endpoint = {
      protocol: url.protocol,
      // [::1] in a URL is ::1 to connect to.
      hostname: url.hostname.replace(/^\[(.*)\]$/, '$1'),
      port: url.port === '' ? (url.protocol === 'http:' ? 80 : 443) : Number(url.port),
      host: url.host,
      tls: options.tls,
    };
    this.#options = options;
  }

  /** Sends `request` and reads its answer to the end, into the sink its `onHead` chooses. */
  async request(request: Http1Request): Promise<Http1Answer> {
    const { signal } = request;
    for (let fresh = false; ; fresh = true) {
      const connection = await this.#acquire(signal, fresh);
      const reused = connection.answered > 0;
      try {
        const answer = await connection.exchange(request, signal);
        this.#release(connection);
        return answer;
      } catch (err) {
        // A request refused before it was sent (a TypeError) leaves the connection usable: give it back.
        this.#release(connection);
        const again =
          reused &&
          !fresh &&
          connection.failedUnanswered &&
          IDEMPOTENT.has(request.method) &&
          signal?.aborted !== true &&
          this.#closed === undefined;
        if (!again) throw err;
      }
    }
  }

  /** Ends every connection; waiting and later requests fail with `reason`. */
  close(reason: Error = new Error('the HTTP client is closed')): void {
    if (this.#closed !== undefined) return;
    this.#closed = reason;
    for (const waiter of this.#waiters.splice(0)) waiter.take(undefined);
    for (const { timer } of this.#idle.splice(0)) clearTimeout(timer);
    for (const connection of this.#open) connection.destroy(reason);
  }

  /** An idle connection (unless `fresh`), a new one, or the next one freed. */
  async #acquire(signal: AbortSignal | undefined, fresh: boolean): Promise<Http1Connection> {
    for (;;) {
      signal?.throwIfAborted();
      if (this.#closed !== undefined) throw this.#closed;
      const idle = fresh ? undefined : this.#idle.pop();
      if (idle !== undefined) {
        clearTimeout(idle.timer);
        if (!idle.connection.ended) return idle.connection;
        continue;
      }
      if (this.#open.size + this.#opening < this.#options.connections) return await this.#connect(signal);
      if (fresh && this.#idle.length > 0) {
        // A fresh connection is wanted and the pool is full: make room by closing an idle one
        // (its end takes it out of the idle list: #onEnd).
        this.#idle[0]!.connection.destroy();
        continue;
      }
      const connection = await this.#wait(signal);
      if (connection !== undefined) return connection;
    }
  }

  /**
   * Waits for a connection handed over by {@link #release}, or for room to open one
   * (undefined: look again).
   */
  #wait(signal: AbortSignal | undefined): Promise<Http1Connection | undefined> {
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        const at = this.#waiters.indexOf(waiter);
        if (at >= 0) this.#waiters.splice(at, 1);
        reject(signal!.reason);
      };
      const waiter: Waiter = {
        take: (connection) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(connection);
        },
      };
      this.#waiters.push(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** A connection whose answer was read: to the next waiter, or idle until its timeout. */
  #release(connection: Http1Connection): void {
    if (connection.ended) return;
    if (this.#closed !== undefined) {
      connection.destroy(this.#closed);
      return;
    }
    const waiter = this.#waiters.shift();
    if (waiter !== undefined) {
      waiter.take(connection);
      return;
    }
    const server = connection.serverIdleMs;
    const idleMs = Math.min(
      this.#options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
      server === undefined ? Number.POSITIVE_INFINITY : Math.max(0, server - 1_000),
    );
    if (idleMs <= 0) {
      // No time to keep it (Keep-Alive: timeout=1): kept for 0 ms it would still be reused in this same turn.
      connection.destroy();
      return;
    }
    // Its end takes it out of the idle list (#onEnd).
    const timer = setTimeout(() => connection.destroy(), idleMs);
    timer.unref();
    this.#idle.push({ connection, timer });
  }

  /** Opens a connection, counted against the limit from the start. */
  async #connect(signal: AbortSignal | undefined): Promise<Http1Connection> {
    this.#opening++;
    let connection: Http1Connection;
    try {
      connection = await Http1Connection.open(this.#endpoint, signal, this.stats, (ended) =>
        this.#onEnd(ended),
      );
    } catch (err) {
      this.#waiters.shift()?.take(undefined);
      throw err;
    } finally {
      this.#opening--;
    }
    if (this.#closed !== undefined) {
      connection.destroy(this.#closed);
      throw this.#closed;
    }
    this.#open.add(connection);
    return connection;
  }

  /** A connection ended: one fewer open (and out of the idle list), so a waiter may open another. */
  #onEnd(connection: Http1Connection): void {
    if (!this.#open.delete(connection)) return;
    const at = this.#idle.findIndex((entry) => entry.connection === connection);
    if (at >= 0) {
      clearTimeout(this.#idle[at]!.timer);
      this.#idle.splice(at, 1);
    }
    this.#waiters.shift()?.take(undefined);
  }
}
