/*
 * nginx as tests and benchmarks run it: the main configuration around an `http` block of
 * docs/scale-out.md, with pid, logs and temp paths in a folder of the caller's (never the
 * system's), for `nginx -c FILE -p PREFIX -g 'daemon off;'`.
 */
import { spawnSync } from 'node:child_process';

/** True when nginx runs (`nginx -v`: it knows no `--version`). */
export function hasNginx(): boolean {
  const result = spawnSync('nginx', ['-v'], { stdio: 'ignore', timeout: 30_000 });
  return result.error === undefined && result.status === 0;
}

/** What {@link nginxMainConfig} wraps around the `http` block. */
export interface NginxMainConfig {
  /** The folder of pid, error log and temp paths. */
  readonly prefix: string;
  /** The directives of the `http` block (the documented configuration, addresses replaced). */
  readonly http: string;
  /** `access_log` line of the `http` block, e.g. `access_log /x/access.log;`. */
  readonly accessLog: string;
}

/**
 * The main configuration. nginx started as root runs its workers as an unprivileged user,
 * which cannot reach a cache below a private folder (`mktemp -d` makes 0700 ones: every
 * request was a 500), so as root the workers run as root too.
 */
export function nginxMainConfig({ prefix, http, accessLog }: NginxMainConfig): string {
  return `${process.getuid?.() === 0 ? 'user root;\n' : ''}worker_processes 2;
error_log ${prefix}/error.log warn;
pid ${prefix}/nginx.pid;
events { worker_connections 1024; }
http {
  ${accessLog}
  client_body_temp_path ${prefix}/body;
  proxy_temp_path ${prefix}/proxy;
  fastcgi_temp_path ${prefix}/fastcgi;
  uwsgi_temp_path ${prefix}/uwsgi;
  scgi_temp_path ${prefix}/scgi;
${http}
}
`;
}
