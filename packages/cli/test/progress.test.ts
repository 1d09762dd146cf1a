/*
 * Progress output (plain lines for logs and pipes, a redrawn bar on a terminal) and the
 * size units of the command line.
 */
import type { Writable } from 'node:stream';
import test from 'ava';
import { formatBytes, parseBytes } from '../src/index.js';
import { Progress } from '../src/progress.js';

/** A stream stand-in that records every write; `isTTY` true makes it a terminal. */
function fakeStream(isTTY: boolean, columns = 80): { writes: string[]; stream: Writable } {
  const writes: string[] = [];
  const stream = {
    isTTY,
    columns,
    write(chunk: string | Uint8Array): boolean {
      writes.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString());
      return true;
    },
  };
  return { writes, stream: stream as unknown as Writable };
}

const ESC = '\x1b';

test('non-TTY: plain lines only, each ending in a newline, no \\r, no ANSI; the last is 100%', async (t) => {
  const { writes, stream } = fakeStream(false);
  const progress = new Progress('backup', 10 * 1024 * 1024, { out: stream });
  for (let done = 0; done <= 10 * 1024 * 1024; done += 1024 * 1024) progress.update(done);
  progress.finish();
  t.true(writes.length >= 1);
  t.true(writes.length <= 2, 'at most one line every 5 s plus the final line');
  for (const w of writes) {
    t.true(w.endsWith('\n'), JSON.stringify(w));
    t.is(w.indexOf('\n'), w.length - 1, 'one line per write');
    t.false(w.includes('\r'), 'no carriage return');
    t.false(w.includes(ESC), 'no escape sequence');
  }
  t.regex(writes.at(-1)!, /^backup 10\.0 MiB\/10\.0 MiB \(100%\) [\d.]+ MB\/s\n$/);
});

test('non-TTY: updates are throttled to one line per 5 s (a fast job prints only its final line)', (t) => {
  const { writes, stream } = fakeStream(false);
  let nowMs = 0;
  const progress = new Progress('verify', 1000, { out: stream, unit: 'items', now: () => nowMs });
  for (let i = 0; i < 1000; i++, nowMs += 4) progress.update(i);
  t.is(writes.length, 0, 'no line within the first 5 s');
  nowMs = 5000;
  progress.update(500);
  t.deepEqual(writes, ['verify 500/1000 (50%)\n'], 'one line once 5 s have passed');
  nowMs = 9999;
  progress.update(600);
  t.is(writes.length, 1, 'not again within 5 s of the last');
  progress.finish();
  t.is(writes.at(-1), 'verify 600/1000 (60%)\n');
});

test('TTY: a redrawn bar with \\r, at most 10 draws a second, a final newline', (t) => {
  const { writes, stream } = fakeStream(true, 100);
  let nowMs = 0;
  const progress = new Progress('backup', 4 * 1024 * 1024, { out: stream, now: () => nowMs });
  progress.update(512 * 1024);
  t.is(writes.length, 0, 'no draw in the first 100 ms');
  nowMs = 100;
  progress.update(1024 * 1024);
  t.is(writes.length, 1, 'the first update after 100 ms draws');
  nowMs = 199;
  progress.update(1.5 * 1024 * 1024);
  t.is(writes.length, 1, 'a second update within 100 ms does not');
  nowMs = 200;
  progress.update(2 * 1024 * 1024);
  t.is(writes.length, 2, 'after 100 ms it draws again');
  progress.finish();
  t.is(writes.length, 3);
  for (const w of writes) {
    t.true(w.startsWith('\r'), `redraws from the line start: ${JSON.stringify(w)}`);
    t.regex(w, /\[#*\.*\]/, 'has a bar');
  }
  t.false(writes[0]!.endsWith('\n'), 'an intermediate draw keeps the line');
  t.regex(writes[1]!, /\(50%\)/);
  t.regex(writes[1]!, /ETA \d+s/);
  t.regex(writes[1]!, /\[#{5,}\.{5,}\]/, 'half a bar at 50%');
  t.true(writes[2]!.endsWith('\n'), 'the final draw ends the line');
  t.regex(writes[2]!, /\[#+\.+\] backup 2\.0 MiB\/4\.0 MiB \(50%\)/);
  // The bar fits the terminal.
  const visible = writes[1]!.replaceAll('\r', '').replaceAll(`${ESC}[2K`, '').replaceAll('\n', '');
  t.true(visible.length <= 100, `fits 100 columns: ${visible.length}`);
});

test('TTY: a full bar at 100%', (t) => {
  const { writes, stream } = fakeStream(true);
  const progress = new Progress('backup', 2048, { out: stream });
  progress.update(2048);
  progress.finish();
  t.is(writes.length, 1, 'update at the total does not draw; finish does');
  t.regex(writes[0]!, /\[#+\] backup 2\.0 KiB\/2\.0 KiB \(100%\)/);
  t.false(writes[0]!.includes('.]'), 'no empty cells');
});

test('quiet: nothing at all, on a TTY or not', (t) => {
  for (const tty of [false, true]) {
    const { writes, stream } = fakeStream(tty);
    const progress = new Progress('backup', 100, { out: stream, quiet: true });
    progress.update(50);
    progress.finish();
    t.deepEqual(writes, []);
  }
});

test('a zero total is 100%, not NaN', (t) => {
  const { writes, stream } = fakeStream(false);
  new Progress('backup', 0, { out: stream }).finish();
  t.regex(writes[0]!, /\(100%\)/);
  t.false(writes[0]!.includes('NaN'));
});

const sizes: [string, number][] = [
  ['4MiB', 4 * 1024 * 1024],
  ['512k', 512 * 1024],
  ['1G', 1024 ** 3],
  ['1048576', 1048576],
  ['64KiB', 65536],
  ['4M', 4 * 1024 * 1024],
  ['1MB', 1_000_000],
  ['1kb', 1000],
  ['2T', 2 * 1024 ** 4],
  ['1.5k', 1536],
  [' 4 MiB ', 4 * 1024 * 1024],
  ['0', 0],
  ['100b', 100],
];

for (const [text, bytes] of sizes) {
  test(`parseBytes(${JSON.stringify(text)}) = ${bytes}`, (t) => {
    t.is(parseBytes(text, '--size'), bytes);
  });
}

for (const bad of [
  '',
  'abc',
  '-1',
  '4XB',
  '4 MiB s',
  '1e6',
  '0x100',
  '1.3',
  '0.5k.5',
  'MiB',
  '1,5M',
  '99999999999T',
]) {
  test(`parseBytes(${JSON.stringify(bad)}) is a usage error naming the option and the value`, (t) => {
    const err = t.throws(() => parseBytes(bad, '--chunk-size'), { code: 'ERR_LR_USAGE' });
    t.true(err?.message.includes('--chunk-size'));
    t.true(err?.message.includes(`"${bad}"`));
  });
}

const formatted: [number, string][] = [
  [0, '0 B'],
  [1023, '1023 B'],
  [1024, '1.0 KiB'],
  [1536, '1.5 KiB'],
  [4 * 1024 * 1024, '4.0 MiB'],
  [100 * 1024 * 1024, '100 MiB'],
  [1.5 * 1024 ** 3, '1.5 GiB'],
  [2 * 1024 ** 4, '2.0 TiB'],
  [2048 * 1024 ** 4, '2048 TiB'],
];

for (const [bytes, text] of formatted) {
  test(`formatBytes(${bytes}) = ${text}`, (t) => {
    t.is(formatBytes(bytes), text);
  });
}

test('formatBytes and parseBytes round-trip on whole binary units', (t) => {
  for (const text of ['1.0 KiB', '4.0 MiB', '1.5 GiB', '100 MiB'])
    t.is(formatBytes(parseBytes(text, 'x')), text);
});
