/**
 * A static HTTP server from Debian (lighttpd) serving a directory on 127.0.0.1: the
 * "raw image behind plain HTTP" that nbdkit's curl plugin reads in `bench qemu`. Its
 * access log (status, bytes sent, path) is how the benchmark counts what was fetched;
 * lighttpd writes that log with up to a second of delay, so it is read after the
 * server has stopped.
 */

import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { freePort } from '@liverestore/testkit';
import { type CleanupScope, spawnTool, type ToolProcess, waitUntilReady } from './children.js';

/** A running lighttpd. */
export interface StaticHttpServer {
  readonly process: ToolProcess;
  /** `http://127.0.0.1:PORT` */
  readonly baseUrl: string;
  /** `127.0.0.1:PORT`, for a proxy in front of it. */
  readonly host: string;
  /** Its access log: one `STATUS BYTES PATH` line per request. */
  readonly accessLog: string;
}

/** Requests for one path in an access log and the body bytes sent for them. */
export interface AccessTotals {
  readonly requests: number;
  readonly bytes: number;
}

/** A lighttpd.conf string value (the paths are ours, but quote them properly anyway). */
function quoted(value: string): string {
  return `"${value.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

/**
 * Starts lighttpd in the foreground serving `root`, with its config and logs in
 * `workDir`, registered in `scope`; resolves once it answers HTTP.
 */
export async function startStaticHttp(
  scope: CleanupScope,
  root: string,
  workDir: string,
): Promise<StaticHttpServer> {
  const port = await freePort();
  const accessLog = join(workDir, 'access.log');
  const config = join(workDir, 'lighttpd.conf');
  await writeFile(
    config,
    [
      `server.document-root = ${quoted(root)}`,
      `server.bind = "127.0.0.1"`,
      `server.port = ${port}`,
      `server.errorlog = ${quoted(join(workDir, 'error.log'))}`,
      `server.modules = ("mod_accesslog")`,
      `accesslog.filename = ${quoted(accessLog)}`,
      `accesslog.format = "%s %b %U"`,
      '',
    ].join('\n'),
  );
  const process = scope.add(spawnTool('lighttpd', ['-D', '-f', config], { what: 'lighttpd' }));
  const baseUrl = `http://127.0.0.1:${port}`;
  await waitUntilReady(process, async () => {
    try {
      await (await fetch(`${baseUrl}/`, { method: 'HEAD' })).arrayBuffer();
      return true;
    } catch {
      return false;
    }
  });
  return { process, baseUrl, host: `127.0.0.1:${port}`, accessLog };
}

/** Sums the access log's requests for `path` (e.g. `/drive-scsi0.raw`) and their bytes. */
export function parseAccessLog(text: string, path: string): AccessTotals {
  let requests = 0;
  let bytes = 0;
  for (const line of text.split('\n')) {
    const [status, sent, url] = line.split(' ');
    if (url !== path || status === undefined) continue;
    requests++;
    // lighttpd logs "-" for no body.
    const n = Number(sent);
    if (Number.isFinite(n)) bytes += n;
  }
  return { requests, bytes };
}

/** {@link parseAccessLog} of a stopped server's log file. */
export async function accessTotals(server: StaticHttpServer, path: string): Promise<AccessTotals> {
  return parseAccessLog(await readFile(server.accessLog, 'utf8').catch(() => ''), path);
}
