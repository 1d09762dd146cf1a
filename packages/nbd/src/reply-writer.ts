/**
 * Everything a connection writes during transmission: simple and structured replies,
 * encoded by wire.ts, coalesced and corked into few socket writes, with their bytes
 * accounted. Each reply carries the bytes charged to the server's {@link ReplyBudget} for
 * its request; they are released by the write callback of the reply's last part (the
 * data reached the kernel) or when the connection closes, whichever comes first.
 */

import type { Socket } from 'node:net';
import type { ReadLease } from '@liverestore/reader';
import type { AllocationExtent } from './export.js';
import type { ReplyBudget } from './reply-budget.js';
import type { ReplyBuffers } from './reply-buffers.js';
import * as W from './wire.js';

/** Replies up to this size are copied into one buffer and written with one call. */
const COALESCE_REPLY_BYTES = 64 * 1024;

/** Charge of a reply without data: an error chunk with the longest message sent (1024 bytes). */
export const ERROR_REPLY_BYTES = W.STRUCTURED_REPLY_BYTES + 6 + 1024;

export class ReplyWriter {
  readonly #socket: Socket;
  readonly #buffers: ReplyBuffers;
  readonly #budget: ReplyBudget;
  readonly #structured: boolean;
  readonly #now: () => number;
  readonly #onRelease: () => void;
  #heldBytes = 0;
  #closed = false;
  /** When output last moved (a write callback), or began to wait (a write on an empty queue). */
  #progressMs: number;

  constructor(
    socket: Socket,
    buffers: ReplyBuffers,
    budget: ReplyBudget,
    structured: boolean,
    now: () => number,
    onRelease: () => void,
  ) {
    this.#socket = socket;
    this.#buffers = buffers;
    this.#budget = budget;
    this.#structured = structured;
    this.#now = now;
    this.#onRelease = onRelease;
    this.#progressMs = now();
  }

  /** Bytes charged for this connection's requests and not yet released. */
  get heldBytes(): number {
    return this.#heldBytes;
  }

  /** How long replies have waited for the client without any of them leaving; 0 if none wait. */
  stalledMs(now: number): number {
    return this.#socket.writableLength > 0 ? now - this.#progressMs : 0;
  }

  /** Records `bytes` the caller charged to the budget for a request whose reply this writer sends. */
  hold(bytes: number): void {
    this.#heldBytes += bytes;
  }

  #release(bytes: number): void {
    if (this.#closed) return;
    this.#heldBytes -= bytes;
    this.#budget.release(bytes);
    this.#onRelease();
  }

  /** The connection is over: what it still holds goes back to the budget; later releases are no-ops. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#budget.release(this.#heldBytes);
    this.#heldBytes = 0;
  }

  /**
   * Requests that have already arrived are handled synchronously, one after another, and
   * the replies they produce on the spot (cached reads) are corked into one socket write;
   * the batch is uncorked before every wait. So a burst of 16 cached 4 KiB reads costs one
   * `writev`, not 16 writes, and no promise per request.
   */
  cork(): void {
    if (this.#socket.writableCorked === 0) this.#socket.cork();
  }

  uncork(): void {
    while (this.#socket.writableCorked > 0) this.#socket.uncork();
  }

  /**
   * Writes one reply: a small one (header + data up to 64 KiB: the 4 KiB guest reads) as one
   * buffer, a larger one part by part rather than copied. `charged` is released, and `done`
   * called, when the last part has been written (or at once when the socket is gone).
   */
  #write(parts: Buffer[], charged: number, done?: (ok: boolean) => void): void {
    if (this.#socket.destroyed) {
      this.#release(charged);
      done?.(false);
      return;
    }
    let total = 0;
    for (const p of parts) total += p.byteLength;
    const out = parts.length > 1 && total <= COALESCE_REPLY_BYTES ? [Buffer.concat(parts, total)] : parts;
    if (this.#socket.writableLength === 0) this.#progressMs = this.#now();
    for (let k = 0; k < out.length - 1; k++) this.#socket.write(out[k]!);
    this.#socket.write(out[out.length - 1]!, (err) => {
      this.#progressMs = this.#now();
      this.#release(charged);
      done?.(err === undefined || err === null);
    });
  }

  /** A simple reply without data (write-like commands, and errors without structured replies). */
  simple(handle: bigint, error: number, charged: number): void {
    this.#write([W.encodeSimpleReply(handle, error)], charged);
  }

  /** An error reply: a structured chunk (with the message) for reads and block status when negotiated. */
  error(handle: bigint, error: number, message: string, structuredCommand: boolean, charged: number): void {
    if (!(this.#structured && structuredCommand)) {
      this.simple(handle, error, charged);
      return;
    }
    const payload = W.encodeErrorPayload(error, message);
    const header = W.encodeStructuredReplyHeader(
      handle,
      W.NBD_REPLY_FLAG_DONE,
      W.NBD_REPLY_TYPE_ERROR,
      payload.length,
    );
    this.#write([header, payload], charged);
  }

  /**
   * The successful reply of a read whose data is in `buffer` (from the server's reply
   * buffers): the buffer goes back to them once the socket no longer needs it.
   */
  read(handle: bigint, offset: number, buffer: Buffer, charged: number): void {
    this.#readReply(handle, offset, [buffer], buffer.length, charged, (ok) => {
      if (ok) this.#buffers.give(buffer);
    });
  }

  /**
   * The successful reply of a read whose data a lease lends (views on the cache's pages,
   * see ReadLease): written without a copy, and the lease released exactly once, when the
   * socket has taken the bytes, failed to, or was already gone.
   */
  readLease(handle: bigint, offset: number, lease: ReadLease, charged: number): void {
    this.#readReply(handle, offset, lease.views, lease.byteLength, charged, () => lease.release());
  }

  /** `done` runs once the data is no longer referenced (ok: it was written). */
  #readReply(
    handle: bigint,
    offset: number,
    data: readonly Buffer[],
    length: number,
    charged: number,
    done: (ok: boolean) => void,
  ): void {
    if (this.#structured && length === 0) {
      this.#write(
        [W.encodeStructuredReplyHeader(handle, W.NBD_REPLY_FLAG_DONE, W.NBD_REPLY_TYPE_NONE, 0)],
        charged,
      );
      done(true);
      return;
    }
    const head = this.#structured
      ? [
          W.encodeStructuredReplyHeader(
            handle,
            W.NBD_REPLY_FLAG_DONE,
            W.NBD_REPLY_TYPE_OFFSET_DATA,
            8 + length,
          ),
          W.encodeOffset(offset),
        ]
      : [W.encodeSimpleReply(handle, 0)];
    if (this.#socket.destroyed || length + 32 <= COALESCE_REPLY_BYTES) {
      this.#write([...head, ...data], charged); // copied into one write: the data is free at once
      done(true);
      return;
    }
    this.#write([...head, ...data], charged, done);
  }

  /** A block-status reply of `extents` in the `base:allocation` context. */
  blockStatus(handle: bigint, extents: readonly AllocationExtent[], charged: number): void {
    const payload = W.encodeBlockStatusPayload(
      W.BASE_ALLOCATION_ID,
      extents.map((e) => ({
        length: e.length,
        flags: (e.hole ? W.NBD_STATE_HOLE : 0) | (e.zero ? W.NBD_STATE_ZERO : 0),
      })),
    );
    const header = W.encodeStructuredReplyHeader(
      handle,
      W.NBD_REPLY_FLAG_DONE,
      W.NBD_REPLY_TYPE_BLOCK_STATUS,
      payload.length,
    );
    this.#write([header, payload], charged);
  }
}
