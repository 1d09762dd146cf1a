import { LiverestoreError } from '@liverestore/format';
import { run } from './cli.js';

/** The `liverestore` binary: never prints a stack trace for an expected failure. */
process.exitCode = await run(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr }).catch(
  (err: unknown) => {
    // run() reports every error itself; reaching here is a bug, so show everything.
    process.stderr.write(
      `liverestore: internal error: ${err instanceof LiverestoreError ? err.code : ''} ${(err as Error).stack}\n`,
    );
    return 70;
  },
);
