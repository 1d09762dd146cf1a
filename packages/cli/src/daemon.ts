/**
 * Daemon conventions of the servers (`serve`, `nbd`, `live-restore`), as qemu-nbd and
 * systemd services have them:
 *
 * - `--pid-file FILE`: the process id, written once the server listens (temp + rename,
 *   so a reader never sees half a number), removed when it exits. A pid file naming a
 *   live process is refused at start (another server uses it); a stale one is replaced.
 * - `--fork`: the command returns once the server listens, printing what the server
 *   printed up to then (its address), and leaves the server running in the background,
 *   like `qemu-nbd --fork`. A server that fails to start (a busy port) fails the command
 *   with its error and status before anything is printed on stdout, so
 *   `liverestore nbd … --fork && qemu-img …` never talks to another server's port.
 * - systemd: with `NOTIFY_SOCKET` set (a `Type=notify` unit), readiness is sent with
 *   `systemd-notify --ready` (the unit needs `NotifyAccess=all`: the message comes from
 *   a child process); docs/daemons.md has example units.
 *
 * The forked server is this CLI run again with the same arguments minus `--fork`; it
 * learns that it is one from an environment variable. Until it is ready it sends what it
 * prints (stdout and stderr) to the waiting command as JSON lines on fd 3; then its
 * stdout is dropped and its stderr (log lines) goes to `--log-file`, or nowhere: a
 * server in the background must not hold the pipes of whoever started it.
 */

import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { LiverestoreError } from '@liverestore/format';
import type { CommandIo } from './command.js';

/** The options every server command takes. */
export const DAEMON_OPTIONS = {
  'pid-file': { type: 'string' },
  fork: { type: 'boolean' },
  'log-file': { type: 'string' },
} as const;

/** Their lines for a server's --help. */
export const DAEMON_HELP = `  --pid-file FILE      write the process id to FILE once listening (removed on
                       exit; refused while another live process holds it)
  --fork               return once listening, printing the address, and keep
                       serving in the background (as qemu-nbd --fork)
  --log-file FILE      with --fork: append the server's log lines to FILE
                       (default: discarded once it is ready)`;

/**
 * The listening socket systemd passed (socket activation: LISTEN_PID is this process and
 * LISTEN_FDS ≥ 1): fd 3, the first one. Undefined when the server must listen itself.
 */
export function systemdListenFd(env: NodeJS.ProcessEnv = process.env): number | undefined {
  if (env.LISTEN_PID !== String(process.pid)) return undefined;
  const count = Number(env.LISTEN_FDS);
  return Number.isInteger(count) && count >= 1 ? 3 : undefined;
}

/** Set in the environment of the server a `--fork` run starts; its readiness goes to fd 3. */
const FORKED_ENV = 'LIVERESTORE_FORKED_SERVER';
const READY_FD = 3;
const BIN = fileURLToPath(new URL('../../bin/liverestore.js', import.meta.url));

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as { code?: string }).code === 'EPERM';
  }
}

/**
 * Refuses a pid file that names another live process (checked at start, before the
 * server listens, so a second server does not take over a running one's file).
 */
export function checkPidFile(path: string | undefined): void {
  if (path === undefined) return;
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOENT') return;
    throw new LiverestoreError(
      'ERR_LR_PID_FILE',
      `cannot read pid file ${path} (${(err as { code?: string }).code})`,
      {
        cause: err,
      },
    );
  }
  const pid = Number(text.trim());
  if (Number.isSafeInteger(pid) && pid > 0 && pid !== process.pid && isAlive(pid))
    throw new LiverestoreError('ERR_LR_PID_FILE', `pid file ${path} names process ${pid}, which is running`);
}

/** Writes the pid file (temp + rename) and removes it when this process exits. */
function writePidFile(path: string): void {
  const temp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  try {
    const fd = openSync(temp, 'w', 0o644);
    try {
      writeSync(fd, `${process.pid}\n`);
    } finally {
      closeSync(fd);
    }
    renameSync(temp, path);
  } catch (err) {
    rmSync(temp, { force: true });
    throw new LiverestoreError(
      'ERR_LR_PID_FILE',
      `cannot write pid file ${path} (${(err as { code?: string }).code})`,
      {
        cause: err,
      },
    );
  }
  process.once('exit', () => {
    // Only our own: a later server may have replaced a file we no longer own.
    try {
      if (readFileSync(path, 'utf8').trim() === String(process.pid)) rmSync(path, { force: true });
    } catch {}
  });
}

/** Tells systemd (Type=notify) that the server is ready; a failure is a warning. */
function notifySystemd(status: string, io: CommandIo): void {
  if (process.env.NOTIFY_SOCKET === undefined) return;
  const child = spawn(
    'systemd-notify',
    ['--no-block', '--ready', `--pid=${process.pid}`, `--status=${status}`],
    {
      stdio: 'ignore',
    },
  );
  child.once('error', (err) => {
    io.stderr.write(
      `liverestore: warning: NOTIFY_SOCKET is set but systemd-notify failed (${(err as { code?: string }).code})\n`,
    );
  });
}

/** The channel of a forked server to the command waiting for it (fd 3), until it is ready. */
class ReadinessChannel {
  #open = process.env[FORKED_ENV] === '1';

  get open(): boolean {
    return this.#open;
  }

  send(message: ForkMessage): void {
    if (!this.#open) return;
    try {
      writeSync(READY_FD, `${JSON.stringify(message)}\n`);
    } catch {
      this.#open = false;
    }
  }

  close(): void {
    if (!this.#open) return;
    this.#open = false;
    try {
      closeSync(READY_FD);
    } catch {}
  }
}

/** What a forked server sends before it is ready, one JSON line each. */
type ForkMessage =
  | { readonly stderr: string }
  | { readonly ready: true; readonly pid: number; readonly stdout: string };

const channel = new ReadinessChannel();

/** A forked server's stdout: kept for the readiness message, dropped after. */
class ForkedStdout extends Writable {
  text = '';
  override _write(chunk: Buffer | string, _encoding: BufferEncoding, callback: () => void): void {
    if (channel.open) this.text += chunk.toString();
    callback();
  }
}

/** A forked server's stderr: to the waiting command until ready, and to its own stderr (the log file). */
class ForkedStderr extends Writable {
  override _write(chunk: Buffer | string, _encoding: BufferEncoding, callback: () => void): void {
    channel.send({ stderr: chunk.toString() });
    process.stderr.write(chunk, () => callback());
  }
}

/**
 * The io a command runs with: a forked server's goes through the readiness channel
 * until it is ready; any other run's is unchanged.
 */
export function daemonIo(io: CommandIo): CommandIo {
  if (!channel.open) return io;
  return { stdout: new ForkedStdout(), stderr: new ForkedStderr() };
}

/**
 * Called by a server once it listens and has printed its address: writes the pid file,
 * tells systemd, and releases a waiting `--fork` command.
 */
export function announceReady(
  values: { 'pid-file'?: string | undefined },
  status: string,
  io: CommandIo,
): void {
  if (values['pid-file'] !== undefined) writePidFile(values['pid-file']);
  notifySystemd(status, io);
  if (channel.open && io.stdout instanceof ForkedStdout) {
    channel.send({ ready: true, pid: process.pid, stdout: io.stdout.text });
    channel.close();
  }
}

/** Opens `--log-file` for appending (the forked server's stderr), or discards. */
function logTarget(argv: readonly string[]): number | 'ignore' {
  const at = argv.indexOf('--log-file');
  const inline = argv.find((a) => a.startsWith('--log-file='));
  const path = inline?.slice('--log-file='.length) ?? (at >= 0 ? argv[at + 1] : undefined);
  if (path === undefined) return 'ignore';
  try {
    return openSync(path, 'a', 0o640);
  } catch (err) {
    throw new LiverestoreError(
      'ERR_LR_OUTPUT_INVALID',
      `cannot open --log-file ${path} (${(err as { code?: string }).code})`,
      {
        cause: err,
      },
    );
  }
}

/**
 * `--fork`: starts the same command without it as a detached server and waits until it
 * is ready (prints its stdout, returns 0) or has exited (returns its status, after the
 * error it printed).
 */
export async function runForked(argv: readonly string[], io: CommandIo): Promise<number> {
  const log = logTarget(argv);
  const child = spawn(process.execPath, [BIN, ...argv.filter((a) => a !== '--fork')], {
    detached: true,
    stdio: ['ignore', 'ignore', log, 'pipe'],
    env: { ...process.env, [FORKED_ENV]: '1' },
  });
  if (typeof log === 'number') closeSync(log);
  const channelIn = child.stdio[READY_FD] as NodeJS.ReadableStream & { destroy(): void };
  let ready: { pid: number; stdout: string } | undefined;
  let partial = '';
  channelIn.setEncoding('utf8');
  channelIn.on('data', (text: string) => {
    const lines = (partial + text).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      const message = JSON.parse(line) as ForkMessage;
      if ('stderr' in message) io.stderr.write(message.stderr);
      else ready = message;
    }
  });
  // The channel ends when the server is ready (it closes fd 3) or gone; everything it
  // sent has been read by then, so an early exit's error is printed before we return.
  const exited = new Promise<number>((resolve) =>
    child.once('exit', (status, signal) => resolve(status ?? (signal === null ? 1 : 128))),
  );
  await new Promise<void>((resolve, reject) => {
    channelIn.once('end', resolve);
    child.once('error', reject);
  });
  if (ready === undefined) {
    const code = await exited;
    return code === 0 ? 1 : code;
  }
  io.stdout.write(ready.stdout);
  child.unref();
  channelIn.destroy();
  return 0;
}
