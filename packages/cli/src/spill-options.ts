import { tmpdir } from 'node:os';
import { DEFAULT_PAGE_BYTES, DEFAULT_SPILL_BYTES, SpillStore } from '@liverestore/reader';
import { UsageError } from './errors.js';
import { formatBytes, parseBytes } from './units.js';

/** `--spill-dir`/`--spill-size` as they read in every command that keeps a chunk cache. */
export const SPILL_OPTIONS = {
  'spill-dir': { type: 'string' },
  'spill-size': { type: 'string' },
} as const;

/** The help lines of {@link SPILL_OPTIONS}, aligned like the other option lines. */
export const SPILL_HELP = `  --spill-dir DIR      where chunks evicted from the cache go, so none is fetched and
                       decoded twice (default: the system temp directory; the file is
                       unlinked at once, so nothing is left behind)
  --spill-size SIZE    most bytes kept there (default ${formatBytes(DEFAULT_SPILL_BYTES)}; 0 turns it off)`;

/**
 * The spill file the options ask for (on by default), or undefined with `--spill-size 0`.
 * The chunk cache it is given to owns and closes it.
 */
export function spillFromOptions(
  values: { 'spill-dir'?: string | undefined; 'spill-size'?: string | undefined },
  command: string,
): SpillStore | undefined {
  const capacityBytes =
    values['spill-size'] === undefined
      ? DEFAULT_SPILL_BYTES
      : parseBytes(values['spill-size'], '--spill-size');
  if (capacityBytes === 0) return undefined;
  if (capacityBytes < DEFAULT_PAGE_BYTES)
    throw new UsageError(
      `${command}: --spill-size must be 0 (off) or at least ${formatBytes(DEFAULT_PAGE_BYTES)}`,
    );
  return SpillStore.create({
    dir: values['spill-dir'] ?? tmpdir(),
    capacityBytes,
    pageBytes: DEFAULT_PAGE_BYTES,
  });
}
