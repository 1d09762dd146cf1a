/*
 * A fresh bucket on the test RGW (testkit's testRgw) for the CLI's S3 tests, emptied when
 * the test ends, and the environment that points the CLI at it.
 */
import { resolveS3Settings, S3Client } from '@liverestore/datastore';
import { type TestRgw, testRgw } from '@liverestore/testkit';
import type { ExecutionContext } from 'ava';

export interface Bucket {
  readonly rgw: TestRgw;
  readonly client: S3Client;
  readonly url: string;
  readonly env: NodeJS.ProcessEnv;
}

/** A fresh bucket on the test RGW and the environment that points the CLI at it. */
export async function bucket(t: ExecutionContext): Promise<Bucket | undefined> {
  const rgw = testRgw(t);
  if (rgw === undefined) return undefined;
  const name = `lr-cli-${Math.random().toString(16).slice(2, 12)}`;
  const client = new S3Client(
    name,
    resolveS3Settings({
      endpoint: rgw.endpoint,
      accessKeyId: rgw.accessKeyId,
      secretAccessKey: rgw.secretAccessKey,
    }),
  );
  await client.createBucket();
  t.teardown(async () => {
    await client.deleteObjects((await client.list('')).keys);
    await client.close();
  });
  const env = {
    ...process.env,
    AWS_ENDPOINT_URL_S3: rgw.endpoint,
    AWS_ACCESS_KEY_ID: rgw.accessKeyId,
    AWS_SECRET_ACCESS_KEY: rgw.secretAccessKey,
  };
  return { rgw, client, url: `s3://${name}/store`, env };
}
