import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';

/**
 * SHA-256 (hex) of every regular file under `dir`, by path relative to it, skipping
 * everything below a folder named in `skipDirs` (a datastore's `.chunks`, say): what a
 * test compares before and after an operation to show that files were kept as they were.
 */
export async function fileHashes(
  dir: string,
  skipDirs: readonly string[] = [],
): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (folder: string): Promise<void> => {
    for (const entry of await readdir(folder, { withFileTypes: true })) {
      const path = join(folder, entry.name);
      if (entry.isDirectory()) {
        if (!skipDirs.includes(entry.name)) await walk(path);
      } else if (entry.isFile()) {
        out.set(
          relative(dir, path),
          createHash('sha256')
            .update(await readFile(path))
            .digest('hex'),
        );
      }
    }
  };
  await walk(dir);
  return out;
}
