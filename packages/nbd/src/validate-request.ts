/**
 * The one check every request passes before it is dispatched (as nbdkit's
 * `validate_request`): known command, no flag the command may not carry, writes refused on
 * a read-only export, size limits, the range within the export, block status only with a
 * negotiated context. Handlers may then trust their request.
 */

import * as W from './wire.js';

/** What the request is checked against: the export and what the handshake negotiated. */
export interface RequestContext {
  readonly exportSize: number;
  /** The export has a writer; NBD_FLAG_SEND_FUA/TRIM/WRITE_ZEROES were advertised. */
  readonly writable: boolean;
  readonly structured: boolean;
  /** `base:allocation` was negotiated for the export. */
  readonly baseAllocation: boolean;
}

/** Why a request is refused: the NBD errno to reply, a message, and whether the connection must end. */
export interface RequestRefusal {
  readonly errno: number;
  readonly message: string;
  /**
   * The connection cannot stay in sync (a write payload over 32 MiB is not skipped: its
   * length alone says the client is broken), so it is closed instead of answered.
   */
  readonly fatal?: true;
}

const KNOWN_COMMANDS = new Set([
  W.NBD_CMD_READ,
  W.NBD_CMD_WRITE,
  W.NBD_CMD_DISC,
  W.NBD_CMD_FLUSH,
  W.NBD_CMD_TRIM,
  W.NBD_CMD_WRITE_ZEROES,
  W.NBD_CMD_BLOCK_STATUS,
]);

const WRITE_COMMANDS = new Set([W.NBD_CMD_WRITE, W.NBD_CMD_TRIM, W.NBD_CMD_WRITE_ZEROES]);

/**
 * The flags a command may carry on this export. FUA is valid on every command once
 * SEND_FUA is advertised (writable exports); NO_HOLE only on WRITE_ZEROES; REQ_ONE only on
 * BLOCK_STATUS. DF and FAST_ZERO are never allowed: SEND_DF and SEND_FAST_ZERO are not
 * advertised.
 */
function allowedFlags(type: number, ctx: RequestContext): number {
  let allowed = ctx.writable ? W.NBD_CMD_FLAG_FUA : 0;
  if (type === W.NBD_CMD_WRITE_ZEROES) allowed |= W.NBD_CMD_FLAG_NO_HOLE;
  if (type === W.NBD_CMD_BLOCK_STATUS) allowed |= W.NBD_CMD_FLAG_REQ_ONE;
  return allowed;
}

function refuse(errno: number, message: string): RequestRefusal {
  return { errno, message };
}

/** Undefined when the request may be dispatched; otherwise why not. NBD_CMD_DISC always passes. */
export function validateRequest(r: W.RequestHeader, ctx: RequestContext): RequestRefusal | undefined {
  if (!KNOWN_COMMANDS.has(r.type)) return refuse(W.NBD_EINVAL, `unknown command ${r.type}`);
  if (r.type === W.NBD_CMD_DISC) return undefined;
  if (r.type === W.NBD_CMD_WRITE && r.length > W.MAX_REQUEST_BYTES)
    return { errno: W.NBD_EINVAL, message: `write of ${r.length} bytes exceeds 32 MiB`, fatal: true };
  if (WRITE_COMMANDS.has(r.type) && !ctx.writable) return refuse(W.NBD_EPERM, 'the export is read-only');
  const badFlags = r.flags & ~allowedFlags(r.type, ctx);
  if (badFlags !== 0) return refuse(W.NBD_EINVAL, `flags 0x${badFlags.toString(16)} are not valid here`);
  switch (r.type) {
    case W.NBD_CMD_READ:
      if (r.length > W.MAX_REQUEST_BYTES)
        return refuse(W.NBD_EOVERFLOW, `read of ${r.length} bytes exceeds 32 MiB`);
      break;
    case W.NBD_CMD_FLUSH:
      if (r.offset !== 0 || r.length !== 0) return refuse(W.NBD_EINVAL, 'flush takes no range');
      return undefined;
    case W.NBD_CMD_BLOCK_STATUS:
      if (!ctx.baseAllocation) return refuse(W.NBD_EINVAL, 'no metadata context negotiated');
      if (r.length === 0) return refuse(W.NBD_EINVAL, 'block status of an empty range');
      break;
  }
  if (!Number.isSafeInteger(r.offset) || r.offset + r.length > ctx.exportSize)
    return refuse(W.NBD_EINVAL, 'request beyond the end of the export');
  return undefined;
}

/** Commands whose errors are structured error chunks when structured replies were negotiated. */
export function repliesStructured(type: number): boolean {
  return type === W.NBD_CMD_READ || type === W.NBD_CMD_BLOCK_STATUS;
}
