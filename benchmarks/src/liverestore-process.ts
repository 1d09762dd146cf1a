/**
 * Runs a long-lived `liverestore` command (serve, nbd) in its own process, as a server
 * would run in production, and waits for the address it prints on its first stdout line.
 */

import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const BIN = fileURLToPath(new URL('../../../packages/cli/bin/liverestore.js', import.meta.url));

/** A running liverestore server process. */
export interface LiverestoreProcess {
  /** The first line it printed: a URL (serve) or HOST:PORT (nbd). */
  readonly address: string;
  stop(): void;
}

/** Starts `liverestore ARGS…`; rejects if it exits before printing its address. */
export async function startLiverestoreProcess(args: readonly string[]): Promise<LiverestoreProcess> {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  const stop = (): void => {
    child.kill('SIGTERM');
  };
  try {
    const address = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout.setEncoding('utf8').on('data', (text: string) => {
        out += text;
        const nl = out.indexOf('\n');
        if (nl >= 0) resolve(out.slice(0, nl).trim());
      });
      child.once('error', (error) => reject(new Error(`liverestore ${args[0]}: ${error.message}`)));
      child.once('exit', (code, signal) =>
        reject(new Error(`liverestore ${args[0]} exited (${code ?? signal})`)),
      );
    });
    child.stdout.resume();
    return { address, stop };
  } catch (error) {
    stop();
    throw error;
  }
}
