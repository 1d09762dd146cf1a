import { COMMON_OPTIONS, type Command, defineCommand } from '../command.js';
import { bashCompletion, zshCompletion } from '../completion.js';
import { UsageError } from '../errors.js';

const SHELLS = ['bash', 'zsh'] as const;

/**
 * `liverestore completion bash|zsh`: prints the completion script of a shell. It needs
 * the list of every command, which cli.ts passes in (this module cannot import cli.ts,
 * which lists this command).
 */
export function completionCommand(commands: () => readonly Command[]) {
  return defineCommand({
    name: 'completion',
    summary: 'print the shell completion script for bash or zsh',
    help: `Usage: liverestore completion bash|zsh

Prints a completion script for the shell: command names, each command's options, file
names where an option takes a path. Install it with

  bash:  source <(liverestore completion bash)        (in ~/.bashrc), or
         liverestore completion bash > /etc/bash_completion.d/liverestore
  zsh:   liverestore completion zsh > "\${fpath[1]}/_liverestore"   (then compinit)

Options:
  -h, --help   show this help`,
    options: { help: COMMON_OPTIONS.help },
    actions: SHELLS,
    async run({ positionals }, io) {
      const [shell, ...extra] = positionals;
      if (shell === undefined) throw new UsageError('completion: SHELL is required (bash or zsh)');
      if (extra.length > 0) throw new UsageError(`completion: unexpected argument "${extra[0]}"`);
      if (shell === 'bash') io.stdout.write(bashCompletion(commands()));
      else if (shell === 'zsh') io.stdout.write(zshCompletion(commands()));
      else throw new UsageError(`completion: unknown shell "${shell}" (bash or zsh)`);
      return 0;
    },
  });
}
