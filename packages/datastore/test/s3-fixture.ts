/*
 * A fresh bucket on the test RGW (testkit's testRgw: CI's, or one started here) for each
 * test, emptied when the test ends. Keys are read back through a plain S3Client, so the
 * layout a test checks is what lies in the bucket, not what S3Datastore says.
 */
import { randomBytes } from 'node:crypto';
import { type TestRgw, testRgw } from '@liverestore/testkit';
import type { ExecutionContext } from 'ava';
import { resolveS3Settings, S3Client, type S3ConnectionOptions } from '../src/internal.js';

export interface S3Fixture {
  readonly rgw: TestRgw;
  readonly bucket: string;
  /** Connection options for the bucket's endpoint (keys included). */
  readonly options: S3ConnectionOptions;
  /** A client on the bucket, for looking at what was stored. */
  readonly client: S3Client;
  /** `s3://BUCKET/STORE` for a datastore named `store`. */
  url(store?: string): string;
}

/** A new empty bucket, or undefined when there is no RGW (the test is then over). */
export async function s3Fixture(
  t: ExecutionContext,
  overrides: S3ConnectionOptions = {},
): Promise<S3Fixture | undefined> {
  const rgw = testRgw(t);
  if (rgw === undefined) return undefined;
  const bucket = `lr-${randomBytes(6).toString('hex')}`;
  const options: S3ConnectionOptions = {
    endpoint: rgw.endpoint,
    accessKeyId: rgw.accessKeyId,
    secretAccessKey: rgw.secretAccessKey,
    ...overrides,
  };
  const client = new S3Client(bucket, resolveS3Settings(options));
  await client.createBucket();
  t.teardown(async () => {
    const { keys } = await client.list('');
    await client.deleteObjects(keys);
    await client.close();
  });
  return { rgw, bucket, options, client, url: (store = 'store') => `s3://${bucket}/${store}` };
}
