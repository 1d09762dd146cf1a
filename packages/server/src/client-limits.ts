import type { ServerResponse } from 'node:http';

/*
 * Two guards against clients that hold the server's request slots without using them,
 * found by a probe: 260 connections trickling an image download at 512 bytes per 3 s
 * made every other client get 503 for 45 s. The request limit was per server, so one
 * address could take it all, and the idle timeout never fired because bytes did move.
 */

/**
 * Requests in progress per client address: each address may hold at most `maxPerClient`
 * of the server's slots, so one client (or one host opening many connections) cannot
 * lock the others out. Behind a reverse proxy every request has the proxy's address:
 * raise the share to the server-wide limit there.
 */
export class ClientShares {
  readonly #counts = new Map<string, number>();

  constructor(readonly maxPerClient: number) {}

  /** Takes a slot for `address`; false (nothing taken) when it already holds its share. */
  tryTake(address: string): boolean {
    const held = this.#counts.get(address) ?? 0;
    if (held >= this.maxPerClient) return false;
    this.#counts.set(address, held + 1);
    return true;
  }

  /** Gives back a slot taken with {@link tryTake}. */
  give(address: string): void {
    const held = this.#counts.get(address) ?? 0;
    if (held <= 1) this.#counts.delete(address);
    else this.#counts.set(address, held - 1);
  }

  /** Addresses holding at least one slot now (for tests and diagnostics). */
  get clients(): number {
    return this.#counts.size;
  }
}

/** The parts of a socket {@link bytesTakenByKernel} reads (Node internals, checked before use). */
interface SocketCounters {
  readonly bytesWritten: number;
  readonly writableLength: number;
  readonly _bytesDispatched?: unknown;
  readonly _handle?: { readonly writeQueueSize?: unknown } | null;
  /** True on a TLS socket. */
  readonly encrypted?: unknown;
}

/**
 * Bytes of `socket` the kernel has taken so far: what moves only as fast as the client
 * reads. Counting completed writes instead is too coarse: a file body goes out in 1 MiB
 * writes, so a client reading 20 KiB/s completes one every 51 s and would look stalled
 * in a 30 s window. libuv's write queue shrinks as the kernel takes each part of a write,
 * so dispatched bytes minus that queue moves byte by byte. Where those counters are not
 * there (a TLS socket's handle, say), completed writes are the measure.
 */
export function bytesTakenByKernel(socket: SocketCounters): number {
  if (!isCoarse(socket))
    return (socket._bytesDispatched as number) - (socket._handle!.writeQueueSize as number);
  return socket.bytesWritten - socket.writableLength;
}

/**
 * True when {@link bytesTakenByKernel} can only count completed writes: without the libuv
 * counters, and on TLS, whose write queue stays full until a whole write is encrypted and
 * taken (measured on Node 20: an 8 MiB write read at 160 KiB/s kept its queue size).
 */
function isCoarse(socket: SocketCounters): boolean {
  return (
    socket.encrypted === true ||
    typeof socket._bytesDispatched !== 'number' ||
    typeof socket._handle?.writeQueueSize !== 'number'
  );
}

/**
 * The window a rate check of `socket` must span: `windowMs`, or where only whole writes
 * of up to `writeBytes` can be counted, long enough for one of them at the minimum rate
 * (else a client just above the minimum would look stalled between two writes).
 */
export function rateWindowMs(
  socket: SocketCounters,
  windowMs: number,
  minBytesPerSecond: number,
  writeBytes: number,
): number {
  if (!isCoarse(socket)) return windowMs;
  return Math.min(2 ** 31 - 1, Math.max(windowMs, Math.ceil((writeBytes * 1000) / minBytesPerSecond)));
}

/**
 * Cuts a response that moves slower than `minBytesPerSecond`, measured over each
 * `windowMs` while its body is being sent, as bytes the kernel took from its socket (see
 * {@link bytesTakenByKernel}; they stop when the client stops reading). Where only whole
 * writes of up to `writeBytes` can be counted (TLS), the window is stretched to fit one at
 * the minimum rate (see {@link rateWindowMs}). `onSlow` runs
 * once and must end the response; a response that ends first is no longer watched. A
 * rate of 0 turns the guard off.
 */
export function enforceMinTransferRate(
  res: ServerResponse,
  minBytesPerSecond: number,
  requestedWindowMs: number,
  writeBytes: number,
  onSlow: () => void,
  timers: IntervalTimers = NODE_TIMERS,
): void {
  const socket = res.socket;
  if (minBytesPerSecond <= 0 || res.destroyed || socket === null) return;
  const counters = socket as unknown as SocketCounters;
  const bytesSent = (): number => bytesTakenByKernel(counters);
  const windowMs = rateWindowMs(counters, requestedWindowMs, minBytesPerSecond, writeBytes);
  const minBytes = (minBytesPerSecond * windowMs) / 1000;
  let before = bytesSent();
  const timer = timers.setInterval(() => {
    const now = bytesSent();
    // Nothing is waiting for the client: the server itself was slow to produce the body
    // (a cache miss, a decode on a busy machine). That says nothing about the client.
    if (now - before < minBytes && bytesWaiting(counters) > 0) {
      timers.clearInterval(timer);
      onSlow();
      return;
    }
    before = now;
  }, windowMs);
  timer.unref();
  res.once('close', () => timers.clearInterval(timer));
}

/** A repeating timer as {@link enforceMinTransferRate} needs it. */
export interface IntervalTimer {
  unref(): void;
}

/** The interval timers {@link enforceMinTransferRate} uses (injected by tests). */
export interface IntervalTimers {
  setInterval(callback: () => void, ms: number): IntervalTimer;
  clearInterval(timer: IntervalTimer): void;
}

const NODE_TIMERS: IntervalTimers = {
  setInterval: (callback, ms) => setInterval(callback, ms),
  clearInterval: (timer) => clearInterval(timer as NodeJS.Timeout),
};

/** Bytes written to the socket that the kernel has not taken yet (what the client has not read). */
function bytesWaiting(socket: SocketCounters): number {
  const queued = socket._handle?.writeQueueSize;
  return socket.writableLength + (typeof queued === 'number' ? queued : 0);
}
