/**
 * The reader side of `bench scale`: N readers spread over P processes
 * (scale-reader-child.ts), started together. Every process opens its readers first and
 * says `ready`; only when all are ready does each get `go`, so the wall time counts the
 * copies, not Node's start-up or the snapshot opening.
 */

import { type ChildProcess, fork } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import type { CleanupScope } from './children.js';
import type {
  ChildMessage,
  MemoryPeaks,
  ReaderChildConfig,
  ReaderOutcome,
  ReaderTask,
} from './scale-reader-child.js';

const CHILD = fileURLToPath(new URL('./scale-reader-child.js', import.meta.url));
/** Bytes of a child's stderr kept for the error when it fails. */
const STDERR_TAIL_BYTES = 4096;

/** Reader settings every process shares. */
export type ReaderSettings = Omit<ReaderChildConfig, 'readers' | 'origin'>;

/** One reader process's answer, with its pid. */
export interface ProcessOutcome {
  readonly pid: number;
  readonly readers: readonly ReaderOutcome[];
  readonly peakRssBytes: number | null;
  readonly memory: MemoryPeaks;
  readonly cache: Readonly<Record<string, number>>;
}

/** What one run of N readers gave. */
export interface ReadersRun {
  /** From `go` to the last reader's answer, seconds. */
  readonly wallSeconds: number;
  readonly processes: readonly ProcessOutcome[];
}

/**
 * Reader `r` of `count` reads `tasks[r % tasks.length]`; processes hold contiguous blocks
 * of readers, so each process has (nearly) every drive and the same drive is read in
 * several processes at once: the load a shared cache tier is for.
 */
export function planReaders<T>(tasks: readonly T[], count: number, processes: number): T[][] {
  const used = Math.min(processes, count);
  const plan: T[][] = Array.from({ length: used }, () => []);
  for (let r = 0; r < count; r++) plan[Math.floor((r * used) / count)]!.push(tasks[r % tasks.length]!);
  return plan;
}

/** A forked reader process, its next message awaited one at a time. */
class ReaderProcess {
  readonly #child: ChildProcess;
  readonly #queue: ChildMessage[] = [];
  #waiting: ((m: ChildMessage) => void) | undefined;
  #failed: ((e: Error) => void) | undefined;
  #stderr = '';
  readonly exited: Promise<number | null>;

  constructor(config: ReaderChildConfig, env: NodeJS.ProcessEnv) {
    this.#child = fork(CHILD, [JSON.stringify(config)], {
      env,
      stdio: ['ignore', 'inherit', 'pipe', 'ipc'],
      ...(config.gcEveryMs > 0 ? { execArgv: [...process.execArgv, '--expose-gc'] } : {}),
    });
    this.#child.stderr!.setEncoding('utf8').on('data', (text: string) => {
      this.#stderr = (this.#stderr + text).slice(-STDERR_TAIL_BYTES);
    });
    this.#child.on('message', (m: ChildMessage) => {
      const waiting = this.#waiting;
      this.#waiting = undefined;
      if (waiting !== undefined) waiting(m);
      else this.#queue.push(m);
    });
    this.exited = new Promise((resolve) => {
      this.#child.once('exit', (code) => {
        resolve(code);
        this.#failed?.(
          new Error(`reader process ${this.pid} exited (${code}) early:\n${this.#stderr.trim()}`),
        );
      });
    });
  }

  get pid(): number {
    return this.#child.pid ?? -1;
  }

  /** The next message of type `type`; rejects when the process exits first. */
  next<T extends ChildMessage['type']>(type: T): Promise<Extract<ChildMessage, { type: T }>> {
    return new Promise((resolve, reject) => {
      const take = (m: ChildMessage): void => {
        this.#failed = undefined;
        if (m.type === type) resolve(m as Extract<ChildMessage, { type: T }>);
        else reject(new Error(`reader process ${this.pid}: expected ${type}, got ${m.type}`));
      };
      const queued = this.#queue.shift();
      if (queued !== undefined) return take(queued);
      if (this.#child.exitCode !== null || this.#child.signalCode !== null)
        return reject(new Error(`reader process ${this.pid} has exited:\n${this.#stderr.trim()}`));
      this.#waiting = take;
      this.#failed = reject;
    });
  }

  go(): void {
    this.#child.send({ type: 'go' });
  }

  async stop(): Promise<void> {
    if (this.#child.exitCode === null && this.#child.signalCode === null) this.#child.kill('SIGTERM');
    await this.exited;
  }
}

/**
 * Runs one process per block of `plan` against `origin` (children get `env`), all
 * started together; resolves once every process has answered and exited.
 */
export async function runReaders(
  scope: CleanupScope,
  origin: string,
  plan: readonly (readonly ReaderTask[])[],
  settings: ReaderSettings,
  env: NodeJS.ProcessEnv,
): Promise<ReadersRun> {
  const children = plan.map((readers) => {
    const child = new ReaderProcess({ ...settings, origin, readers }, env);
    scope.add({ pid: child.pid, exited: child.exited, stop: () => child.stop() });
    return child;
  });
  await Promise.all(children.map((c) => c.next('ready')));
  const started = performance.now();
  for (const c of children) c.go();
  const done = await Promise.all(children.map((c) => c.next('done')));
  const wallSeconds = (performance.now() - started) / 1000;
  await Promise.all(children.map((c) => c.exited));
  return {
    wallSeconds,
    processes: done.map((d, i) => ({
      pid: children[i]!.pid,
      readers: d.readers,
      peakRssBytes: d.peakRssBytes,
      memory: d.memory,
      cache: d.cache,
    })),
  };
}
