/*
 * Shell completion and the man page, both generated from the commands: bash completes
 * for real (the script is sourced and its function called as bash would), zsh parses
 * the script, the man page is current and renders without warnings.
 */
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import test from 'ava';
import { VERSION } from '../src/cli.js';
import { helpOptions } from '../src/help-options.js';
import { COMMANDS } from '../src/index.js';
import { manPage } from '../src/man-page.js';
import { BIN, cli, ROOT, testDir } from './helpers.js';

const run = promisify(execFile);
const requireTools = process.env.LIVERESTORE_REQUIRE_TOOLS === '1';

/** What bash offers for the words typed so far (the last one is being completed). */
async function bashOffers(script: string, words: readonly string[]): Promise<string[]> {
  const quoted = words.map((w) => `'${w}'`).join(' ');
  const { stdout } = await run('bash', [
    '-c',
    `source "$1"; COMP_WORDS=(${quoted}); COMP_CWORD=${words.length - 1}; _liverestore; printf '%s\\n' "\${COMPREPLY[@]}"`,
    'bash',
    script,
  ]);
  return stdout.split('\n').filter((l) => l !== '');
}

test('every option a command accepts is documented in its --help', (t) => {
  for (const command of COMMANDS) {
    if (command.rawArgs === true) continue;
    const documented = helpOptions(command.help).map((o) => o.name);
    t.deepEqual(documented.sort(), Object.keys(command.options).sort(), command.name);
    for (const option of helpOptions(command.help))
      t.not(option.description, '', `${command.name} --${option.name}`);
  }
});

test('bash completion completes commands, options, actions and paths', async (t) => {
  const dir = await testDir(t);
  const out = await cli(['completion', 'bash']);
  t.is(out.code, 0, out.stderr);
  const script = join(dir, 'liverestore.bash');
  await writeFile(script, out.stdout);
  await writeFile(join(dir, 'image.raw'), '');
  t.deepEqual(await bashOffers(script, ['liverestore', 'res']), ['restore']);
  t.deepEqual(await bashOffers(script, ['liverestore', 'restore', '--fr']), ['--from']);
  t.deepEqual(await bashOffers(script, ['liverestore', 'nbd', '--sp']), ['--spill-dir', '--spill-size']);
  t.deepEqual(await bashOffers(script, ['liverestore', 'key', '']), ['create', 'show']);
  t.deepEqual(await bashOffers(script, ['liverestore', 'key', 'create', '--keyfile', `${dir}/ima`]), [
    `${dir}/image.raw`,
  ]);
  t.deepEqual(await bashOffers(script, ['liverestore', 'bench', 'co']), ['codecs']);
  t.deepEqual(
    await bashOffers(script, ['liverestore', 'restore', '--cache-size', '']),
    [],
    'a size: no file names',
  );
});

test('the zsh script parses and covers every command', async (t) => {
  const out = await cli(['completion', 'zsh']);
  t.is(out.code, 0, out.stderr);
  t.true(out.stdout.startsWith('#compdef liverestore\n'));
  for (const command of COMMANDS) t.true(out.stdout.includes(`    ${command.name})\n`), command.name);
  try {
    await run('zsh', ['-n', '-c', out.stdout]);
  } catch (err) {
    if ((err as { code?: unknown }).code === 'ENOENT' && !requireTools) {
      t.log('zsh is not installed: syntax not checked');
      return;
    }
    throw err;
  }
});

test('completion: a missing or unknown shell is a usage error', async (t) => {
  for (const argv of [['completion'], ['completion', 'fish']]) {
    const out = await cli(argv);
    t.is(out.code, 2);
    t.regex(out.stderr, /^liverestore: ERR_LR_USAGE: completion: /);
  }
});

test('the man page is generated from the help texts and renders without warnings', async (t) => {
  const path = join(ROOT, 'packages/cli/man/liverestore.1');
  t.is(await readFile(path, 'utf8'), manPage(COMMANDS, VERSION), 'run: node scripts/gen-cli-docs.mjs');
  const pkg = JSON.parse(await readFile(join(ROOT, 'packages/cli/package.json'), 'utf8'));
  t.deepEqual(pkg.man, ['./man/liverestore.1'], 'the package ships it');
  try {
    const { stderr } = await run('groff', ['-man', '-Tutf8', '-ww', '-z', path]);
    t.is(stderr, '', 'groff warnings');
  } catch (err) {
    if ((err as { code?: unknown }).code === 'ENOENT' && !requireTools)
      return void t.log('groff is not installed');
    throw err;
  }
  t.true(BIN.endsWith('liverestore.js'));
});
