/**
 * The options a command's `--help` text documents, read back from its "Options:" block:
 * the one place where each option has a description. Shell completion and the man page
 * are generated from it, and a test checks that every option a command accepts is
 * documented there.
 *
 *   Options:
 *     --from DIR|URL      datastore directory, or http(s):// URL of a liverestore
 *                         server (required)
 *     -h, --help          show this help
 */

/**
 * The lines of one option in an "Options:" block: the option, then its description from
 * `column` (on the next line when the option is too long to leave two spaces before it).
 */
export function optionHelpLines(option: string, description: readonly string[], column: number): string[] {
  const pad = ' '.repeat(column);
  return option.length + 2 <= column
    ? [`${option.padEnd(column)}${description[0]}`, ...description.slice(1).map((l) => `${pad}${l}`)]
    : [option, ...description.map((l) => `${pad}${l}`)];
}

/** One documented option. */
export interface HelpOption {
  /** Without dashes: `from`. */
  readonly name: string;
  /** The one-letter alias, without its dash: `h`. */
  readonly short?: string;
  /** What the value is, as the help writes it (`DIR|URL`); absent for a flag. */
  readonly metavar?: string;
  /** The description, its lines joined. */
  readonly description: string;
}

const OPTION_LINE = /^ {2}(?:-(\w), )?--([a-z][\w-]*)(?: ([^\s]+))?(?: {2,}(.*))?$/;
const CONTINUATION = /^ {4,}(\S.*)$/;

/** The options of the "Options:" block of `help`, in their order there. */
export function helpOptions(help: string): HelpOption[] {
  const lines = help.split('\n');
  const start = lines.findIndex((line) => /^Options:\s*$/.test(line));
  if (start < 0) return [];
  const options: { name: string; short?: string; metavar?: string; description: string[] }[] = [];
  for (const line of lines.slice(start + 1)) {
    if (line.trim() === '') {
      if (options.length > 0) break;
      continue;
    }
    const option = OPTION_LINE.exec(line);
    if (option !== null) {
      const [, short, name, metavar, description] = option;
      options.push({
        name: name!,
        ...(short === undefined ? {} : { short }),
        ...(metavar === undefined ? {} : { metavar }),
        description: description === undefined ? [] : [description.trim()],
      });
      continue;
    }
    const more = CONTINUATION.exec(line);
    if (more === null || options.length === 0) break;
    options.at(-1)!.description.push(more[1]!.trim());
  }
  return options.map(({ description, ...rest }) => ({ ...rest, description: description.join(' ') }));
}
