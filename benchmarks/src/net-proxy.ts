/**
 * Injected network conditions without netem: a user-space TCP proxy on 127.0.0.1 that
 * forwards every connection to one upstream and, per direction, caps the bandwidth
 * with a token bucket and adds half the round-trip time as latency.
 *
 * Each direction is one {@link Link} shared by all connections (one wire to the backup
 * server, as in a data centre): a piece of data leaves the sender's side once the
 * bucket has tokens for it, and is delivered `rtt / 2` later. Departure times grow
 * monotonically on a link, so one FIFO per link keeps the byte order of every
 * connection. Data is delayed by scheduling, never by sleeping: a 1 ms ticker (running
 * while connections are open) delivers everything that is due, so the delay of one
 * piece is quantised to the tick; pieces are delivered at the first tick no earlier
 * than half a tick before they are due, which keeps the *mean* delay at the configured
 * value (the benchmark measures and reports the real round trip through the proxy).
 *
 * Flow control stays end to end: a connection whose queued bytes in one direction pass
 * {@link HIGH_WATER} pauses its sender until they drop under {@link LOW_WATER}.
 */

import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';
import { performance } from 'node:perf_hooks';

/** Network conditions of the proxy. */
export interface LinkConditions {
  /** Round-trip time added, in milliseconds: half per direction. */
  readonly rttMs: number;
  /** Bandwidth per direction in bits per second; 0 = unlimited. */
  readonly bitsPerSecond: number;
  /** Bytes the bucket may hold (a burst at line rate). Default 64 KiB. */
  readonly burstBytes?: number;
}

const TICK_MS = 1;
const HIGH_WATER = 4 * 1024 * 1024;
const LOW_WATER = 1024 * 1024;
const DEFAULT_BURST_BYTES = 64 * 1024;

interface Piece {
  readonly due: number;
  readonly pipe: Pipe;
  /** Data, or null for the sender's end of stream. */
  readonly data: Buffer | null;
}

/** One direction of the wire: token bucket plus a fixed delay, shared by all connections. */
class Link {
  readonly #delayMs: number;
  readonly #bytesPerMs: number;
  readonly #burstMs: number;
  /** Virtual time at which the bucket is empty again (tokens owed until then). */
  #nextFree = 0;
  readonly queue: Piece[] = [];
  #head = 0;
  bytes = 0;

  constructor(conditions: LinkConditions) {
    this.#delayMs = conditions.rttMs / 2;
    this.#bytesPerMs = conditions.bitsPerSecond > 0 ? conditions.bitsPerSecond / 8 / 1000 : 0;
    this.#burstMs =
      this.#bytesPerMs > 0 ? (conditions.burstBytes ?? DEFAULT_BURST_BYTES) / this.#bytesPerMs : 0;
  }

  /** When `length` bytes sent now arrive at the other end. */
  schedule(length: number, now: number): number {
    let departs = now;
    if (this.#bytesPerMs > 0) {
      this.#nextFree = Math.max(now - this.#burstMs, this.#nextFree) + length / this.#bytesPerMs;
      departs = Math.max(now, this.#nextFree);
    }
    return departs + this.#delayMs;
  }

  push(piece: Piece, now: number): void {
    if (this.#head === this.queue.length && piece.due <= now) {
      piece.pipe.deliver(piece.data);
      return;
    }
    this.queue.push(piece);
    if (piece.data !== null) this.bytes += piece.data.length;
  }

  /** Delivers every piece due by `now` (+ half a tick, see the module comment). */
  deliver(now: number): void {
    const q = this.queue;
    while (this.#head < q.length && q[this.#head]!.due <= now + TICK_MS / 2) {
      const piece = q[this.#head]!;
      q[this.#head++] = undefined as unknown as Piece;
      if (piece.data !== null) this.bytes -= piece.data.length;
      piece.pipe.deliver(piece.data);
    }
    if (this.#head > 1024 && this.#head * 2 > q.length) {
      q.splice(0, this.#head);
      this.#head = 0;
    }
  }
}

/** One direction of one connection: from `source` to `target` over `link`. */
class Pipe {
  queued = 0;

  constructor(
    readonly source: Socket,
    readonly target: Socket,
    readonly link: Link,
  ) {
    source.on('data', (data: Buffer) => {
      const now = performance.now();
      this.queued += data.length;
      this.link.push({ due: this.link.schedule(data.length, now), pipe: this, data }, now);
      if (this.queued + this.target.writableLength > HIGH_WATER) this.source.pause();
    });
    source.on('end', () => {
      const now = performance.now();
      this.link.push({ due: this.link.schedule(0, now), pipe: this, data: null }, now);
    });
    target.on('drain', () => this.#maybeResume());
  }

  deliver(data: Buffer | null): void {
    if (this.target.destroyed) return;
    if (data === null) {
      this.target.end();
      return;
    }
    this.queued -= data.length;
    this.target.write(data);
    this.#maybeResume();
  }

  #maybeResume(): void {
    if (this.source.isPaused() && this.queued + this.target.writableLength < LOW_WATER) this.source.resume();
  }
}

/** A running proxy. */
export interface ShapedProxy {
  /** `127.0.0.1:PORT`. */
  readonly address: string;
  readonly port: number;
  close(): Promise<void>;
}

/**
 * Listens on 127.0.0.1 (ephemeral port unless `port` is given) and forwards every
 * connection to `upstream` through the shaped links.
 */
export async function startShapedProxy(options: {
  upstream: { host: string; port: number };
  conditions: LinkConditions;
  port?: number;
}): Promise<ShapedProxy> {
  const { conditions } = options;
  if (!(conditions.rttMs >= 0) || !(conditions.bitsPerSecond >= 0))
    throw new RangeError('rttMs and bitsPerSecond must be non-negative numbers');
  const up = new Link(conditions);
  const down = new Link(conditions);
  const sockets = new Set<Socket>();
  let ticker: NodeJS.Timeout | undefined;
  const tick = (): void => {
    const now = performance.now();
    up.deliver(now);
    down.deliver(now);
  };
  const server: Server = createServer((client) => {
    const upstream = tcpConnect(options.upstream);
    for (const s of [client, upstream]) {
      s.setNoDelay(true);
      sockets.add(s);
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
      s.on('close', (hadError) => {
        sockets.delete(s);
        // A clean close travels as an end-of-stream piece behind the data; an abort does not wait.
        if (hadError) {
          client.destroy();
          upstream.destroy();
        }
        if (sockets.size === 0 && ticker !== undefined) {
          clearInterval(ticker);
          ticker = undefined;
        }
      });
    }
    new Pipe(client, upstream, up);
    new Pipe(upstream, client, down);
    // Always ticking while connections are open: a piece sent after a quiet spell
    // meets a tick at a random phase, not one started just for it.
    ticker ??= setInterval(tick, TICK_MS);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  return {
    address: `127.0.0.1:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        if (ticker !== undefined) clearInterval(ticker);
        server.close(() => resolve());
      }),
  };
}

/** A TCP echo server on 127.0.0.1 (the far end of a round-trip measurement). */
export async function startEchoServer(): Promise<{ readonly port: number; close(): Promise<void> }> {
  const echo = createServer((s) => {
    s.setNoDelay(true);
    s.on('error', () => {});
    s.pipe(s);
  });
  await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', () => resolve()));
  return {
    port: (echo.address() as { port: number }).port,
    close: () => new Promise<void>((resolve) => echo.close(() => resolve())),
  };
}

/**
 * Round trips of `bytes` through a proxy on `port` whose upstream is an echo server:
 * what the injected latency really is once timer resolution and scheduling are counted.
 * The proxy should run in another process, so its ticker's phase is independent of the
 * pings (as with real traffic). Returns the round-trip times in milliseconds.
 */
export async function measureRoundTrips(port: number, count = 200, bytes = 64): Promise<number[]> {
  const socket = tcpConnect({ host: '127.0.0.1', port });
  socket.setNoDelay(true);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const times: number[] = [];
  try {
    const payload = Buffer.alloc(bytes, 0x5a);
    for (let i = 0; i < count; i++) {
      await new Promise((r) => setTimeout(r, 1 + Math.random() * 3));
      const t0 = performance.now();
      let got = 0;
      await new Promise<void>((resolve) => {
        const onData = (d: Buffer): void => {
          got += d.length;
          if (got >= bytes) {
            socket.off('data', onData);
            resolve();
          }
        };
        socket.on('data', onData);
        socket.write(payload);
      });
      times.push(performance.now() - t0);
    }
  } finally {
    socket.destroy();
  }
  return times;
}
