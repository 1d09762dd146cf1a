/**
 * The lock of a target directory: at most one live restore serves it, also when several
 * start at once after a crash left a stale lock behind.
 *
 * The lock is the file `DIR/.liverestore.lock`, holding `PID NONCE`. Every step that
 * changes who holds it is one atomic file-system operation:
 * - take a free lock: write a candidate file under a unique name, then `link` it to the
 *   lock name (fails with EEXIST if any lock exists; the lock is never seen half written);
 * - take over a stale lock (its process is gone): only the process that holds the
 *   *takeover token* of that very lock file — `DIR/.liverestore.lock.takeover-INODE`,
 *   itself taken the same way — may replace it, after checking again that the lock is
 *   still that inode and still stale; it then `rename`s its candidate over it. Everyone
 *   else gets EEXIST on the token, finds the new holder alive, and is refused. A token
 *   left by a taker that died is stale in turn and taken over the same way (one level).
 * A process tells its own locks from stale ones of a former process with the same pid by
 * the nonce (so two restores in one process exclude each other too).
 */
import { randomUUID } from 'node:crypto';
import { link, open, readdir, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { LiveError, systemCode } from './errors.js';

/** The lock file's name in a target directory. */
export const TARGET_LOCK_FILE = '.liverestore.lock';
/** Nonces of the locks (and takeover tokens) this process holds. */
const heldNonces = new Set<string>();
/** Lock, token of the lock, token of a token: deeper means a taker died inside a window of microseconds twice. */
const MAX_TAKEOVER_DEPTH = 2;
const ATTEMPTS = 8;

/** A held lock; {@link release} removes it. */
export interface TargetLock {
  readonly path: string;
  readonly nonce: string;
  release(): Promise<void>;
}

interface Holder {
  readonly inode: number;
  readonly pid: number;
  readonly nonce: string | undefined;
}

/**
 * Takes the lock of `dir` (which must exist). Refused with `ERR_LR_LIVE_TARGET_BUSY` when a
 * live process (or another restore of this process) holds it; a lock of a process that is
 * gone (crash, kill -9) is taken over atomically.
 */
export async function lockTargetDir(dir: string): Promise<TargetLock> {
  const path = join(dir, TARGET_LOCK_FILE);
  const outcome = await acquire(path, 0);
  if ('release' in outcome) {
    await sweepCandidates(path).catch(() => undefined); // housekeeping only
    return outcome;
  }
  throw new LiveError(
    'ERR_LR_LIVE_TARGET_BUSY',
    outcome.pid === process.pid
      ? `${dir} is in use by another live restore of this process; close it first`
      : `${dir} is in use by another live restore (pid ${outcome.pid}); stop it first`,
  );
}

async function acquire(path: string, depth: number): Promise<TargetLock | Holder> {
  let holder: Holder | undefined;
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    const nonce = randomUUID();
    const candidate = join(dirname(path), `${basename(path)}.${process.pid}-${nonce}.tmp`);
    await writeCandidate(candidate, nonce);
    try {
      if (await linkIfAbsent(candidate, path)) return held(path, nonce);
      holder = await readHolder(path);
      if (holder === undefined) continue; // released meanwhile
      if (holderAlive(holder)) return holder;
      if (depth >= MAX_TAKEOVER_DEPTH) return holder;
      const token = await acquire(`${path}.takeover-${holder.inode}`, depth + 1);
      if (!('release' in token)) return token; // another process is taking it over now
      try {
        const again = await readHolder(path);
        if (again !== undefined && again.inode === holder.inode && !holderAlive(again)) {
          await rename(candidate, path); // replaces exactly the stale file: only the token holder may
          return held(path, nonce);
        }
      } finally {
        await token.release();
      }
    } catch (err) {
      throw lockIoError(err, path);
    } finally {
      await rm(candidate, { force: true });
    }
  }
  if (holder !== undefined) return holder;
  throw new LiveError('ERR_LR_LIVE_TARGET_BUSY', `cannot lock ${dirname(path)}: its lock keeps changing`);
}

function held(path: string, nonce: string): TargetLock {
  heldNonces.add(nonce);
  return {
    path,
    nonce,
    async release() {
      if (!heldNonces.delete(nonce)) return;
      const holder = await readHolder(path);
      if (holder?.nonce === nonce) await rm(path, { force: true });
    },
  };
}

/** Removes candidate files that takers which died between writing and removing them left behind. */
async function sweepCandidates(path: string): Promise<void> {
  const prefix = `${basename(path)}.`;
  for (const name of await readdir(dirname(path))) {
    const match = name.startsWith(prefix) ? /^(\d+)-[0-9a-f-]+\.tmp$/.exec(name.slice(prefix.length)) : null;
    const pid = Number(match?.[1]);
    if (match === null || pid === process.pid) continue; // this process's takers are at work
    if (!holderAlive({ inode: 0, pid, nonce: undefined })) {
      await rm(join(dirname(path), name), { force: true });
    }
  }
}

async function writeCandidate(path: string, nonce: string): Promise<void> {
  try {
    const handle = await open(path, 'wx', 0o644);
    try {
      await handle.writeFile(`${process.pid} ${nonce}\n`);
    } finally {
      await handle.close();
    }
  } catch (err) {
    throw lockIoError(err, path);
  }
}

/** `link(from, to)`; false when `to` exists. */
async function linkIfAbsent(from: string, to: string): Promise<boolean> {
  try {
    await link(from, to);
    return true;
  } catch (err) {
    if (systemCode(err) === 'EEXIST') return false;
    throw err;
  }
}

/** Who holds the lock file at `path` (its inode and content); undefined when there is none. */
async function readHolder(path: string): Promise<Holder | undefined> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(path, 'r');
  } catch (err) {
    if (systemCode(err) === 'ENOENT') return undefined;
    throw err;
  }
  try {
    const { ino } = await handle.stat();
    const [pid, nonce] = (await handle.readFile('utf8')).trim().split(/\s+/);
    return { inode: ino, pid: Number(pid), nonce };
  } finally {
    await handle.close();
  }
}

/** True when the holder runs: another live process, or a lock this process holds now. */
function holderAlive(holder: Holder): boolean {
  if (!Number.isInteger(holder.pid) || holder.pid <= 0) return false; // garbage: an old interrupted lock
  if (holder.pid === process.pid) return holder.nonce !== undefined && heldNonces.has(holder.nonce);
  try {
    process.kill(holder.pid, 0);
    return true;
  } catch (err) {
    return systemCode(err) === 'EPERM';
  }
}

function lockIoError(err: unknown, path: string): LiveError {
  if (err instanceof LiveError) return err;
  return new LiveError('ERR_LR_LIVE_TARGET_IO', `cannot lock ${path} (${systemCode(err) ?? 'error'})`, {
    cause: err,
  });
}
