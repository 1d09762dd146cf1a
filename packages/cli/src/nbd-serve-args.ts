import { parseSnapshotSpec, type SnapshotSpec } from '@liverestore/datastore';
import type { NbdListen } from '@liverestore/nbd';
import { required } from './command.js';
import { parseListen } from './commands/serve.js';
import { systemdListenFd } from './daemon.js';
import { UsageError } from './errors.js';
import { parseNonNegativeInteger, parseWorkers } from './option-values.js';
import { parseBytes } from './units.js';

/** The options `nbd` and `live-restore` share, as parseArgs gives them. */
export interface NbdServeValues {
  readonly from?: string | undefined;
  readonly ns?: string | undefined;
  readonly listen?: string | undefined;
  readonly socket?: string | undefined;
  readonly 'cache-size'?: string | undefined;
  readonly workers?: string | undefined;
  readonly readahead?: string | undefined;
}

/** What both commands need to serve a snapshot's drives over NBD. */
export interface NbdServeArgs {
  readonly from: string;
  readonly spec: SnapshotSpec;
  readonly listen: NbdListen;
  readonly cacheBytes: number | undefined;
  readonly workers: number | undefined;
  readonly readaheadChunks: number | undefined;
}

/**
 * Reads `--from`, the one SNAPSHOT argument (with `--ns`), `--listen` or `--socket`
 * (default 127.0.0.1:10809), `--cache-size`, `--workers` and `--readahead` the same way for
 * `nbd` and `live-restore`; usage errors name `command`.
 */
export function parseNbdServeArgs(
  values: NbdServeValues,
  positionals: readonly string[],
  command: string,
): NbdServeArgs {
  const from = required(values.from, '--from DIR|URL', command);
  const [snapshotArg, ...extra] = positionals;
  if (snapshotArg === undefined) throw new UsageError(`${command}: SNAPSHOT is required (e.g. vm/100)`);
  if (extra.length > 0) throw new UsageError(`${command}: unexpected argument "${extra[0]}"`);
  const spec = parseSnapshotSpec(snapshotArg, values.ns);
  if (values.listen !== undefined && values.socket !== undefined)
    throw new UsageError(`${command}: give either --listen or --socket, not both`);
  // Neither given: systemd's socket when it activated us, else the NBD port on loopback.
  const activated =
    values.listen === undefined && values.socket === undefined ? systemdListenFd() : undefined;
  const listen: NbdListen =
    activated !== undefined
      ? { fd: activated }
      : values.socket !== undefined
        ? { socket: values.socket }
        : parseListen(values.listen ?? '127.0.0.1:10809', command);
  return {
    from,
    spec,
    listen,
    cacheBytes:
      values['cache-size'] === undefined ? undefined : parseBytes(values['cache-size'], '--cache-size'),
    workers: parseWorkers(values.workers, command),
    readaheadChunks: parseNonNegativeInteger(values.readahead, '--readahead', command),
  };
}
