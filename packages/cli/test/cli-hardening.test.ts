/*
 * Hardening of the command line against hostile or absurd input (issue 15): unbounded
 * --workers, a --rate-limit too slow for Node's timers, a negative size, and error text
 * from a malicious server printed raw (terminal escapes, forged lines).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import test from 'ava';
import { MAX_WORKERS } from '../src/option-values.js';
import { printableLine } from '../src/terminal-text.js';
import { assertCliError, runIn } from './helpers.js';

const workersCases: readonly (readonly string[])[] = [
  ['restore', '--from', '/nonexistent', 'vm/100', 'drive-scsi0', '--out', '/nonexistent/x.img'],
  ['nbd', '--from', '/nonexistent', 'vm/100'],
  ['live-restore', '--from', '/nonexistent', '--target-dir', '/nonexistent/t', 'vm/100'],
];

for (const argv of workersCases) {
  test(`${argv[0]} --workers 100000: ERR_LR_USAGE naming the bound, exit 2`, async (t) => {
    const out = await runIn([...argv, '--workers', '100000']);
    const line = assertCliError(t, out, 'ERR_LR_USAGE', 2);
    t.true(line.includes(`from 0 to ${MAX_WORKERS}`), line);
    t.true(line.includes('100000'), line);
  });
}

test('--rate-limit 1B/s (live-restore, demo): ERR_LR_USAGE naming the 4KiB/s minimum, exit 2', async (t) => {
  const live = await runIn([
    'live-restore',
    '--from',
    '/nonexistent',
    '--target-dir',
    '/nonexistent/t',
    'vm/100',
    '--rate-limit',
    '1B/s',
  ]);
  t.true(assertCliError(t, live, 'ERR_LR_USAGE', 2).includes('at least 4KiB/s'));
  const demo = await runIn(['demo', '--rate-limit', '4095']);
  t.true(assertCliError(t, demo, 'ERR_LR_USAGE', 2).includes('at least 4KiB/s'));
});

test('--cache-size -1 and --workers -1: the value is refused by its own check, not as "ambiguous"', async (t) => {
  const size = await runIn([
    'restore',
    '--from',
    '/nonexistent',
    'vm/100',
    'd',
    '--out',
    '/x',
    '--cache-size',
    '-1',
  ]);
  const line = assertCliError(t, size, 'ERR_LR_USAGE', 2);
  t.true(line.includes('--cache-size must be a size'), line);
  t.false(line.includes('ambiguous'), line);
  const workers = await runIn(['nbd', '--from', '/nonexistent', 'vm/100', '--workers', '-1']);
  t.true(assertCliError(t, workers, 'ERR_LR_USAGE', 2).includes('--workers must be an integer from 0'));
});

test('printableLine escapes C0, DEL, C1 and line separators and keeps other text', (t) => {
  t.is(
    printableLine('a\u001b[2Jb\r\nc\u0000\u007f\u009b\u2028 ünï ✓'),
    'a\\x1b[2Jb\\r\\nc\\x00\\x7f\\x9b\\u2028 ünï ✓',
  );
});

async function maliciousServer(message: string): Promise<{ url: string; server: Server }> {
  const server = createServer((_req, res) => {
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: { code: 'ERR_LR_SNAPSHOT_NOT_FOUND', message } }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

test("a malicious server's error text reaches stderr as one line with its control characters escaped", async (t) => {
  const evil = 'gone\u001b]0;pwned\u0007\u001b[2J\r\nliverestore: ERR_LR_FAKE: forged line';
  const { url, server } = await maliciousServer(evil);
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const out = await runIn(['restore', '--from', url, 'vm/100', 'drive-scsi0', '--out', '/nonexistent/x.img']);
  const line = assertCliError(t, out, 'ERR_LR_SNAPSHOT_NOT_FOUND');
  // biome-ignore lint/suspicious/noControlCharactersInRegex: looking for control characters is the point
  t.false(/[\u0000-\u001f\u007f-\u009f]/.test(out.stderr.slice(0, -1)), JSON.stringify(out.stderr));
  t.true(line.includes('\\x1b[2J\\r\\nliverestore: ERR_LR_FAKE: forged line'), line);
});
