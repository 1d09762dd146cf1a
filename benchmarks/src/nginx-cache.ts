/**
 * nginx as the cache tier of docs/scale-out.md, for `bench scale`: one of the page's
 * ```nginx blocks (in front of `serve`, or in front of an S3 gateway) with its addresses
 * and cache path replaced, inside a main configuration of our own (pid, logs and temp
 * paths in a scratch directory), run in the foreground on loopback. Its access log has
 * one `STATUS CACHE-STATUS METHOD URI` line per request.
 */

import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, hasNginx, nginxMainConfig } from '@liverestore/testkit';
import { type CleanupScope, spawnTool, waitUntilReady } from './children.js';
import { ToolMissingError } from './errors.js';

const SCALE_OUT_DOC = fileURLToPath(new URL('../../../docs/scale-out.md', import.meta.url));

/** Which documented configuration: the cache in front of `serve`, or in front of S3. */
export type NginxConfigKind = 'serve' | 's3';

/** What each documented block names, replaced by the real addresses and paths. */
const PLACEHOLDERS: Readonly<Record<NginxConfigKind, { upstream: string; listen: string; cache: string }>> = {
  serve: { upstream: '127.0.0.1:8007', listen: '127.0.0.1:8080', cache: '/var/cache/nginx/liverestore' },
  s3: { upstream: '127.0.0.1:7480', listen: '127.0.0.1:8081', cache: '/var/cache/nginx/liverestore-s3' },
};

/** The documented block of `kind`: the one whose upstream is its placeholder address. */
export async function documentedNginxConfig(kind: NginxConfigKind): Promise<string> {
  const page = await readFile(SCALE_OUT_DOC, 'utf8');
  const { upstream, listen, cache } = PLACEHOLDERS[kind];
  for (const match of page.matchAll(/```nginx\n([\s\S]*?)```/g)) {
    const block = match[1]!;
    if (block.includes(`server ${upstream};`) && block.includes(`listen ${listen};`) && block.includes(cache))
      return block;
  }
  throw new Error(
    `docs/scale-out.md has no nginx block with upstream ${upstream}, listen ${listen} and ${cache}`,
  );
}

/** A running nginx. */
export interface NginxCache {
  /** `http://127.0.0.1:PORT` */
  readonly url: string;
  /** Its access log, read after it stopped. */
  readonly accessLog: string;
}

/** Requests of an access log: all, and by cache status (`HIT`, `MISS`, `-` for not cached). */
export interface AccessCounts {
  readonly requests: number;
  readonly byCacheStatus: Readonly<Record<string, number>>;
}

/**
 * Starts nginx with the documented `kind` configuration in front of `upstream`
 * (`127.0.0.1:PORT`), everything in a fresh scratch directory under `dir`, registered in
 * `scope` (stopped and its directory removed when the scope closes).
 */
export async function startNginxCache(
  scope: CleanupScope,
  kind: NginxConfigKind,
  upstream: string,
  dir: string,
): Promise<NginxCache> {
  if (!hasNginx()) throw new ToolMissingError('bench scale runs nginx: apt-get install -y nginx', ['nginx']);
  const prefix = await mkdtemp(join(dir, 'nginx-'));
  scope.defer(() => rm(prefix, { recursive: true, force: true }));
  // Workers run as an unprivileged user when nginx starts as root: they must reach the cache.
  await chmod(prefix, 0o755);
  const port = await freePort();
  const names = PLACEHOLDERS[kind];
  const http = (await documentedNginxConfig(kind))
    .replace(names.upstream, upstream)
    .replace(names.listen, `127.0.0.1:${port}`)
    .replace(names.cache, join(prefix, 'cache'));
  const accessLog = join(prefix, 'access.log');
  const configPath = join(prefix, 'nginx.conf');
  await writeFile(
    configPath,
    nginxMainConfig({
      prefix,
      http,
      accessLog: `log_format scale '$status $upstream_cache_status $request_method $uri';\n  access_log ${accessLog} scale;`,
    }),
  );
  const nginx = scope.add(
    spawnTool('nginx', ['-c', configPath, '-p', prefix, '-g', 'daemon off;'], { what: 'nginx' }),
  );
  const url = `http://127.0.0.1:${port}`;
  // Ready once it answers anything (a 404 or 403 from the upstream is fine).
  await waitUntilReady(nginx, async () => {
    try {
      await (await fetch(`${url}/`)).arrayBuffer();
      return true;
    } catch {
      return false;
    }
  });
  return { url, accessLog };
}

/** Counts the lines of a `scale` access log whose URI contains `pathPart` (e.g. `/chunks/`). */
export function parseNginxAccessLog(text: string, pathPart: string): AccessCounts {
  let requests = 0;
  const byCacheStatus: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const [, cacheStatus, , uri] = line.split(' ');
    if (uri === undefined || !uri.includes(pathPart)) continue;
    requests++;
    byCacheStatus[cacheStatus!] = (byCacheStatus[cacheStatus!] ?? 0) + 1;
  }
  return { requests, byCacheStatus };
}

/** {@link parseNginxAccessLog} of a cache's log file (empty when there is none yet). */
export async function nginxAccessCounts(cache: NginxCache, pathPart: string): Promise<AccessCounts> {
  return parseNginxAccessLog(await readFile(cache.accessLog, 'utf8').catch(() => ''), pathPart);
}
