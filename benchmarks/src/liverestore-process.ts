/**
 * Runs a long-lived `liverestore` command (serve, nbd) in its own process, as a server
 * would run in production, and waits for the address it prints on its first stdout line.
 * {@link startNodeProcess} does the same for any Node script of this package (the
 * network-conditions proxy, the old-design NBD server of `bench live-restore`).
 */

import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { CleanupScope, Stoppable } from './children.js';

const BIN = fileURLToPath(new URL('../../../packages/cli/bin/liverestore.js', import.meta.url));

/** A running server process. */
export interface LiverestoreProcess {
  /** The first line it printed: a URL (serve) or HOST:PORT (nbd). */
  readonly address: string;
  /** Its process id (for /proc/PID/status: peak RSS). */
  readonly pid: number;
  /** Resolves when the process has exited. */
  readonly exited: Promise<void>;
  stop(): void;
}

/** Options of {@link startNodeProcess}. */
export interface ProcessOptions {
  /** Filter of the child's stderr lines (e.g. drop per-request logs); default: all pass through. */
  readonly keepStderrLine?: (line: string) => boolean;
  /** Called with each stdout line but a first one that is only the address, e.g. `--json` events. */
  readonly onStdoutLine?: (line: string) => void;
}

/** Drops the info-level JSON log lines of `liverestore serve` (one per request). */
export function notInfoLog(line: string): boolean {
  return !line.startsWith('{"level":30,');
}

/**
 * Starts `node [nodeArgs…] SCRIPT ARGS…`; resolves with the first line it prints on
 * stdout, rejects if it exits before printing one.
 */
export async function startNodeProcess(
  script: string,
  args: readonly string[],
  what: string,
  nodeArgs: readonly string[] = [],
  options: ProcessOptions = {},
): Promise<LiverestoreProcess> {
  const keep = options.keepStderrLine;
  const child = spawn(process.execPath, [...nodeArgs, script, ...args], {
    stdio: ['ignore', 'pipe', keep === undefined ? 'inherit' : 'pipe'],
  });
  if (keep !== undefined) {
    let partial = '';
    child.stderr!.setEncoding('utf8').on('data', (text: string) => {
      const lines = (partial + text).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) if (keep(line)) process.stderr.write(`${line}\n`);
    });
  }
  const stop = (): void => {
    child.kill('SIGTERM');
  };
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
  try {
    const address = await new Promise<string>((resolve, reject) => {
      let out = '';
      let first: string | undefined;
      child.stdout!.setEncoding('utf8').on('data', (text: string) => {
        out += text;
        for (let nl = out.indexOf('\n'); nl >= 0; nl = out.indexOf('\n')) {
          const line = out.slice(0, nl).trim();
          out = out.slice(nl + 1);
          if (first === undefined) {
            first = line;
            resolve(addressOf(line));
            // With --json the first line is already an event (it carries the address).
            if (!line.startsWith('{')) continue;
          }
          options.onStdoutLine?.(line);
        }
      });
      child.once('error', (error) => reject(new Error(`${what}: ${error.message}`)));
      child.once('exit', (code, signal) => reject(new Error(`${what} exited (${code ?? signal})`)));
    });
    child.stdout!.resume();
    return { address, pid: child.pid!, exited, stop };
  } catch (error) {
    stop();
    throw error;
  }
}

/**
 * The address on a server's first stdout line: the line itself, or with `--json` the
 * `address` of the JSON event it is (live-restore's `started`).
 */
function addressOf(line: string): string {
  if (!line.startsWith('{')) return line;
  const address = (JSON.parse(line) as { address?: unknown }).address;
  if (typeof address !== 'string') throw new Error(`no address in the first line: ${line}`);
  return address;
}

/** SIGKILL after SIGTERM when a server takes longer than this to exit. */
const STOP_GRACE_MS = 5000;

/**
 * The process as a {@link Stoppable} for a {@link CleanupScope}: SIGTERM, SIGKILL if it
 * is still there after 5 s, resolved once it has exited.
 */
export function asStoppable(p: LiverestoreProcess): Stoppable {
  return {
    pid: p.pid,
    exited: p.exited,
    async stop() {
      p.stop();
      const timer = setTimeout(() => {
        try {
          process.kill(p.pid, 'SIGKILL');
        } catch {
          // exited meanwhile
        }
      }, STOP_GRACE_MS);
      await p.exited;
      clearTimeout(timer);
    },
  };
}

/** Starts `liverestore ARGS…`; rejects if it exits before printing its address. */
export function startLiverestoreProcess(
  args: readonly string[],
  nodeArgs: readonly string[] = [],
  options: ProcessOptions = {},
): Promise<LiverestoreProcess> {
  return startNodeProcess(BIN, args, `liverestore ${args[0]}`, nodeArgs, options);
}
