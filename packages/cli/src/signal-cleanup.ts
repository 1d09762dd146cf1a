import { removeTrackedTemps } from '@liverestore/datastore/internal';

/** Commands that write temp files (restore's `.tmp-OUT-…`, backup's snapshot and chunk temps). */
export const TEMP_WRITING_COMMANDS: ReadonlySet<string> = new Set(['backup', 'restore']);

/**
 * Until the returned function is called, SIGINT and SIGTERM first remove the temp files
 * this process is writing, then end it by the same signal (exit status 130 / 143 as
 * before). Without this, an interrupted restore left its whole temp image behind (219 MiB
 * in the probe). What a SIGKILL leaves is swept by the next run (sweepStaleTemps).
 */
export function removeTempsOnSignal(): () => void {
  const onSignal = (signal: NodeJS.Signals): void => {
    removeTrackedTemps();
    release();
    process.kill(process.pid, signal);
  };
  const release = (): void => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return release;
}
