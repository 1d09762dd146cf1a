/**
 * Injected network conditions without netem: a user-space TCP proxy on 127.0.0.1 that
 * forwards every connection to one upstream and, per direction, caps the bandwidth
 * with a token bucket and adds half the round-trip time as latency.
 *
 * Each direction is one {@link Link} shared by all connections (one wire to the backup
 * server). The wire sends one slice (≤ 16 KiB) at a time at the capped rate, taking
 * slices from the connections with data waiting in round robin — per-flow fair
 * queueing, as Linux's default qdisc (fq_codel) does, so one busy connection does not
 * queue every other one behind megabytes of its data. A slice arrives `rtt / 2` after
 * it has been sent. Slices leave the wire in order, so one delay line per link keeps
 * the byte order of every connection. Data is delayed by scheduling, never by sleeping:
 * a 1 ms ticker (running while connections are open) sends and delivers what is due,
 * so single delays are quantised to the tick; a slice is delivered at the first tick no
 * earlier than half a tick before it is due, which keeps the *mean* delay at the
 * configured value (the benchmark measures and reports the real round trip).
 *
 * Flow control stays end to end: a connection whose bytes in flight in one direction
 * pass {@link HIGH_WATER} pauses its sender until they drop under {@link LOW_WATER}.
 */

import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';

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
const HIGH_WATER = 2 * 1024 * 1024;
const LOW_WATER = 512 * 1024;
const DEFAULT_BURST_BYTES = 64 * 1024;
/** Largest slice the wire sends from one connection before serving the next. */
const SLICE_BYTES = 16 * 1024;

interface Piece {
  readonly due: number;
  readonly pipe: Pipe;
  /** Data, or null for the sender's end of stream. */
  readonly data: Buffer | null;
}

/** One direction of the wire: token bucket, round robin over connections, fixed delay. */
class Link {
  readonly #delayMs: number;
  readonly #bytesPerMs: number;
  readonly #burstMs: number;
  /** Virtual time at which the wire has sent everything handed to it (tokens owed until then). */
  #busyUntil = 0;
  /** Connections with data not yet sent, served in round robin. */
  readonly #active: Pipe[] = [];
  #next = 0;
  /** Sent slices waiting out the delay, in order of arrival time. */
  readonly #line: Piece[] = [];
  #head = 0;

  constructor(conditions: LinkConditions) {
    this.#delayMs = conditions.rttMs / 2;
    this.#bytesPerMs = conditions.bitsPerSecond > 0 ? conditions.bitsPerSecond / 8 / 1000 : 0;
    this.#burstMs =
      this.#bytesPerMs > 0 ? (conditions.burstBytes ?? DEFAULT_BURST_BYTES) / this.#bytesPerMs : 0;
  }

  /** `pipe` has new data (or its end) waiting: take it into the round robin. */
  wake(pipe: Pipe, now: number): void {
    // An idle wire has collected tokens, up to the bucket size. A busy one keeps its
    // virtual clock even when a tick comes late (a busy machine), so no capacity is lost.
    if (this.#active.length === 0) this.#busyUntil = Math.max(this.#busyUntil, now - this.#burstMs);
    if (!pipe.active) {
      pipe.active = true;
      this.#active.push(pipe);
    }
    this.run(now, 0);
  }

  /**
   * Sends what the wire can have sent by `now`, then delivers what has arrived by
   * `now + slack` (half a tick on ticks, none when called on new data).
   */
  run(now: number, slack: number): void {
    if (this.#active.length > 0) {
      if (this.#bytesPerMs === 0) {
        for (const pipe of this.#active) {
          for (let data = pipe.takeSlice(Number.MAX_SAFE_INTEGER); data !== undefined; ) {
            this.#line.push({ due: now + this.#delayMs, pipe, data });
            data = pipe.takeSlice(Number.MAX_SAFE_INTEGER);
          }
          pipe.active = false;
        }
        this.#active.length = 0;
      } else {
        while (this.#active.length > 0 && this.#busyUntil <= now) {
          if (this.#next >= this.#active.length) this.#next = 0;
          const pipe = this.#active[this.#next]!;
          const data = pipe.takeSlice(SLICE_BYTES);
          if (data === undefined) {
            pipe.active = false;
            this.#active.splice(this.#next, 1);
            continue;
          }
          this.#busyUntil += (data?.length ?? 0) / this.#bytesPerMs;
          this.#line.push({ due: Math.max(now, this.#busyUntil) + this.#delayMs, pipe, data });
          this.#next++;
        }
      }
    }
    const line = this.#line;
    while (this.#head < line.length && line[this.#head]!.due <= now + slack) {
      const piece = line[this.#head]!;
      line[this.#head++] = undefined as unknown as Piece;
      piece.pipe.deliver(piece.data);
    }
    if (this.#head > 1024 && this.#head * 2 > line.length) {
      line.splice(0, this.#head);
      this.#head = 0;
    }
  }
}

/** One direction of one connection: from `source` to `target` over `link`. */
class Pipe {
  /** Bytes received from the source and not yet written to the target. */
  queued = 0;
  /** In the link's round robin. */
  active = false;
  /** Data not yet sent on the wire; null marks the source's end. */
  readonly #waiting: (Buffer | null)[] = [];

  constructor(
    readonly source: Socket,
    readonly target: Socket,
    readonly link: Link,
  ) {
    source.on('data', (data: Buffer) => {
      this.queued += data.length;
      this.#waiting.push(data);
      this.link.wake(this, performance.now());
      if (this.queued + this.target.writableLength > HIGH_WATER) this.source.pause();
    });
    source.on('end', () => {
      this.#waiting.push(null);
      this.link.wake(this, performance.now());
    });
    target.on('drain', () => this.#maybeResume());
  }

  /** The next slice to send (at most `max` bytes), null for the end, undefined when nothing waits. */
  takeSlice(max: number): Buffer | null | undefined {
    if (this.#waiting.length === 0) return undefined;
    const head = this.#waiting[0]!;
    if (head === null || head.length <= max) {
      this.#waiting.shift();
      return head;
    }
    this.#waiting[0] = head.subarray(max);
    return head.subarray(0, max);
  }

  deliver(data: Buffer | null): void {
    if (this.target.destroyed) {
      // The receiver is gone: a real one answers the next segment with a reset, and the
      // sender stops. Whatever this connection still had queued never takes the wire.
      this.#waiting.length = 0;
      this.source.destroy();
      return;
    }
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
    up.run(now, TICK_MS / 2);
    down.run(now, TICK_MS / 2);
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
      await sleep(1 + Math.random() * 3);
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
