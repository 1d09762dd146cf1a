import { LiverestoreError } from '@liverestore/format';

/** A failure of the NBD server (start-up, listening, protocol violation); `code` is stable. */
export class NbdError extends LiverestoreError {}
