/**
 * The transmission phase of one connection: requests are read as they arrive, each is
 * checked by {@link validateRequest}, charged to the server's reply budget, then
 * dispatched; many are in flight at once and their replies leave in any order. A
 * connection stops reading requests while it has too much in flight or queued for its
 * client (`maxQueuedBytes`, {@link MAX_IN_FLIGHT}), and while the server-wide budget is
 * spent.
 */

import type { Socket } from 'node:net';
import type { ReadLease } from '@liverestore/reader';
import type { NbdExport } from './export.js';
import type { Session } from './handshake.js';
import { ConnectionClosed, type Input } from './input.js';
import type { ReplyBudget } from './reply-budget.js';
import type { ReplyBuffers } from './reply-buffers.js';
import { ERROR_REPLY_BYTES, ReplyWriter } from './reply-writer.js';
import { type RequestContext, repliesStructured, validateRequest } from './validate-request.js';
import * as W from './wire.js';

/** Requests in flight per connection, whatever their size (tiny requests still cost memory). */
export const MAX_IN_FLIGHT = 1024;
/** At most this many extents in one block-status reply. */
const MAX_EXTENTS = 65536;

/** What a connection's transmission shares with the server. */
export interface TransmissionHost {
  readonly maxQueuedBytes: number;
  readonly budget: ReplyBudget;
  readonly replyBuffers: ReplyBuffers;
  now(): number;
}

/** Upper bound of the bytes a valid request pins until its reply is written. */
function replyCharge(r: W.RequestHeader): number {
  switch (r.type) {
    case W.NBD_CMD_READ:
      return Math.max(r.length + W.STRUCTURED_REPLY_BYTES + 8, ERROR_REPLY_BYTES);
    case W.NBD_CMD_WRITE:
      return r.length + W.SIMPLE_REPLY_BYTES;
    case W.NBD_CMD_BLOCK_STATUS: {
      const extents = (r.flags & W.NBD_CMD_FLAG_REQ_ONE) !== 0 ? 1 : MAX_EXTENTS;
      return Math.max(W.STRUCTURED_REPLY_BYTES + 4 + 8 * extents, ERROR_REPLY_BYTES);
    }
    default:
      return W.SIMPLE_REPLY_BYTES;
  }
}

/** The NBD error for an exception: its `code` when NBD has one (ENOSPC, EPERM…), else EIO. */
function nbdErrno(err: unknown): number {
  switch ((err as { code?: unknown } | undefined)?.code) {
    case 'ENOSPC':
    case 'EDQUOT':
      return W.NBD_ENOSPC;
    case 'EPERM':
    case 'EACCES':
    case 'EROFS':
      return W.NBD_EPERM;
    case 'EINVAL':
      return W.NBD_EINVAL;
    case 'ENOMEM':
      return W.NBD_ENOMEM;
    default:
      return W.NBD_EIO;
  }
}

export class Transmission {
  readonly #socket: Socket;
  readonly #input: Input;
  readonly #host: TransmissionHost;
  readonly #export: NbdExport;
  readonly #context: RequestContext;
  readonly #writer: ReplyWriter;
  /** Aborts when the connection closes: pending reads stop, a budget wait gives up. */
  readonly #closed: AbortSignal;
  readonly #stop = new AbortController();
  #inFlight = 0;
  #blocked = false;
  #wake: (() => void) | undefined;
  /** When the last request arrived or the last reply left. */
  #activityMs: number;

  constructor(socket: Socket, input: Input, session: Session, host: TransmissionHost, closed: AbortSignal) {
    this.#socket = socket;
    this.#input = input;
    this.#host = host;
    this.#export = session.export;
    this.#closed = closed;
    this.#context = {
      exportSize: session.export.size,
      writable: session.export.writer !== undefined,
      structured: session.structured,
      baseAllocation: session.baseAllocation,
    };
    this.#writer = new ReplyWriter(
      socket,
      host.replyBuffers,
      host.budget,
      session.structured,
      host.now,
      () => {
        this.#activityMs = host.now();
        this.#wakeUp();
      },
    );
    this.#activityMs = host.now();
    socket.on('drain', () => this.#wakeUp());
    socket.on('close', () => {
      this.#writer.close();
      this.#wakeUp();
    });
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  /** Reply bytes owed or queued to this client (charged to the budget, not yet written). */
  get queuedBytes(): number {
    return this.#writer.heldBytes;
  }

  /** True while the connection does not read requests: its own bound or the server budget is reached. */
  get blocked(): boolean {
    return this.#blocked;
  }

  /** How long replies have waited for a client that does not read them (0: none wait). */
  stalledMs(now: number): number {
    return this.#writer.stalledMs(now);
  }

  /** How long nothing has happened: no request in flight, no reply waiting (0 otherwise). */
  idleMs(now: number): number {
    if (this.#inFlight > 0 || this.#socket.writableLength > 0) return 0;
    return now - this.#activityMs;
  }

  /** No new requests; the loop ends once in-flight ones are answered. */
  stop(): void {
    this.#stop.abort();
    this.#wakeUp();
  }

  #wakeUp(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  #stopping(): boolean {
    return this.#stop.signal.aborted || this.#socket.destroyed;
  }

  #hasCapacity(): boolean {
    return (
      this.#socket.destroyed ||
      (this.#inFlight < MAX_IN_FLIGHT && this.#writer.heldBytes <= this.#host.maxQueuedBytes)
    );
  }

  /** Waits until `condition` holds, or the connection stops (or only closes, with `evenIfStopped`). */
  async #until(condition: () => boolean, evenIfStopped = false): Promise<void> {
    while (!condition() && !(evenIfStopped ? this.#socket.destroyed : this.#stopping())) {
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
      });
    }
  }

  /** Charges `bytes` to the server budget, waiting for room; false if the connection stops first. */
  async #charge(bytes: number): Promise<boolean> {
    if (!this.#host.budget.tryAcquire(bytes)) {
      this.#writer.uncork();
      this.#blocked = true;
      const granted = await this.#host.budget.acquire(
        bytes,
        AbortSignal.any([this.#closed, this.#stop.signal]),
      );
      this.#blocked = false;
      if (!granted) return false;
    }
    this.#writer.hold(bytes);
    return true;
  }

  /** Reads, checks and dispatches requests until NBD_CMD_DISC, a broken stream or stop(). */
  async run(): Promise<void> {
    try {
      for (;;) {
        if (!this.#hasCapacity()) {
          this.#writer.uncork();
          this.#blocked = true;
          await this.#until(() => this.#hasCapacity());
          this.#blocked = false;
        }
        if (this.#stopping()) break;
        // Not awaited unless needed: a request already buffered must not cost a microtask.
        let header = this.#input.tryRead(W.REQUEST_HEADER_BYTES);
        if (header === undefined) {
          this.#writer.uncork();
          try {
            header = await this.#input.read(W.REQUEST_HEADER_BYTES);
          } catch (err) {
            if (err instanceof ConnectionClosed && this.#stop.signal.aborted) break;
            throw err;
          }
        }
        const request = W.decodeRequestHeader(header);
        if (request === undefined) break; // out of sync: end the connection
        this.#activityMs = this.#host.now();
        if (request.type === W.NBD_CMD_DISC) {
          this.#writer.uncork();
          break;
        }
        const refusal = validateRequest(request, this.#context);
        if (refusal?.fatal === true) return;
        const charge = refusal === undefined ? replyCharge(request) : ERROR_REPLY_BYTES;
        if (!(await this.#charge(charge))) break;
        this.#writer.cork();
        if (refusal !== undefined) {
          // A refused write's payload follows its header; it is consumed to stay in sync.
          if (request.type === W.NBD_CMD_WRITE) {
            this.#writer.uncork();
            await this.#input.skip(request.length);
          }
          this.#writer.error(
            request.handle,
            refusal.errno,
            refusal.message,
            repliesStructured(request.type),
            charge,
          );
          continue;
        }
        await this.#dispatch(request, charge);
      }
    } finally {
      this.#writer.uncork();
    }
    await this.#until(() => this.#inFlight === 0, true);
  }

  async #dispatch(r: W.RequestHeader, charge: number): Promise<void> {
    const writer = this.#export.writer;
    const fua = (r.flags & W.NBD_CMD_FLAG_FUA) !== 0;
    switch (r.type) {
      case W.NBD_CMD_READ:
        this.#read(r, charge);
        return;
      case W.NBD_CMD_WRITE: {
        const data = this.#input.tryRead(r.length) ?? (await this.#nextPayload(r.length));
        this.#update(r, charge, () => writer!.write(data, r.offset, fua));
        return;
      }
      case W.NBD_CMD_WRITE_ZEROES: {
        const noHole = (r.flags & W.NBD_CMD_FLAG_NO_HOLE) !== 0;
        this.#update(r, charge, () => writer!.writeZeroes(r.offset, r.length, fua, noHole));
        return;
      }
      case W.NBD_CMD_TRIM:
        this.#update(r, charge, () => writer!.trim(r.offset, r.length, fua));
        return;
      case W.NBD_CMD_FLUSH:
        if (writer === undefined) this.#writer.simple(r.handle, 0, charge);
        else this.#update(r, charge, () => writer.flush());
        return;
      case W.NBD_CMD_BLOCK_STATUS: {
        const maxExtents = (r.flags & W.NBD_CMD_FLAG_REQ_ONE) !== 0 ? 1 : MAX_EXTENTS;
        this.#writer.blockStatus(r.handle, this.#export.blockStatus(r.offset, r.length, maxExtents), charge);
        return;
      }
    }
  }

  /** A write's payload, after uncorking: waiting must not hold replies back. */
  #nextPayload(n: number): Promise<Buffer> {
    this.#writer.uncork();
    return this.#input.read(n);
  }

  #read(r: W.RequestHeader, charge: number): void {
    const exp = this.#export;
    if (exp.lease !== undefined) {
      const lease = exp.tryLeaseSync?.(r.offset, r.length, this.#host.replyBuffers);
      if (lease !== undefined) {
        this.#replyLease(r, charge, lease);
        return;
      }
      this.#inFlight++;
      exp
        .lease(r.offset, r.length, this.#closed, this.#host.replyBuffers)
        .then(
          (leased) => this.#replyLease(r, charge, leased),
          (err: unknown) => this.#readFailed(r, charge, err),
        )
        .finally(() => this.#settled());
      return;
    }
    const buffers = this.#host.replyBuffers;
    const buffer = buffers.take(r.length);
    if (this.#export.tryReadSync?.(buffer, r.offset) === true) {
      this.#writer.read(r.handle, r.offset, buffer, charge);
      return;
    }
    this.#inFlight++;
    this.#export
      .read(buffer, r.offset, this.#closed)
      .then(
        () => this.#writer.read(r.handle, r.offset, buffer, charge),
        // The buffer is not returned to the pool: an aborted read may still be filling it.
        (err: unknown) => this.#readFailed(r, charge, err),
      )
      .finally(() => this.#settled());
  }

  #readFailed(r: W.RequestHeader, charge: number, err: unknown): void {
    const code = (err as { code?: unknown }).code;
    this.#writer.error(r.handle, nbdErrno(err), `read failed: ${String(code ?? 'EIO')}`, true, charge);
  }

  /**
   * Replies from a lease. The request's charge covers a reply buffer of its length; a lease
   * may hold more (a 64 KiB view pins its whole 4 MiB chunk), and that too is charged,
   * to this connection's bound and the server's budget, until the socket has taken the
   * reply. When it does not fit, the bytes are copied into a reply buffer and the lease
   * released at once: so pinned cache memory stays within both bounds.
   */
  #replyLease(r: W.RequestHeader, charge: number, lease: ReadLease): void {
    const extra = lease.heldBytes - r.length;
    if (extra <= 0) {
      this.#writer.readLease(r.handle, r.offset, lease, charge);
      return;
    }
    if (this.#writer.heldBytes + extra <= this.#host.maxQueuedBytes && this.#host.budget.tryAcquire(extra)) {
      this.#writer.hold(extra);
      this.#writer.readLease(r.handle, r.offset, lease, charge + extra);
      return;
    }
    const buffer = this.#host.replyBuffers.take(r.length);
    try {
      let at = 0;
      for (const view of lease.views) at += view.copy(buffer, at);
    } finally {
      lease.release();
    }
    this.#writer.read(r.handle, r.offset, buffer, charge);
  }

  /** Runs a write, zeroing, trim or flush; replies 0 or its NBD error when it settles. */
  #update(r: W.RequestHeader, charge: number, run: () => Promise<void>): void {
    this.#inFlight++;
    run()
      .then(
        () => this.#writer.simple(r.handle, 0, charge),
        (err: unknown) => this.#writer.simple(r.handle, nbdErrno(err), charge),
      )
      .finally(() => this.#settled());
  }

  #settled(): void {
    this.#inFlight--;
    this.#activityMs = this.#host.now();
    this.#wakeUp();
  }
}
