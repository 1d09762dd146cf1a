/*
 * "Did you mean": a mistyped command, option or snapshot is answered with the names that
 * exist, through the real binary's error contract (one line, exit 2 or 1).
 */
import { join } from 'node:path';
import test from 'ava';
import { assertCliError, cli, MiB, runIn, testDir, vmArgs, writeVm } from './helpers.js';

test('a mistyped command or option names the one that exists', async (t) => {
  const cases: [string[], RegExp][] = [
    [['resotre'], /unknown command "resotre"; did you mean restore\? \(commands: demo, /],
    [
      ['restore', '--frmo', 'x'],
      /^liverestore: ERR_LR_USAGE: restore: unknown option --frmo; did you mean --from\?/,
    ],
    [['snapshots', '--stor', 'x'], /unknown option --stor; did you mean --store\?/],
  ];
  for (const [argv, message] of cases) {
    const line = assertCliError(t, await cli(argv), 'ERR_LR_USAGE', 2);
    t.regex(line, message, argv.join(' '));
  }
  const far = assertCliError(t, await cli(['restore', '--xyzzy']), 'ERR_LR_USAGE', 2);
  t.notRegex(far, /did you mean/, 'nothing close: no guess');
  t.regex(far, /see liverestore restore --help/);
});

test('--help lists --version and --help', async (t) => {
  const out = await runIn(['--help']);
  t.is(out.code, 0);
  t.regex(out.stdout, /^ {2}-V, --version {2}/m);
  t.regex(out.stdout, /^ {2}-h, --help {5}/m);
});

test('a mistyped snapshot lists the ones that exist where the user looked', async (t) => {
  const dir = await testDir(t);
  const store = join(dir, 'store');
  const vm = await writeVm(dir, { sizes: [1 * MiB, 1 * MiB] });
  for (const id of ['100', '101']) {
    const r = await runIn(['backup', '--store', store, '--snapshot', `vm/${id}`, ...vmArgs(vm)]);
    t.is(r.code, 0, r.stderr);
  }
  const list = await runIn(['snapshots', '--store', store]);
  const snapshot100 = list.stdout.split('\n').find((l) => l.startsWith('vm/100/'))!;
  const time = snapshot100.split('/')[2]!.split(/\s/)[0]!;

  const group = assertCliError(
    t,
    await runIn(['verify', '--store', store, 'vm/1000']),
    'ERR_LR_SNAPSHOT_NOT_FOUND',
  );
  t.regex(group, /no snapshot vm\/1000 in the root namespace of .*; did you mean vm\/100 or vm\/101\?/);

  const wrongTime = time.replace(
    /:(\d\d)Z$/,
    (_, s: string) => `:${String((Number(s) + 7) % 60).padStart(2, '0')}Z`,
  );
  const snap = assertCliError(
    t,
    await runIn([
      'restore',
      '--from',
      store,
      `vm/100/${wrongTime}`,
      'drive-scsi0.img',
      '--out',
      join(dir, 'x'),
    ]),
    'ERR_LR_SNAPSHOT_NOT_FOUND',
  );
  t.true(snap.includes(`did you mean vm/100/${time}?`), snap);

  const unrelated = assertCliError(
    t,
    await runIn(['verify', '--store', store, 'ct/7']),
    'ERR_LR_SNAPSHOT_NOT_FOUND',
  );
  t.regex(unrelated, /its groups: vm\/100, vm\/101$/);
});
