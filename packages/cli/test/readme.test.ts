/*
 * "The two README commands work from a fresh clone": README.md opens with exactly two
 * commands (demo, then test), CI runs the second one verbatim, and the first one works in
 * a fresh `git clone` of HEAD. The second one is what CI itself runs on a clean clone,
 * so here it runs only with LIVERESTORE_FULL_README_TEST=1 (it would double the suite's
 * time). Both nested runs get LIVERESTORE_NESTED=1, which makes this test skip itself
 * there, so nothing recurses.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { exec, type Outcome, ROOT, testDir } from './helpers.js';
import { hasTool } from './tools.js';

const NESTED_TIMEOUT_MS = 5 * 60_000;

/** The commands of the code block that must follow README.md's title line. */
function readmeCommands(readme: string): string[] {
  const textLines = readme.split('\n');
  let at = 0;
  if (!textLines[at]?.startsWith('# ')) throw new Error('README.md does not start with a "# " title line');
  at++;
  while (at < textLines.length && textLines[at]!.trim() === '') at++;
  if (!/^```(?:sh|bash|shell|console)?\s*$/.test(textLines[at] ?? ''))
    throw new Error(`after the title README.md must open a code block, found: ${textLines[at]}`);
  at++;
  const commands: string[] = [];
  while (at < textLines.length && !textLines[at]!.startsWith('```')) {
    if (textLines[at]!.trim() !== '') commands.push(textLines[at]!.trim());
    at++;
  }
  if (at >= textLines.length) throw new Error('the code block after the title is never closed');
  return commands;
}

test('README.md opens with a code block of exactly two commands: …demo, then …test; .ci/run runs the second verbatim', async (t) => {
  const readme = await readFile(join(ROOT, 'README.md'), 'utf8');
  const commands = readmeCommands(readme);
  t.is(commands.length, 2, `two commands: ${JSON.stringify(commands)}`);
  t.true(commands[0]?.endsWith('demo'), `the first command ends in "demo": ${commands[0]}`);
  t.true(commands[1]?.endsWith('test'), `the second command ends in "test": ${commands[1]}`);
  const ci = await readFile(join(ROOT, '.ci', 'run'), 'utf8');
  t.true(
    ci.split('\n').some((line) => line.trim() === commands[1]),
    '.ci/run has a line that is exactly the README test command',
  );
});

test('readmeCommands refuses READMEs that do not open with the command block', (t) => {
  t.deepEqual(readmeCommands('# x\n\n```sh\na demo\n\nb test\n```\nmore'), ['a demo', 'b test']);
  t.throws(() => readmeCommands('no title\n```sh\na\n```'), { message: /title/ });
  t.throws(() => readmeCommands('# x\n\nSome prose first.\n```sh\na\n```'), { message: /code block/ });
  t.throws(() => readmeCommands('# x\n```sh\na demo\n'), { message: /never closed/ });
});

async function gitOk(t: ExecutionContext, args: string[], cwd: string): Promise<Outcome | undefined> {
  const out = await exec('git', args, { cwd, timeoutMs: 120_000 });
  if (out.code !== 0) {
    t.fail(`git ${args.join(' ')} failed (${out.code}): ${out.stderr.trim()}`);
    return undefined;
  }
  return out;
}

/** Runs one README command in `dir` as a user would: bash -c, with LIVERESTORE_NESTED=1. */
async function runReadmeCommand(command: string, dir: string): Promise<Outcome & { seconds: number }> {
  const started = performance.now();
  const out = await exec('bash', ['-c', command], {
    cwd: dir,
    env: { ...process.env, LIVERESTORE_NESTED: '1' },
    timeoutMs: NESTED_TIMEOUT_MS,
  });
  return { ...out, seconds: (performance.now() - started) / 1000 };
}

function tail(text: string, lineCount = 40): string {
  return text.split('\n').slice(-lineCount).join('\n');
}

test.serial('the two README commands work from a fresh clone of HEAD', async (t) => {
  t.timeout(10 * 60_000);
  if (process.env.LIVERESTORE_NESTED === '1') {
    t.log('SKIPPED: nested run (LIVERESTORE_NESTED=1) of the README commands; not cloning again');
    t.pass();
    return;
  }
  if (!hasTool('git')) {
    t.fail('git is missing: the README commands cannot be tested from a fresh clone (install git)');
    return;
  }
  const head = await exec('git', ['rev-parse', '--verify', 'HEAD'], { cwd: ROOT });
  if (head.code !== 0) {
    t.fail(`the repository at ${ROOT} has no commit to clone (git rev-parse HEAD: ${head.stderr.trim()})`);
    return;
  }
  const commands = readmeCommands(await readFile(join(ROOT, 'README.md'), 'utf8'));
  t.is(commands.length, 2);
  const [demoCommand, testCommand] = commands as [string, string];

  const clone = join(await testDir(t, 'lr-readme-'), 'clone');
  if ((await gitOk(t, ['clone', '--quiet', '--no-hardlinks', ROOT, clone], ROOT)) === undefined) return;
  const cloned = await exec('git', ['rev-parse', 'HEAD'], { cwd: clone });
  t.is(cloned.stdout.trim(), head.stdout.trim(), 'the clone is at HEAD');

  const demo = await runReadmeCommand(demoCommand, clone);
  t.log(`"${demoCommand}" in a fresh clone: exit ${demo.code} after ${demo.seconds.toFixed(0)} s`);
  t.is(demo.code, 0, `the demo command failed in a fresh clone:\n${tail(demo.stdout)}\n${tail(demo.stderr)}`);
  t.regex(demo.stdout, /^\s*OK: /m, `the demo prints its verify line:\n${tail(demo.stdout)}`);
  t.false(/^\s+at /m.test(demo.stderr), 'no stack trace');

  if (process.env.LIVERESTORE_FULL_README_TEST !== '1') {
    t.log(
      `not running "${testCommand}" here: CI (.ci/run) runs the same command on a clean clone; set LIVERESTORE_FULL_README_TEST=1 to run it here too`,
    );
    return;
  }
  const full = await runReadmeCommand(testCommand, clone);
  t.log(`"${testCommand}" in a fresh clone: exit ${full.code} after ${full.seconds.toFixed(0)} s`);
  t.is(
    full.code,
    0,
    `the test command failed in a fresh clone:\n${tail(full.stdout, 80)}\n${tail(full.stderr)}`,
  );
});
