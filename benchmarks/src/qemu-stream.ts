/**
 * QEMU's live-restore path, as docs/live-restore.md gives it: a qcow2 overlay backed by
 * an NBD export (`qemu-img create -f qcow2 -F raw -b URI`), `qemu-storage-daemon` opening
 * the overlay and exporting it over NBD on a Unix socket (what the guest stand-in reads),
 * and a QMP `block-stream` job copying every block from the backing export into the
 * overlay, timed to its `BLOCK_JOB_COMPLETED` event.
 */

import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Qmp, type QmpMessage, storageDaemonArgs, withTimeout } from '@liverestore/testkit';
import { type CleanupScope, exitedError, spawnTool, type ToolProcess } from './children.js';

const DAEMON_START_TIMEOUT_MS = 10_000;
/**
 * The longest a copy may take before the benchmark gives up on it (a hung server must not
 * hang the run): far beyond any copy of a few GiB through a slow backing export.
 */
export const COPY_TIMEOUT_MS = 30 * 60_000;

/** The daemon on the overlay, its guest export and its monitor. */
export interface OverlayDaemon {
  readonly process: ToolProcess;
  /** NBD URI of the daemon's export of the overlay: the disk the guest sees. */
  readonly guestUri: string;
  /**
   * Runs `block-stream` to its end; resolves with the seconds from the command to the
   * `BLOCK_JOB_COMPLETED` event. A job that ends with an error (or short of its length) rejects.
   */
  stream(): Promise<number>;
}

/** Runs a short-lived tool to its end; rejects with its output when it fails. */
async function runTool(command: string, args: readonly string[]): Promise<void> {
  const child = spawnTool(command, args);
  const code = await child.exited;
  if (code !== 0) throw exitedError(child, code, `running ${command} ${args.join(' ')}`);
}

/**
 * Creates `dir/overlay.qcow2` on `backingUri` and starts qemu-storage-daemon on it,
 * registered in `scope` (stopped, and its monitor closed, when the scope closes).
 */
export async function startOverlayDaemon(
  scope: CleanupScope,
  dir: string,
  backingUri: string,
): Promise<OverlayDaemon> {
  const overlay = join(dir, 'overlay.qcow2');
  await runTool('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', backingUri, overlay]);
  const qmpSocket = join(dir, 'qmp.sock');
  const exportSocket = join(dir, 'disk.sock');
  const daemon = scope.add(
    spawnTool('qemu-storage-daemon', storageDaemonArgs({ overlay, qmpSocket, exportSocket }), {
      what: 'qemu-storage-daemon',
    }),
  );
  const qmp = await Qmp.open(qmpSocket, Date.now() + DAEMON_START_TIMEOUT_MS, {
    alive: () => {
      if (daemon.hasExited()) throw exitedError(daemon, daemon.exitCode() ?? null, 'while starting');
    },
  });
  scope.defer(() => qmp.close());
  return {
    process: daemon,
    guestUri: `nbd+unix:///disk?socket=${exportSocket}`,
    async stream() {
      const started = performance.now();
      let done: QmpMessage;
      try {
        await qmp.execute('block-stream', { 'job-id': 'stream0', device: 'disk' });
        done = await withTimeout(qmp.event('BLOCK_JOB_COMPLETED'), COPY_TIMEOUT_MS, 'block-stream');
      } catch (error) {
        // The daemon's own words say why (it exited, its backing export went away).
        throw new Error(`block-stream: ${(error as Error).message}\n${daemon.output()}`, { cause: error });
      }
      const seconds = (performance.now() - started) / 1000;
      const data = done.data ?? {};
      if (data.error !== undefined || data.offset !== data.len)
        throw new Error(
          `block-stream failed: ${String(data.error ?? `stopped at ${String(data.offset)} of ${String(data.len)} bytes`)}\n${daemon.output()}`,
        );
      return seconds;
    },
  };
}
