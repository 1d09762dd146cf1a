import { once } from 'node:events';
import { createServer, type Server, type Socket } from 'node:net';
import { createSecureContext, type SecureContext } from 'node:tls';
import type { Snapshot } from '@liverestore/reader';
import { Connection, type ConnectionHost } from './connection.js';
import { NbdError } from './errors.js';
import { type NbdExport, snapshotExports } from './export.js';
import { ReplyBudget } from './reply-budget.js';
import { ReplyBuffers } from './reply-buffers.js';
import * as W from './wire.js';

/**
 * Where the server listens: TCP (127.0.0.1:10809 by default; port 0 = ephemeral), a Unix
 * socket, or a listening socket it is handed (`fd`: systemd socket activation).
 */
export type NbdListen = { host?: string; port?: number } | { socket: string } | { fd: number };

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
  /** Reply bytes one connection may have queued before it stops reading requests. Default 64 MiB. */
  maxQueuedBytes?: number | undefined;
  /**
   * Reply bytes all connections together may hold (read buffers, write payloads, replies
   * not yet taken by the kernel) before connections stop reading requests. Default 256 MiB.
   */
  maxServerQueuedBytes?: number | undefined;
  /**
   * A connection whose replies have waited this long without the client reading any of
   * them is cut, and what it held is released. Default 60 s.
   */
  replyStallTimeoutMs?: number | undefined;
  /** Open connections at most; more are closed at once (and counted). Default 1024. */
  maxConnections?: number | undefined;
  /**
   * Closes a connection that has had nothing in flight for this long after its handshake.
   * Default 0: off, because QEMU keeps its connection open (idle) while the guest is idle,
   * and a VM must not lose its disk for being quiet.
   */
  idleTimeoutMs?: number | undefined;
  /** How long `close()` waits for in-flight requests before destroying sockets. Default 5 s. */
  closeTimeoutMs?: number | undefined;
  /** A connection must finish its handshake within this time. Default 30 s. */
  handshakeTimeoutMs?: number | undefined;
  /** Receives one line per notable event (refused, stalled or idle connections); rate-limited. */
  log?: ((line: string) => void) | undefined;
  /**
   * A PEM certificate and key: the server then requires TLS (NBD_OPT_STARTTLS, as
   * `qemu-nbd --tls-creds`); clients connect with `nbds://`.
   */
  tls?: { cert: Buffer | string; key: Buffer | string } | undefined;
}

/** The server's TLS context; a bad certificate or key is ERR_LR_NBD_TLS (at start, not per client). */
function tlsContext(tls: { cert: Buffer | string; key: Buffer | string }): SecureContext {
  try {
    return createSecureContext({ cert: tls.cert, key: tls.key });
  } catch (cause) {
    throw new NbdError(
      'ERR_LR_NBD_TLS',
      `the TLS certificate or key is not usable: ${(cause as Error).message}`,
      {
        cause,
      },
    );
  }
}

/** Live counters of an {@link NbdServer}. */
export interface NbdServerStats {
  /** Connections open now. */
  connections: number;
  /** Requests in flight over all connections. */
  inFlight: number;
  /** Reply bytes held over all connections (what `maxServerQueuedBytes` bounds). */
  queuedBytes: number;
  /** Connections that are not reading requests now (their own bound or the server's is reached). */
  blockedConnections: number;
  /** Connections closed at once because `maxConnections` were open (since start). */
  refusedConnections: number;
  /** Connections cut because their client did not read replies (`replyStallTimeoutMs`). */
  stalledConnections: number;
  /** Connections closed by `idleTimeoutMs`. */
  idleConnections: number;
}

/** A running NBD server. */
export interface NbdServer {
  /** `127.0.0.1:10809` or the socket path. */
  readonly address: string;
  /** The TCP port (absent for a Unix socket). */
  readonly port?: number;
  /** Export names, default (first drive) first. */
  readonly exports: readonly string[];
  stats(): NbdServerStats;
  /** Stops accepting, lets in-flight requests finish (bounded), closes every connection. */
  close(): Promise<void>;
}

const MiB = 1024 * 1024;
/** Defaults of the options above. */
export const NBD_SERVER_DEFAULTS = {
  maxQueuedBytes: 64 * MiB,
  maxServerQueuedBytes: 256 * MiB,
  replyStallTimeoutMs: 60_000,
  maxConnections: 1024,
  idleTimeoutMs: 0,
  closeTimeoutMs: 5000,
  handshakeTimeoutMs: 30_000,
} as const;
/** At most one log line of a kind per this interval; the next one says how many were left out. */
const LOG_INTERVAL_MS = 10_000;

function positiveInteger(
  value: number | undefined,
  fallback: number,
  name: string,
  zeroAllowed = false,
): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < (zeroAllowed ? 0 : 1))
    throw new RangeError(`${name} must be a ${zeroAllowed ? 'non-negative' : 'positive'} integer`);
  return value;
}

class NbdServerImpl implements ConnectionHost {
  readonly exportList: NbdExport[];
  readonly #byName: Map<string, NbdExport>;
  readonly maxQueuedBytes: number;
  readonly handshakeTimeoutMs: number;
  readonly lingerMs: number;
  readonly tls: SecureContext | undefined;
  readonly maxConnections: number;
  readonly stallTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly budget: ReplyBudget;
  readonly replyBuffers = new ReplyBuffers();
  readonly connections = new Set<Connection>();
  readonly counters = { refused: 0, stalled: 0, idle: 0 };
  readonly #log: ((line: string) => void) | undefined;
  readonly #lastLog = new Map<string, { atMs: number; skipped: number }>();
  readonly #sweeper: NodeJS.Timeout;

  constructor(exports: NbdExport[], options: NbdServerOptions) {
    const d = NBD_SERVER_DEFAULTS;
    this.exportList = exports;
    this.#byName = new Map(exports.map((e) => [e.name, e]));
    this.maxQueuedBytes = positiveInteger(options.maxQueuedBytes, d.maxQueuedBytes, 'maxQueuedBytes');
    this.budget = new ReplyBudget(
      positiveInteger(options.maxServerQueuedBytes, d.maxServerQueuedBytes, 'maxServerQueuedBytes'),
    );
    this.maxConnections = positiveInteger(options.maxConnections, d.maxConnections, 'maxConnections');
    this.stallTimeoutMs = positiveInteger(
      options.replyStallTimeoutMs,
      d.replyStallTimeoutMs,
      'replyStallTimeoutMs',
    );
    this.idleTimeoutMs = positiveInteger(options.idleTimeoutMs, d.idleTimeoutMs, 'idleTimeoutMs', true);
    this.handshakeTimeoutMs = positiveInteger(
      options.handshakeTimeoutMs,
      d.handshakeTimeoutMs,
      'handshakeTimeoutMs',
    );
    this.lingerMs = positiveInteger(options.closeTimeoutMs, d.closeTimeoutMs, 'closeTimeoutMs', true);
    this.#log = options.log;
    this.tls = options.tls === undefined ? undefined : tlsContext(options.tls);
    const shortest = Math.min(this.stallTimeoutMs, this.idleTimeoutMs || Number.POSITIVE_INFINITY);
    this.#sweeper = setInterval(() => this.#sweep(), Math.max(10, Math.floor(shortest / 4)));
    this.#sweeper.unref();
  }

  now(): number {
    return performance.now();
  }

  /** The export of a name; the empty name is the default export (the first drive). */
  find(name: string): NbdExport | undefined {
    if (name === '') return this.exportList[0];
    return this.#byName.get(name) ?? this.#byName.get(`${name}.img`);
  }

  accept(socket: Socket): void {
    if (this.connections.size >= this.maxConnections) {
      const from = socket.remoteAddress ?? 'a Unix socket';
      socket.on('error', () => {});
      socket.destroy();
      this.counters.refused++;
      this.#note(
        'refused',
        `nbd: ${this.maxConnections} connections open (maxConnections): refused one from ${from}`,
      );
      return;
    }
    const conn = new Connection(socket, this);
    this.connections.add(conn);
    void conn.done.then(() => this.connections.delete(conn));
  }

  /** Cuts connections whose client stopped reading replies, and idle ones when asked to. */
  #sweep(): void {
    const now = this.now();
    for (const c of this.connections) {
      if (c.stalledMs(now) > this.stallTimeoutMs) {
        c.destroy();
        this.counters.stalled++;
        this.#note(
          'stalled',
          `nbd: cut a connection whose client read no reply for ${this.stallTimeoutMs} ms`,
        );
      } else if (this.idleTimeoutMs > 0 && c.idleMs(now) > this.idleTimeoutMs) {
        c.stop();
        this.counters.idle++;
        this.#note('idle', `nbd: closed a connection idle for ${this.idleTimeoutMs} ms`);
      }
    }
  }

  /** Logs `line`, at most once per kind every 10 s, counting what was left out. */
  #note(kind: string, line: string): void {
    if (this.#log === undefined) return;
    const now = this.now();
    const last = this.#lastLog.get(kind);
    if (last !== undefined && now - last.atMs < LOG_INTERVAL_MS) {
      last.skipped++;
      return;
    }
    const more =
      last !== undefined && last.skipped > 0 ? ` (and ${last.skipped} more since the last such line)` : '';
    this.#lastLog.set(kind, { atMs: now, skipped: 0 });
    this.#log(line + more);
  }

  stats(): NbdServerStats {
    let inFlight = 0;
    let blockedConnections = 0;
    for (const c of this.connections) {
      inFlight += c.inFlight;
      if (c.blocked) blockedConnections++;
    }
    return {
      connections: this.connections.size,
      inFlight,
      queuedBytes: this.budget.usedBytes,
      blockedConnections,
      refusedConnections: this.counters.refused,
      stalledConnections: this.counters.stalled,
      idleConnections: this.counters.idle,
    };
  }

  stopSweeping(): void {
    clearInterval(this.#sweeper);
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
    } else if ('fd' in listen) {
      server.listen({ fd: listen.fd });
    } else {
      server.listen(listen.port ?? W.NBD_DEFAULT_PORT, listen.host ?? '127.0.0.1');
    }
    await Promise.race([
      once(server, 'listening'),
      once(server, 'error').then(([err]) => {
        throw err;
      }),
    ]);
  } catch (err) {
    impl.stopSweeping();
    throw new NbdError('ERR_LR_NBD_LISTEN', `cannot listen: ${(err as Error).message}`, { cause: err });
  }
  const addr = server.address();
  let closing: Promise<void> | undefined;
  return {
    address: typeof addr === 'string' ? addr : `${addr?.address ?? ''}:${addr?.port ?? ''}`,
    ...(addr !== null && typeof addr === 'object' ? { port: addr.port } : {}),
    exports: exports.map((e) => e.name),
    stats: () => impl.stats(),
    close() {
      closing ??= (async () => {
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
        const conns = [...impl.connections];
        for (const c of conns) c.stop();
        const all = Promise.all(conns.map((c) => c.done));
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          all,
          new Promise<void>((resolve) => (timer = setTimeout(resolve, impl.lingerMs))),
        ]);
        clearTimeout(timer);
        for (const c of conns) c.destroy();
        impl.stopSweeping();
        await stopped;
      })();
      return closing;
    },
  };
}
