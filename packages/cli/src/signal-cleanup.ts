import { removeTrackedTemps } from '@liverestore/datastore/internal';

/** Commands that write temp files (restore's `.tmp-OUT-…`, backup's snapshot and chunk temps). */
export const TEMP_WRITING_COMMANDS: ReadonlySet<string> = new Set(['backup', 'restore']);

/** Runs in this process that want their temps removed on a signal (in-process `run()` calls may overlap). */
let activeRuns = 0;

function onSignal(signal: NodeJS.Signals): void {
  removeTrackedTemps();
  activeRuns = 0;
  removeHandlers();
  process.kill(process.pid, signal);
}

function removeHandlers(): void {
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
}

/**
 * Until the returned function is called, SIGINT and SIGTERM first remove the temp files
 * this process is writing, then end it by the same signal (exit status 130 / 143 as
 * before). Without this, an interrupted restore left its whole temp image behind (219 MiB
 * in the probe). What a SIGKILL leaves is swept by the next run (sweepStaleTemps).
 * Overlapping runs share one pair of handlers (a dozen concurrent in-process runs added a
 * dozen and tripped Node's MaxListenersExceededWarning); the last release removes them.
 */
export function removeTempsOnSignal(): () => void {
  if (activeRuns++ === 0) {
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  }
  let released = false;
  return () => {
    if (released || activeRuns === 0) return;
    released = true;
    if (--activeRuns === 0) removeHandlers();
  };
}
