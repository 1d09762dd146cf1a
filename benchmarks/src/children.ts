/**
 * The processes a benchmark starts (servers, daemons, fio) and the scratch it makes, so
 * none outlives the run: a {@link CleanupScope} stops its children and removes its
 * directories in reverse order when closed, after a failure as after success; and while
 * any scope is open, SIGINT/SIGTERM close every open scope before the benchmark exits,
 * and a last `exit` hook SIGKILLs whatever child is still alive.
 */

import { spawn } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';

/** How long a child gets after SIGTERM before SIGKILL. */
const STOP_GRACE_MS = 5000;
/** Bytes of a child's stderr kept for error messages. */
const OUTPUT_TAIL_BYTES = 4096;

/** Something that runs until stopped: a child process, or a group of them. */
export interface Stoppable {
  /** Process id, or undefined for something that is not a single process. */
  readonly pid?: number | undefined;
  /** Settles once the process has exited (with its pid, the `exit` hook's SIGKILL target until then). */
  readonly exited?: Promise<unknown>;
  /** Stops it; resolves once it is gone. Safe to call when it has already exited. */
  stop(): Promise<void>;
}

/** A child process started with {@link spawnTool}. */
export interface ToolProcess extends Stoppable {
  readonly what: string;
  readonly pid: number;
  /** Resolves with the exit code (null when a signal ended it) once the process is reaped. */
  readonly exited: Promise<number | null>;
  /** True once it has exited. */
  hasExited(): boolean;
  /** Its exit status once it has exited (null after a signal), undefined before. */
  exitCode(): number | null | undefined;
  /** The last few KiB it wrote to stderr (and stdout when not piped elsewhere). */
  output(): string;
}

/** Options of {@link spawnTool}. */
export interface SpawnToolOptions {
  /** Name in error messages; default the command. */
  readonly what?: string;
  readonly env?: NodeJS.ProcessEnv;
  /** Called with each stdout line; without it stdout is kept with stderr for {@link ToolProcess.output}. */
  readonly onStdoutLine?: (line: string) => void;
}

/**
 * Starts `command args…` with stdin closed; its output is kept (last 4 KiB) for the
 * error message when it fails. A spawn failure (ENOENT) surfaces through `exited`
 * (rejecting) and through {@link ToolProcess.output}.
 */
export function spawnTool(
  command: string,
  args: readonly string[],
  options: SpawnToolOptions = {},
): ToolProcess {
  const what = options.what ?? command;
  const child = spawn(command, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(options.env === undefined ? {} : { env: options.env }),
  });
  let tail = '';
  const keep = (text: string): void => {
    tail = (tail + text).slice(-OUTPUT_TAIL_BYTES);
  };
  child.stderr.setEncoding('utf8').on('data', keep);
  if (options.onStdoutLine === undefined) child.stdout.setEncoding('utf8').on('data', keep);
  else {
    const onLine = options.onStdoutLine;
    let partial = '';
    child.stdout.setEncoding('utf8').on('data', (text: string) => {
      const lines = (partial + text).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) onLine(line);
    });
  }
  let done = false;
  let status: number | null | undefined;
  const exited = new Promise<number | null>((resolve, reject) => {
    child.once('error', (error) => {
      done = true;
      status = null;
      keep(error.message);
      reject(new Error(`${what}: ${error.message}`));
    });
    child.once('exit', (code) => {
      done = true;
      status = code;
      resolve(code);
    });
  });
  exited.catch(() => {});
  if (child.pid !== undefined) trackAlive(child.pid, exited);
  return {
    what,
    pid: child.pid ?? -1,
    exited,
    hasExited: () => done,
    exitCode: () => status,
    output: () => tail.trim(),
    async stop() {
      if (done) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
      await exited.catch(() => null);
      clearTimeout(timer);
    },
  };
}

/** The error of a child that exited when it should not have, with the end of its output. */
export function exitedError(child: ToolProcess, code: number | null, doing: string): Error {
  const out = child.output();
  return new Error(
    `${child.what} exited (${code === null ? 'killed by a signal' : `status ${code}`}) ${doing}${out === '' ? '' : `:\n${out}`}`,
  );
}

/** Pids of children not yet reaped: the `exit` hook's last resort. */
const ALIVE = new Set<number>();

function trackAlive(pid: number, exited: Promise<unknown>): void {
  ALIVE.add(pid);
  const gone = (): void => {
    ALIVE.delete(pid);
  };
  exited.then(gone, gone);
}
const OPEN_SCOPES = new Set<CleanupScope>();
let hooksInstalled = false;

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.once('exit', () => {
    for (const pid of ALIVE) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  });
  for (const [signal, status] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const) {
    process.once(signal, () => {
      void Promise.allSettled([...OPEN_SCOPES].map((s) => s.close())).then(() => process.exit(status));
    });
  }
}

/**
 * What one part of a benchmark started or created, undone in reverse order by
 * {@link close}: children stopped (SIGTERM, then SIGKILL), directories removed.
 */
export class CleanupScope {
  readonly #steps: (() => Promise<void>)[] = [];
  #closing: Promise<void> | undefined;

  constructor() {
    installHooks();
    OPEN_SCOPES.add(this);
  }

  /** Registers a running child (or anything stoppable); returns it. */
  add<T extends Stoppable>(child: T): T {
    if (child.pid !== undefined && child.exited !== undefined) trackAlive(child.pid, child.exited);
    this.#steps.push(() => child.stop());
    return child;
  }

  /** Registers an undo step (remove a directory, close a connection). */
  defer(step: () => Promise<void> | void): void {
    this.#steps.push(async () => {
      await step();
    });
  }

  /** Runs every step, newest first; the first failure is rethrown after all have run. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      let failure: unknown;
      for (const step of this.#steps.reverse()) {
        try {
          await step();
        } catch (error) {
          failure ??= error;
        }
      }
      OPEN_SCOPES.delete(this);
      if (failure !== undefined) throw failure;
    })();
    return this.#closing;
  }
}

const READY_POLL_MS = 20;

/**
 * Waits until `ready()` resolves true (a PID file written, a port answering) for a
 * child that gives no other sign; fails at once with its output if it exits first, or
 * after `timeoutMs`.
 */
export async function waitUntilReady(
  child: ToolProcess,
  ready: () => Promise<boolean>,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (child.hasExited()) throw exitedError(child, child.exitCode() ?? null, 'while starting');
    if (await ready()) return;
    if (performance.now() > deadline)
      throw new Error(`${child.what} did not get ready within ${timeoutMs} ms:\n${child.output()}`);
    await sleep(READY_POLL_MS);
  }
}
