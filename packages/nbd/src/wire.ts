/**
 * The NBD wire format in one place: every fixed header and small payload the server, the
 * client and the test client exchange, encoded and decoded here and nowhere else (as
 * nbdkit keeps its wire structs in one header). Each layout is drawn field by field,
 * offsets in bytes, all integers big-endian as proto.md fixes them. The constants
 * (magics, flags, commands, option and reply types) are in wire-constants.ts and are
 * re-exported from here. It is one file on purpose, a little over 400 lines: the whole
 * protocol layout is read in one place.
 */

import * as C from './wire-constants.js';

export * from './wire-constants.js';

// ─── handshake ──────────────────────────────────────────────────────────────

/**
 * Server greeting (18 bytes), S → C:
 *   0  u64 NBDMAGIC
 *   8  u64 IHAVEOPT        (newstyle)
 *  16  u16 handshake flags (NBD_FLAG_FIXED_NEWSTYLE, NBD_FLAG_NO_ZEROES)
 */
export const GREETING_BYTES = 18;

export function encodeGreeting(handshakeFlags: number): Buffer {
  const b = Buffer.allocUnsafe(GREETING_BYTES);
  b.writeBigUInt64BE(C.NBDMAGIC, 0);
  b.writeBigUInt64BE(C.IHAVEOPT, 8);
  b.writeUInt16BE(handshakeFlags, 16);
  return b;
}

/** The handshake flags of a greeting; undefined when it is not a newstyle NBD greeting. */
export function decodeGreeting(b: Buffer): number | undefined {
  if (b.readBigUInt64BE(0) !== C.NBDMAGIC || b.readBigUInt64BE(8) !== C.IHAVEOPT) return undefined;
  return b.readUInt16BE(16);
}

/** Client flags (4 bytes), C → S: u32 (NBD_FLAG_C_FIXED_NEWSTYLE, NBD_FLAG_C_NO_ZEROES). */
export const CLIENT_FLAGS_BYTES = 4;

export function encodeClientFlags(flags: number): Buffer {
  const b = Buffer.allocUnsafe(CLIENT_FLAGS_BYTES);
  b.writeUInt32BE(flags >>> 0, 0);
  return b;
}

/**
 * Option request header (16 bytes), C → S, followed by `length` bytes of option data:
 *   0  u64 IHAVEOPT
 *   8  u32 option  (NBD_OPT_*)
 *  12  u32 length  of the data that follows
 */
export interface OptionHeader {
  option: number;
  length: number;
}

/** An option request: its header and data in one buffer. */
export function encodeOption(option: number, data: Uint8Array = Buffer.alloc(0)): Buffer {
  const b = Buffer.allocUnsafe(C.OPTION_HEADER_BYTES + data.byteLength);
  b.writeBigUInt64BE(C.IHAVEOPT, 0);
  b.writeUInt32BE(option >>> 0, 8);
  b.writeUInt32BE(data.byteLength, 12);
  b.set(data, C.OPTION_HEADER_BYTES);
  return b;
}

/** Undefined when the magic is not IHAVEOPT. */
export function decodeOptionHeader(b: Buffer): OptionHeader | undefined {
  if (b.readBigUInt64BE(0) !== C.IHAVEOPT) return undefined;
  return { option: b.readUInt32BE(8), length: b.readUInt32BE(12) };
}

/**
 * Option reply header (20 bytes), S → C, followed by `length` bytes of reply data:
 *   0  u64 NBD_REP_MAGIC
 *   8  u32 option  the option replied to
 *  12  u32 type    (NBD_REP_*; errors have bit 31 set)
 *  16  u32 length  of the data that follows
 */
export const OPTION_REPLY_HEADER_BYTES = 20;

export interface OptionReplyHeader {
  option: number;
  type: number;
  length: number;
}

export function encodeOptionReplyHeader(option: number, type: number, length: number): Buffer {
  const b = Buffer.allocUnsafe(OPTION_REPLY_HEADER_BYTES);
  b.writeBigUInt64BE(C.NBD_REP_MAGIC, 0);
  b.writeUInt32BE(option >>> 0, 8);
  b.writeUInt32BE(type >>> 0, 12);
  b.writeUInt32BE(length, 16);
  return b;
}

/** Undefined when the magic is not NBD_REP_MAGIC. */
export function decodeOptionReplyHeader(b: Buffer): OptionReplyHeader | undefined {
  if (b.readBigUInt64BE(0) !== C.NBD_REP_MAGIC) return undefined;
  return { option: b.readUInt32BE(8), type: b.readUInt32BE(12), length: b.readUInt32BE(16) };
}

/**
 * Reply to NBD_OPT_EXPORT_NAME (10 or 134 bytes), S → C:
 *   0  u64 export size
 *   8  u16 transmission flags
 *  10  124 zero bytes, unless both sides agreed on NO_ZEROES
 */
export function encodeExportNameReply(size: number, transmissionFlags: number, noZeroes: boolean): Buffer {
  const b = Buffer.alloc(noZeroes ? 10 : 134);
  b.writeBigUInt64BE(BigInt(size), 0);
  b.writeUInt16BE(transmissionFlags, 8);
  return b;
}

/**
 * Data of NBD_OPT_INFO / NBD_OPT_GO, C → S:
 *   0       u32 name length n
 *   4       n bytes export name (UTF-8)
 *   4+n     u16 count of information requests
 *   6+n     count × u16 NBD_INFO_* requested
 */
export interface GoRequest {
  exportName: string;
  infoRequests: number[];
}

export function encodeGoRequest(exportName: string, infoRequests: readonly number[] = []): Buffer {
  const name = Buffer.from(exportName, 'utf8');
  const b = Buffer.allocUnsafe(6 + name.length + 2 * infoRequests.length);
  b.writeUInt32BE(name.length, 0);
  name.copy(b, 4);
  b.writeUInt16BE(infoRequests.length, 4 + name.length);
  infoRequests.forEach((r, k) => {
    b.writeUInt16BE(r, 6 + name.length + 2 * k);
  });
  return b;
}

/**
 * All a client sends after the greeting to reach transmission without looking at the
 * server's answers: its flags (fixed newstyle, no zeroes) and NBD_OPT_GO of `exportName`.
 * For load and flood clients that send everything at once.
 */
export function encodeClientOpening(exportName: string): Buffer {
  return Buffer.concat([
    encodeClientFlags(C.NBD_FLAG_C_FIXED_NEWSTYLE | C.NBD_FLAG_C_NO_ZEROES),
    encodeOption(C.NBD_OPT_GO, encodeGoRequest(exportName)),
  ]);
}

/** A reason string when the data is malformed. */
export function decodeGoRequest(data: Buffer): GoRequest | string {
  if (data.length < 6) return 'option data too short';
  const nameLength = data.readUInt32BE(0);
  if (nameLength > data.length - 6) return 'export name overruns option data';
  const count = data.readUInt16BE(4 + nameLength);
  if (data.length !== 6 + nameLength + 2 * count) return 'information request list has the wrong length';
  const infoRequests: number[] = [];
  for (let k = 0; k < count; k++) infoRequests.push(data.readUInt16BE(6 + nameLength + 2 * k));
  return { exportName: data.toString('utf8', 4, 4 + nameLength), infoRequests };
}

/**
 * NBD_REP_INFO payload NBD_INFO_EXPORT (12 bytes):
 *   0  u16 NBD_INFO_EXPORT
 *   2  u64 export size
 *  10  u16 transmission flags
 */
export function encodeInfoExport(size: number, transmissionFlags: number): Buffer {
  const b = Buffer.allocUnsafe(12);
  b.writeUInt16BE(C.NBD_INFO_EXPORT, 0);
  b.writeBigUInt64BE(BigInt(size), 2);
  b.writeUInt16BE(transmissionFlags, 10);
  return b;
}

/**
 * NBD_REP_INFO payload NBD_INFO_BLOCK_SIZE (14 bytes):
 *   0  u16 NBD_INFO_BLOCK_SIZE
 *   2  u32 minimum block size
 *   6  u32 preferred block size
 *  10  u32 maximum request payload
 */
export function encodeInfoBlockSize(minimum: number, preferred: number, maximum: number): Buffer {
  const b = Buffer.allocUnsafe(14);
  b.writeUInt16BE(C.NBD_INFO_BLOCK_SIZE, 0);
  b.writeUInt32BE(minimum, 2);
  b.writeUInt32BE(preferred, 6);
  b.writeUInt32BE(maximum, 10);
  return b;
}

/** What an NBD_REP_INFO payload says (the kinds this project sends; others are `other`). */
export type Info =
  | { kind: 'export'; size: number; transmissionFlags: number }
  | { kind: 'block-size'; minimum: number; preferred: number; maximum: number }
  | { kind: 'other'; infoType: number };

export function decodeInfo(b: Buffer): Info {
  const infoType = b.length >= 2 ? b.readUInt16BE(0) : -1;
  if (infoType === C.NBD_INFO_EXPORT && b.length >= 12)
    return { kind: 'export', size: Number(b.readBigUInt64BE(2)), transmissionFlags: b.readUInt16BE(10) };
  if (infoType === C.NBD_INFO_BLOCK_SIZE && b.length >= 14)
    return {
      kind: 'block-size',
      minimum: b.readUInt32BE(2),
      preferred: b.readUInt32BE(6),
      maximum: b.readUInt32BE(10),
    };
  return { kind: 'other', infoType };
}

/** NBD_REP_SERVER payload of NBD_OPT_LIST: u32 name length n, n bytes name (UTF-8). */
export function encodeServerReply(exportName: string): Buffer {
  const name = Buffer.from(exportName, 'utf8');
  const b = Buffer.allocUnsafe(4 + name.length);
  b.writeUInt32BE(name.length, 0);
  name.copy(b, 4);
  return b;
}

export function decodeServerReply(b: Buffer): string {
  return b.toString('utf8', 4, 4 + b.readUInt32BE(0));
}

/**
 * Data of NBD_OPT_LIST_META_CONTEXT / SET_META_CONTEXT, C → S:
 *   0   u32 export name length n, then n bytes name
 *       u32 number of queries, then per query: u32 length m, m bytes query (UTF-8)
 */
export interface MetaContextRequest {
  exportName: string;
  queries: string[];
}

export function encodeMetaContextRequest(exportName: string, queries: readonly string[]): Buffer {
  const parts = [encodeServerReply(exportName), Buffer.allocUnsafe(4)];
  parts[1]!.writeUInt32BE(queries.length, 0);
  for (const q of queries) parts.push(encodeServerReply(q));
  return Buffer.concat(parts);
}

/** Undefined when malformed (a length overruns the data, or bytes are left over). */
export function decodeMetaContextRequest(data: Buffer): MetaContextRequest | undefined {
  let pos = 0;
  const take = (n: number): Buffer | undefined => {
    if (pos + n > data.length) return undefined;
    const out = data.subarray(pos, pos + n);
    pos += n;
    return out;
  };
  const string = (): string | undefined => {
    const len = take(4)?.readUInt32BE(0);
    return len === undefined ? undefined : take(len)?.toString('utf8');
  };
  const exportName = string();
  const count = take(4)?.readUInt32BE(0);
  if (exportName === undefined || count === undefined) return undefined;
  const queries: string[] = [];
  for (let k = 0; k < count; k++) {
    const q = string();
    if (q === undefined) return undefined;
    queries.push(q);
  }
  return pos === data.length ? { exportName, queries } : undefined;
}

/** NBD_REP_META_CONTEXT payload: u32 context id, then the context name (UTF-8). */
export function encodeMetaContextReply(contextId: number, name: string): Buffer {
  const n = Buffer.from(name, 'utf8');
  const b = Buffer.allocUnsafe(4 + n.length);
  b.writeUInt32BE(contextId, 0);
  n.copy(b, 4);
  return b;
}

// ─── transmission ───────────────────────────────────────────────────────────

/**
 * Request header (28 bytes), C → S; a write's payload follows it:
 *   0  u32 NBD_REQUEST_MAGIC
 *   4  u16 command flags (NBD_CMD_FLAG_*)
 *   6  u16 type          (NBD_CMD_*)
 *   8  u64 handle        opaque, echoed in every reply to the request
 *  16  u64 offset        (a Number here: above 2^53 it is not a safe integer and is refused)
 *  24  u32 length
 */
export interface RequestHeader {
  flags: number;
  type: number;
  handle: bigint;
  offset: number;
  length: number;
}

export function encodeRequestHeader(r: RequestHeader): Buffer {
  const b = Buffer.allocUnsafe(C.REQUEST_HEADER_BYTES);
  b.writeUInt32BE(C.NBD_REQUEST_MAGIC, 0);
  b.writeUInt16BE(r.flags, 4);
  b.writeUInt16BE(r.type, 6);
  b.writeBigUInt64BE(r.handle, 8);
  b.writeBigUInt64BE(BigInt(r.offset), 16);
  b.writeUInt32BE(r.length, 24);
  return b;
}

/** Undefined when the magic is wrong (the connection is out of sync and must end). */
export function decodeRequestHeader(b: Buffer): RequestHeader | undefined {
  if (b.readUInt32BE(0) !== C.NBD_REQUEST_MAGIC) return undefined;
  return {
    flags: b.readUInt16BE(4),
    type: b.readUInt16BE(6),
    handle: b.readBigUInt64BE(8),
    offset: Number(b.readBigUInt64BE(16)),
    length: b.readUInt32BE(24),
  };
}

/**
 * Simple reply (16 bytes), S → C; a successful read's data follows it:
 *   0  u32 NBD_SIMPLE_REPLY_MAGIC
 *   4  u32 error  (0, or an NBD errno)
 *   8  u64 handle
 *
 * Structured reply chunk header (20 bytes), S → C, followed by `length` payload bytes:
 *   0  u32 NBD_STRUCTURED_REPLY_MAGIC
 *   4  u16 flags   (NBD_REPLY_FLAG_DONE on the last chunk)
 *   6  u16 type    (NBD_REPLY_TYPE_*)
 *   8  u64 handle
 *  16  u32 length  of the payload
 */
export type ReplyHeader =
  | { kind: 'simple'; error: number; handle: bigint }
  | { kind: 'structured'; flags: number; type: number; handle: bigint; length: number };

export function encodeSimpleReply(handle: bigint, error: number): Buffer {
  const b = Buffer.allocUnsafe(C.SIMPLE_REPLY_BYTES);
  b.writeUInt32BE(C.NBD_SIMPLE_REPLY_MAGIC, 0);
  b.writeUInt32BE(error, 4);
  b.writeBigUInt64BE(handle, 8);
  return b;
}

export function encodeStructuredReplyHeader(
  handle: bigint,
  flags: number,
  type: number,
  length: number,
): Buffer {
  const b = Buffer.allocUnsafe(C.STRUCTURED_REPLY_BYTES);
  b.writeUInt32BE(C.NBD_STRUCTURED_REPLY_MAGIC, 0);
  b.writeUInt16BE(flags, 4);
  b.writeUInt16BE(type, 6);
  b.writeBigUInt64BE(handle, 8);
  b.writeUInt32BE(length, 16);
  return b;
}

/**
 * Size of the reply header whose first 4 bytes (the magic) are in `start`; undefined if no
 * reply starts so (the stream is out of sync).
 */
export function replyHeaderBytes(start: Buffer): number | undefined {
  const magic = start.readUInt32BE(0);
  if (magic === C.NBD_SIMPLE_REPLY_MAGIC) return C.SIMPLE_REPLY_BYTES;
  if (magic === C.NBD_STRUCTURED_REPLY_MAGIC) return C.STRUCTURED_REPLY_BYTES;
  return undefined;
}

/** Decodes a reply header (`b` holds at least {@link replyHeaderBytes} bytes); undefined on a bad magic. */
export function decodeReplyHeader(b: Buffer): ReplyHeader | undefined {
  const magic = b.readUInt32BE(0);
  if (magic === C.NBD_SIMPLE_REPLY_MAGIC)
    return { kind: 'simple', error: b.readUInt32BE(4), handle: b.readBigUInt64BE(8) };
  if (magic !== C.NBD_STRUCTURED_REPLY_MAGIC) return undefined;
  return {
    kind: 'structured',
    flags: b.readUInt16BE(4),
    type: b.readUInt16BE(6),
    handle: b.readBigUInt64BE(8),
    length: b.readUInt32BE(16),
  };
}

/** NBD_REPLY_TYPE_OFFSET_DATA payload prefix: u64 offset of the data that follows. */
export function encodeOffset(offset: number): Buffer {
  const b = Buffer.allocUnsafe(8);
  b.writeBigUInt64BE(BigInt(offset), 0);
  return b;
}

export function decodeOffset(b: Buffer): number {
  return Number(b.readBigUInt64BE(0));
}

/** NBD_REPLY_TYPE_OFFSET_HOLE payload (12 bytes): u64 offset, u32 length of the hole. */
export const OFFSET_HOLE_BYTES = 12;

export function decodeOffsetHole(b: Buffer): { offset: number; length: number } {
  return { offset: Number(b.readBigUInt64BE(0)), length: b.readUInt32BE(8) };
}

/**
 * NBD_REPLY_TYPE_ERROR payload:
 *   0  u32 error   (NBD errno)
 *   4  u16 message length m
 *   6  m bytes message (UTF-8; at most 1024 bytes sent here)
 */
export function encodeErrorPayload(error: number, message: string): Buffer {
  const msg = Buffer.from(message.slice(0, 1024), 'utf8');
  const b = Buffer.allocUnsafe(6 + msg.length);
  b.writeUInt32BE(error, 0);
  b.writeUInt16BE(msg.length, 4);
  msg.copy(b, 6);
  return b;
}

/** Error and message of an error chunk; a payload too short to hold them reads as EIO. */
export function decodeErrorPayload(b: Buffer): { error: number; message: string } {
  const error = b.length >= 4 ? b.readUInt32BE(0) : C.NBD_EIO;
  const messageLength = b.length >= 6 ? b.readUInt16BE(4) : 0;
  return { error, message: b.toString('utf8', 6, Math.min(b.length, 6 + messageLength)) };
}

/** One extent of a block-status reply: `length` bytes in state NBD_STATE_* `flags`. */
export interface BlockStatusExtent {
  length: number;
  flags: number;
}

/**
 * NBD_REPLY_TYPE_BLOCK_STATUS payload:
 *   0  u32 metadata context id
 *   4  per extent: u32 length, u32 state flags
 */
export function encodeBlockStatusPayload(contextId: number, extents: readonly BlockStatusExtent[]): Buffer {
  const b = Buffer.allocUnsafe(4 + 8 * extents.length);
  b.writeUInt32BE(contextId, 0);
  extents.forEach((e, k) => {
    b.writeUInt32BE(e.length, 4 + 8 * k);
    b.writeUInt32BE(e.flags, 8 + 8 * k);
  });
  return b;
}

export function decodeBlockStatusPayload(b: Buffer): { contextId: number; extents: BlockStatusExtent[] } {
  const extents: BlockStatusExtent[] = [];
  for (let k = 4; k + 8 <= b.length; k += 8)
    extents.push({ length: b.readUInt32BE(k), flags: b.readUInt32BE(k + 4) });
  return { contextId: b.readUInt32BE(0), extents };
}
