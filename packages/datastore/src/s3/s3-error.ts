import { LiverestoreError } from '@liverestore/format';

/**
 * A failure of an S3 request or of an S3 datastore's settings. `status` is the HTTP status
 * of the answer when there was one, `s3Code` the `<Code>` of S3's XML error body
 * (`NoSuchKey`, `SlowDown`, `AccessDenied`).
 */
export class S3Error extends LiverestoreError {
  readonly status: number | undefined;
  readonly s3Code: string | undefined;

  constructor(
    code: string,
    message: string,
    options: { cause?: unknown; status?: number | undefined; s3Code?: string | undefined } = {},
  ) {
    super(code, message, options.cause === undefined ? {} : { cause: options.cause });
    this.status = options.status;
    this.s3Code = options.s3Code;
  }
}
