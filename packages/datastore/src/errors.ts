import { LiverestoreError } from '@liverestore/format';

/** A datastore, snapshot, archive or chunk that the caller named is not there or not usable. */
export class DatastoreError extends LiverestoreError {}

/** An input file or device of a backup cannot be read. */
export class BackupSourceError extends LiverestoreError {}
