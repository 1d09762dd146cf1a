import { PassThrough } from 'node:stream';
import test from 'ava';
import {
  BENCHMARKS,
  type Benchmark,
  benchmarkHelp,
  parseBenchArgs,
  parseBytes,
  parseList,
  runCli,
  UsageError,
} from '../src/index.js';
import { fakeResult } from './helpers.js';

const fake: Benchmark = {
  name: 'fake',
  summary: 'a fake',
  description: 'Does nothing.',
  defaultSamples: 4,
  options: [
    { name: 'size', type: 'string', valueName: 'SIZE', description: 'image size', defaultText: '2GiB' },
  ],
  run: async () => fakeResult(),
};

function capture(): {
  io: { stdout: PassThrough; stderr: PassThrough };
  out: () => string;
  err: () => string;
} {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (d: Buffer) => {
    out += d.toString();
  });
  stderr.on('data', (d: Buffer) => {
    err += d.toString();
  });
  return { io: { stdout, stderr }, out: () => out, err: () => err };
}

test('the registry holds codecs and backup, and every benchmark has help text', (t) => {
  const names = BENCHMARKS.map((b) => b.name);
  t.true(names.includes('codecs') && names.includes('backup'));
  t.is(new Set(names).size, names.length, 'names are unique');
  for (const b of BENCHMARKS) {
    const help = benchmarkHelp(b);
    t.true(help.startsWith(`Usage: pnpm bench ${b.name} [options]`));
    for (const o of [...b.options.map((x) => x.name), 'samples', 'json', 'out', 'help']) {
      t.true(help.includes(`--${o}`), `${b.name} --help lists --${o}`);
    }
  }
});

test('parseBenchArgs accepts common and own options and rejects others', (t) => {
  const values = parseBenchArgs(fake, ['--samples', '2', '--json', '--size', '1GiB']);
  t.is(values.samples, '2');
  t.is(values.json, true);
  t.is(values.size, '1GiB');
  t.throws(() => parseBenchArgs(fake, ['--nope']), { instanceOf: UsageError });
  t.throws(() => parseBenchArgs(fake, ['extra']), { instanceOf: UsageError });
});

test('runCli: --help, unknown benchmark, bad --samples', async (t) => {
  const help = capture();
  t.is(await runCli([fake], ['fake', '--help'], help.io), 0);
  t.true(help.out().includes('--samples N'));
  t.true(help.out().includes('(default: 4)'));

  const unknown = capture();
  t.is(await runCli([fake], ['nope'], unknown.io), 2);
  t.regex(unknown.err(), /unknown benchmark "nope"/);

  const bad = capture();
  t.is(await runCli([fake], ['fake', '--samples', '0'], bad.io), 2);
  t.regex(bad.err(), /--samples must be a positive integer/);

  const none = capture();
  t.is(await runCli([fake], [], none.io), 2);
  t.true(none.out().includes('fake'));
});

test('size and list parsing', (t) => {
  t.is(parseBytes('2GiB', '--size'), 2 * 1024 ** 3);
  t.is(parseBytes('512M', '--size'), 512 * 1024 ** 2);
  t.is(parseBytes('1.5g', '--size'), 1.5 * 1024 ** 3);
  t.is(parseBytes('10MB', '--size'), 10_000_000);
  t.throws(() => parseBytes('lots', '--size'), { instanceOf: UsageError });
  t.deepEqual(parseList(' text, random,,vm '), ['text', 'random', 'vm']);
});
