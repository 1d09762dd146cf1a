/**
 * nbdkit, the reference NBD server the benchmarks compare with: a plugin (file, curl)
 * with optional filters (cache), read-only, in the foreground, dying with this process
 * (`--exit-with-parent`). Ready once it has written its PID file, which nbdkit does
 * after it listens.
 */

import { stat } from 'node:fs/promises';
import { type CleanupScope, spawnTool, type ToolProcess, waitUntilReady } from './children.js';

/** Where nbdkit listens: a Unix socket, or a TCP port on 127.0.0.1. */
export type NbdkitListen = { readonly socket: string } | { readonly port: number };

/** What to run and where. */
export interface NbdkitOptions {
  readonly plugin: string;
  /** `key=value` plugin and filter parameters (the plugin's file or URL first). */
  readonly params: readonly string[];
  readonly filters?: readonly string[];
  readonly listen: NbdkitListen;
  /** Written by nbdkit once it listens. */
  readonly pidFile: string;
  readonly env?: NodeJS.ProcessEnv;
}

/** A running nbdkit and the URI of its (only) export. */
export interface Nbdkit extends ToolProcess {
  readonly uri: string;
}

/** Starts nbdkit, registered in `scope`, and resolves once it listens. */
export async function startNbdkit(scope: CleanupScope, options: NbdkitOptions): Promise<Nbdkit> {
  const listen =
    'socket' in options.listen
      ? ['-U', options.listen.socket]
      : ['-i', '127.0.0.1', '-p', String(options.listen.port)];
  const child = scope.add(
    spawnTool(
      'nbdkit',
      [
        '--exit-with-parent',
        '-f',
        '-r',
        '-P',
        options.pidFile,
        ...listen,
        ...(options.filters ?? []).map((f) => `--filter=${f}`),
        options.plugin,
        ...options.params,
      ],
      { what: `nbdkit ${options.plugin}`, ...(options.env === undefined ? {} : { env: options.env }) },
    ),
  );
  await waitUntilReady(child, () =>
    stat(options.pidFile).then(
      (st) => st.size > 0,
      () => false,
    ),
  );
  const uri =
    'socket' in options.listen
      ? `nbd+unix:///?socket=${options.listen.socket}`
      : `nbd://127.0.0.1:${options.listen.port}/`;
  return { ...child, uri };
}
