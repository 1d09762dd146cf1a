import { LiverestoreError } from '@liverestore/format';

/** A failure of the read path that is not about the stored bytes themselves. */
export class ReaderError extends LiverestoreError {}

/** The operation was cancelled by its AbortSignal or because the cache closed. */
export function abortError(signal: AbortSignal | undefined): Error {
  const reason: unknown = signal?.reason;
  if (reason instanceof Error) return reason;
  return new ReaderError('ERR_LR_ABORTED', 'the read was aborted');
}

/** A plain, cloneable description of an error: crosses worker and comlink boundaries intact. */
export interface ErrorRecord {
  readonly name: string;
  readonly code: string | undefined;
  readonly message: string;
  readonly stack: string | undefined;
}

export function toErrorRecord(err: unknown): ErrorRecord {
  const e = err instanceof Error ? err : new Error(String(err));
  const code = (e as { code?: unknown }).code;
  return {
    name: e.name,
    code: typeof code === 'string' ? code : undefined,
    message: e.message,
    stack: e.stack,
  };
}

/** Rebuilds an error from a record, keeping its `code` (what callers match on). */
export function fromErrorRecord(record: ErrorRecord): Error {
  const err =
    record.code === undefined ? new Error(record.message) : new LiverestoreError(record.code, record.message);
  err.name = record.name;
  if (record.stack !== undefined) err.stack = record.stack;
  return err;
}
