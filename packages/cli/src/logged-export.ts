import type { NbdExport } from '@liverestore/nbd';
import { printableLine } from './terminal-text.js';

/** Distinct failures logged per export; beyond, failures are still answered (EIO) but not logged. */
const MAX_LOGGED_FAILURES = 1000;

/**
 * `exp` with every failed read logged as one line on `log`: the NBD client only sees EIO,
 * so without this a corrupt chunk (digest mismatch, bad CRC, missing chunk) left no trace
 * on the server. The line names the export, the offset, the code and the message (which
 * names the chunk's digest). Reads cut by their client (an aborted signal) are not
 * failures; the same message is logged once.
 */
export function loggedExport(exp: NbdExport, log: NodeJS.WritableStream): NbdExport {
  const logged = new Set<string>();
  const failed = (err: unknown, offset: number, signal: AbortSignal): void => {
    if (signal.aborted) return;
    const code = (err as { code?: unknown }).code;
    const what = `${typeof code === 'string' ? code : 'EIO'}: ${(err as Error).message}`;
    if (!logged.has(what) && logged.size < MAX_LOGGED_FAILURES) {
      logged.add(what);
      log.write(
        `liverestore: ${printableLine(`read of ${exp.name} at ${offset} failed (the client got EIO): ${what}`)}\n`,
      );
    }
  };
  const lease = exp.lease;
  return {
    ...exp,
    async read(buffer, offset, signal) {
      try {
        await exp.read(buffer, offset, signal);
      } catch (err) {
        failed(err, offset, signal);
        throw err;
      }
    },
    ...(lease === undefined
      ? {}
      : {
          async lease(offset, length, signal, scratch) {
            try {
              return await lease.call(exp, offset, length, signal, scratch);
            } catch (err) {
              failed(err, offset, signal);
              throw err;
            }
          },
        }),
  };
}
