import { LiverestoreError } from '@liverestore/format';

/** The command line itself is wrong: unknown option, missing argument, bad value. Exit status 2. */
export class UsageError extends LiverestoreError {
  constructor(message: string) {
    super('ERR_LR_USAGE', message);
  }
}
