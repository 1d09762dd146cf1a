import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { TEMP_PREFIX } from './atomic-write.js';

/*
 * Temporary files and directories (`.tmp-NAME-PID-HEX`, see tempPathFor) outlive an
 * interrupted process: a restore stopped by Ctrl-C left a 219 MiB `.tmp-OUT-PID-…`, a
 * backup its `.tmp-*` snapshot and chunk files. Two remedies: the temps a process is
 * writing are tracked (trackTemp in atomic-write.ts), so a signal handler can remove them
 * before the process ends; and temps named with the pid of a process that no longer
 * exists are swept by the next run (here).
 */

/** The pid in a temp name `.tmp-NAME-PID-HEX`, or undefined when the name is not one. */
export function tempOwnerPid(name: string): number | undefined {
  if (!name.startsWith(TEMP_PREFIX)) return undefined;
  const match = /-(\d{1,10})-[0-9a-f]{8}$/.exec(name);
  const pid = match === null ? Number.NaN : Number(match[1]);
  return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
}

/** True unless no process with that pid exists (ESRCH); a process of another user (EPERM) is alive. */
function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as { code?: string }).code !== 'ESRCH';
  }
}

/**
 * Removes the temps in `dir` whose names start with `${TEMP_PREFIX}${namePrefix}` and
 * carry the pid of a process that no longer exists (never this process's own). A missing
 * `dir` has nothing to sweep. Returns the names removed.
 */
export async function sweepStaleTemps(dir: string, namePrefix = ''): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return [];
    throw err;
  }
  const removed: string[] = [];
  for (const name of names) {
    if (!name.startsWith(`${TEMP_PREFIX}${namePrefix}`)) continue;
    const pid = tempOwnerPid(name);
    if (pid === undefined || pid === process.pid || processExists(pid)) continue;
    await rm(join(dir, name), { recursive: true, force: true });
    removed.push(name);
  }
  return removed;
}
