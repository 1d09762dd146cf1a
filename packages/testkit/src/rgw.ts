/*
 * A real S3 server for tests: Ceph RGW (scripts/rgw-up.sh). `.ci/run` starts one and
 * exports LIVERESTORE_TEST_S3_*; on a developer machine with Debian's radosgw, ceph-mon
 * and ceph-osd installed, the first test that asks starts one itself (under a file lock,
 * so parallel test processes share it) and leaves it running for the next run
 * (`scripts/rgw-down.sh /tmp/liverestore-test-rgw` stops it). Without the packages a test
 * is skipped, or fails in CI (LIVERESTORE_REQUIRE_TOOLS=1).
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from './free-port.js';
import { hasTool, requireTool, type ToolContext } from './tools.js';

/** How to reach the test RGW: endpoint, the test user's keys, and its cluster's directory. */
export interface TestRgw {
  readonly endpoint: string;
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  /** Where its ceph.conf lives (for a second gateway on the same cluster). */
  readonly dir: string;
}

/** Directory and ports of the RGW that tests start for themselves (not 7480/3300: a user's own may run there). */
const DEV_RGW_DIR = '/tmp/liverestore-test-rgw';
const DEV_RGW_PORT = 7488;
const DEV_RGW_MON_PORT = 3308;

const SCRIPTS = fileURLToPath(new URL('../../../../scripts/', import.meta.url));

function fromEnv(env: NodeJS.ProcessEnv): TestRgw | undefined {
  const endpoint = env.LIVERESTORE_TEST_S3_ENDPOINT;
  if (endpoint === undefined || endpoint === '') return undefined;
  return {
    endpoint,
    accessKeyId: env.LIVERESTORE_TEST_S3_ACCESS_KEY ?? 'TESTAK',
    secretAccessKey: env.LIVERESTORE_TEST_S3_SECRET_KEY ?? 'TESTSK',
    dir: env.LIVERESTORE_TEST_RGW_DIR ?? DEV_RGW_DIR,
  };
}

function parseEnvFile(path: string): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const at = line.indexOf('=');
    if (at > 0) out[line.slice(0, at)] = line.slice(at + 1);
  }
  return out;
}

let started: TestRgw | undefined;

/**
 * The test RGW, started if needed; undefined when there is none (the test is then over:
 * skipped, or failed in CI). Use as `const rgw = testRgw(t); if (rgw === undefined) return;`.
 */
export function testRgw(t: ToolContext, env: NodeJS.ProcessEnv = process.env): TestRgw | undefined {
  const given = fromEnv(env);
  if (given !== undefined) return given;
  if (started !== undefined) return started;
  if (!hasTool('radosgw') || !hasTool('flock')) {
    requireTool(t, 'radosgw', env);
    return undefined;
  }
  // One start for all test processes: the first takes the lock and starts it, the others
  // wait on the lock and find it answering.
  const check = `curl -s -m 2 -o /dev/null http://127.0.0.1:${DEV_RGW_PORT}/ && test -f ${DEV_RGW_DIR}/s3.env`;
  const result = spawnSync(
    'flock',
    // -o: the daemons rgw-up.sh starts must not inherit (and so hold forever) the lock.
    ['-o', `${DEV_RGW_DIR}.lock`, 'bash', '-c', `${check} || "${join(SCRIPTS, 'rgw-up.sh')}" ${DEV_RGW_DIR}`],
    {
      env: { ...process.env, RGW_PORT: String(DEV_RGW_PORT), RGW_MON_PORT: String(DEV_RGW_MON_PORT) },
      encoding: 'utf8',
      timeout: 120_000,
    },
  );
  const envFile = join(DEV_RGW_DIR, 's3.env');
  if (result.status !== 0 || !existsSync(envFile)) {
    t.fail(`could not start the test RGW: ${result.stderr ?? ''}${result.error?.message ?? ''}`);
    return undefined;
  }
  started = fromEnv(parseEnvFile(envFile));
  return started;
}

/**
 * A second radosgw of the test cluster on its own port, for fault tests: stopping it
 * (`stop`, SIGTERM) and starting it again (`start`) leaves the objects in place (they live
 * in the cluster's OSD) and other tests' gateway untouched.
 */
export class ExtraGateway {
  #child: ChildProcess | undefined;

  private constructor(
    readonly rgw: TestRgw,
    readonly port: number,
  ) {}

  static async open(rgw: TestRgw): Promise<ExtraGateway> {
    const gateway = new ExtraGateway(rgw, await freePort());
    await gateway.start();
    return gateway;
  }

  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Starts the gateway and resolves once it answers HTTP. */
  async start(): Promise<void> {
    if (this.#child !== undefined) return;
    const name = `extra-${this.port}`;
    const run = join(this.rgw.dir, 'run');
    const child = spawn(
      'radosgw',
      [
        '-f',
        '-c',
        join(this.rgw.dir, 'ceph.conf'),
        '-n',
        'client.rgw.a',
        '--rgw-frontends',
        `beast endpoint=127.0.0.1:${this.port}`,
        '--pid-file',
        join(run, `${name}.pid`),
        '--admin-socket',
        join(run, `${name}.asok`),
        '--log-file',
        join(this.rgw.dir, `${name}.log`),
      ],
      { stdio: 'ignore' },
    );
    this.#child = child;
    const exited = new Promise<never>((_, reject) =>
      child.once('exit', (code) => reject(new Error(`radosgw on port ${this.port} exited with ${code}`))),
    );
    for (;;) {
      const up = await Promise.race([answers(this.endpoint), exited]);
      if (up) return;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /**
   * Stops the gateway and resolves once the process has exited: SIGTERM, a graceful
   * shutdown that takes radosgw 5–10 s, or SIGKILL, a crash that takes none.
   */
  async stop(signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<void> {
    const child = this.#child;
    if (child === undefined) return;
    this.#child = undefined;
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill(signal);
    await exited;
  }
}

async function answers(endpoint: string): Promise<boolean> {
  try {
    const response = await fetch(endpoint, { signal: AbortSignal.timeout(1000) });
    await response.arrayBuffer();
    return true;
  } catch {
    return false;
  }
}
