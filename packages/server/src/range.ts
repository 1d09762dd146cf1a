import { ServerError } from './errors.js';

/** An inclusive byte range, as HTTP counts. */
export interface ByteRange {
  readonly start: number;
  readonly end: number;
}

/**
 * What a `Range` header asks for against a body of `sizeBytes`:
 * - `undefined`: the whole body (no header, or several ranges: RFC 9110 lets a server
 *   ignore Range, and one 200 is cheaper for us and the client than multipart);
 * - a satisfiable range, clamped to the body;
 * throws `ERR_LR_HTTP_BAD_RANGE` (400) on bad syntax and
 * `ERR_LR_HTTP_RANGE_NOT_SATISFIABLE` (416) when no byte of the range exists.
 */
export function parseRange(header: string | undefined, sizeBytes: number): ByteRange | undefined {
  if (header === undefined) return undefined;
  const match = /^\s*bytes\s*=\s*(.*)$/i.exec(header);
  if (match === null) throw bad(header);
  const spec = match[1]!.trim();
  if (spec.includes(',')) {
    // Validate each part so garbage is still a 400, then serve the whole body.
    for (const part of spec.split(',')) if (part.trim() !== '') parseOne(part.trim(), header);
    return undefined;
  }
  const { first, last } = parseOne(spec, header);
  if (first === undefined) {
    // Suffix range: the last `last` bytes.
    if (last === undefined || last === 0 || sizeBytes === 0) throw unsatisfiable(sizeBytes);
    return { start: Math.max(0, sizeBytes - last), end: sizeBytes - 1 };
  }
  if (first >= sizeBytes) throw unsatisfiable(sizeBytes);
  return { start: first, end: last === undefined ? sizeBytes - 1 : Math.min(last, sizeBytes - 1) };
}

function parseOne(spec: string, header: string): { first: number | undefined; last: number | undefined } {
  const m = /^(\d*)\s*-\s*(\d*)$/.exec(spec);
  if (m === null || (m[1] === '' && m[2] === '')) throw bad(header);
  const first = m[1] === '' ? undefined : toInt(m[1]!, header);
  const last = m[2] === '' ? undefined : toInt(m[2]!, header);
  if (first !== undefined && last !== undefined && last < first) throw bad(header);
  return { first, last };
}

function toInt(digits: string, header: string): number {
  const n = Number(digits);
  if (!Number.isSafeInteger(n)) throw bad(header);
  return n;
}

function bad(header: string): ServerError {
  return new ServerError('ERR_LR_HTTP_BAD_RANGE', `bad Range header "${header.slice(0, 100)}"`);
}

/** The error of a range no byte of which exists; the response adds `Content-Range: bytes *\/SIZE`. */
export class RangeNotSatisfiableError extends ServerError {
  constructor(readonly sizeBytes: number) {
    super('ERR_LR_HTTP_RANGE_NOT_SATISFIABLE', `range not satisfiable: the body has ${sizeBytes} bytes`);
  }
}

function unsatisfiable(sizeBytes: number): RangeNotSatisfiableError {
  return new RangeNotSatisfiableError(sizeBytes);
}
