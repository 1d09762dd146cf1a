/*
 * nginx as the cache tier of docs/scale-out.md, for the tests: the configuration block of
 * that page, with its addresses and cache path replaced, inside a main configuration of
 * its own (pid, logs and temp paths in a temp directory; never the system's), run in the
 * foreground on loopback.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { freePort, nginxMainConfig, tempDir } from '@liverestore/testkit';
import type { ExecutionContext } from 'ava';
import { ROOT } from './helpers.js';

/** The ```nginx block of docs/scale-out.md (the first one: the whole configuration). */
export async function documentedConfig(): Promise<string> {
  const page = await readFile(join(ROOT, 'docs', 'scale-out.md'), 'utf8');
  const block = /```nginx\n([\s\S]*?)```/.exec(page);
  if (block === null) throw new Error('docs/scale-out.md has no nginx configuration block');
  return block[1]!;
}

/** A running nginx; `url` is its address. */
export interface Nginx {
  readonly url: string;
  readonly prefix: string;
}

/**
 * Starts nginx with the documented configuration in front of `upstream` (`127.0.0.1:PORT`,
 * or several: one `server` line each, as the page says); stopped (and its directory
 * removed) when the test ends.
 */
export async function startNginx(t: ExecutionContext, upstream: string | readonly string[]): Promise<Nginx> {
  const dir = await tempDir('lr-nginx-');
  // Workers run as an unprivileged user when nginx starts as root: they must reach the cache.
  await chmod(dir.path, 0o755);
  const prefix = dir.path;
  const port = await freePort();
  const documented = await documentedConfig();
  for (const text of ['server 127.0.0.1:8007;', '127.0.0.1:8080', '/var/cache/nginx/liverestore'])
    if (!documented.includes(text))
      throw new Error(`the documented nginx configuration no longer names ${text}`);
  const http = documented
    .replace(
      'server 127.0.0.1:8007;',
      (typeof upstream === 'string' ? [upstream] : upstream).map((u) => `server ${u};`).join(' '),
    )
    .replace('127.0.0.1:8080', `127.0.0.1:${port}`)
    .replace('/var/cache/nginx/liverestore', join(prefix, 'cache'));
  const config = nginxMainConfig({ prefix, http, accessLog: `access_log ${prefix}/access.log;` });
  const configPath = join(prefix, 'nginx.conf');
  await writeFile(configPath, config);
  const child: ChildProcess = spawn('nginx', ['-c', configPath, '-p', prefix, '-g', 'daemon off;'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (s: string) => {
    stderr += s;
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  t.teardown(async () => {
    if (child.exitCode === null) child.kill('SIGTERM');
    await exited;
    await dir.cleanup();
  });
  const url = `http://127.0.0.1:${port}`;
  // Ready once it answers (a 502 is fine: nginx is up); fails when nginx exits first.
  for (;;) {
    if (child.exitCode !== null)
      throw new Error(
        `nginx exited with ${child.exitCode}: ${stderr}${await readFile(join(prefix, 'error.log'), 'utf8').catch(() => '')}`,
      );
    try {
      await fetch(`${url}/metrics`);
      return { url, prefix };
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}
