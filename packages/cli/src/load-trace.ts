import { closeSync, openSync, writeSync } from 'node:fs';
import { LiverestoreError } from '@liverestore/format';
import type { ChunkLoadRecord } from '@liverestore/reader';

/** `--trace-loads FILE` as it reads in every command that serves a guest from a chunk cache. */
export const LOAD_TRACE_OPTIONS = {
  'trace-loads': { type: 'string' },
} as const;

/** The help line of {@link LOAD_TRACE_OPTIONS}, aligned like the other option lines. */
export const LOAD_TRACE_HELP = `  --trace-loads FILE   write one JSON line per chunk load when it ends: urgency, where
                       the bytes came from, and the milliseconds of each phase (memory,
                       blob, waiting for a decode thread, decode): ChunkLoadRecord in
                       docs/api.md`;

/** An open trace file: the cache's `onLoad`, and `close` once the cache is closed. */
export interface LoadTrace {
  readonly onLoad: (record: ChunkLoadRecord) => void;
  close(): void;
}

/**
 * Opens (creates or truncates) the trace file `--trace-loads` names, or undefined without
 * the option. Lines are written as loads end, synchronously: a few hundred bytes per
 * load of a 4 MiB chunk. A file that cannot be opened is `ERR_LR_TRACE_FILE` at start; a
 * write that fails later (a full disk) stops the trace with one line on `warn`, never the
 * server.
 */
export function openLoadTrace(
  values: { 'trace-loads'?: string | undefined },
  warn: (line: string) => void,
): LoadTrace | undefined {
  const path = values['trace-loads'];
  if (path === undefined) return undefined;
  let fd: number | undefined;
  try {
    fd = openSync(path, 'w', 0o644);
  } catch (err) {
    throw new LiverestoreError(
      'ERR_LR_TRACE_FILE',
      `cannot write the load trace ${path} (${(err as { code?: string }).code ?? String(err)})`,
      { cause: err },
    );
  }
  const close = (): void => {
    if (fd === undefined) return;
    closeSync(fd);
    fd = undefined;
  };
  return {
    onLoad: (record) => {
      if (fd === undefined) return;
      try {
        writeSync(fd, `${JSON.stringify(record)}\n`);
      } catch (err) {
        warn(`load trace ${path}: ${(err as { code?: string }).code ?? String(err)}; tracing stopped`);
        close();
      }
    },
    close,
  };
}
