import { isIP } from 'node:net';
import { S3Error } from './s3-error.js';

/*
 * Where an S3 datastore lives and how to reach it: the `s3://BUCKET/STORE` URL a user
 * names, and the endpoint, region and credentials, from options first and then from the
 * environment variables every S3 tool reads.
 */

/** `s3://BUCKET/STORE`: a bucket and the datastore's name, the prefix of all its objects. */
export interface S3Location {
  readonly bucket: string;
  readonly store: string;
}

/** Options of an S3 connection; each absent one comes from the environment. */
export interface S3ConnectionOptions {
  /** `http(s)://host[:port]`; else `AWS_ENDPOINT_URL_S3`, then `AWS_ENDPOINT_URL`, then AWS's regional endpoint. */
  endpoint?: string | undefined;
  /** Else `AWS_REGION`, then `AWS_DEFAULT_REGION`, then `us-east-1`. */
  region?: string | undefined;
  /** Else `AWS_ACCESS_KEY_ID`. */
  accessKeyId?: string | undefined;
  /** Else `AWS_SECRET_ACCESS_KEY`. */
  secretAccessKey?: string | undefined;
  /** Else `AWS_SESSION_TOKEN` (temporary credentials). */
  sessionToken?: string | undefined;
  /**
   * `https://endpoint/BUCKET/key` instead of `https://BUCKET.endpoint/key`. Default: path
   * style for an endpoint that is an IP address or localhost (no DNS name per bucket
   * there), virtual-hosted style otherwise.
   */
  pathStyle?: boolean | undefined;
  /** Deadline of one attempt, headers and body together. Default 30 000. */
  timeoutMs?: number | undefined;
  /** Attempts after the first for transient failures (5xx, 503 SlowDown, timeouts, resets). Default 8. */
  retries?: number | undefined;
  /** Keep-alive connections to the endpoint: requests on the wire at most. Default 8. */
  connections?: number | undefined;
  /** First backoff step in ms (the n-th retry sleeps in [c/2, c), c = min(cap, base·2ⁿ⁻¹)). Default 100. */
  backoffBaseMs?: number | undefined;
  /** Longest backoff sleep in ms. Default 2 000. */
  backoffCapMs?: number | undefined;
}

/** Everything resolved: what a client signs and sends with. */
export interface S3Settings {
  readonly endpoint: URL;
  readonly region: string;
  readonly credentials: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  readonly pathStyle: boolean;
  readonly timeoutMs: number;
  readonly retries: number;
  readonly connections: number;
  readonly backoffBaseMs: number;
  readonly backoffCapMs: number;
}

/** True when `text` names an S3 datastore (`s3://…`) rather than a directory or an HTTP server. */
export function isS3Url(text: string): boolean {
  return /^s3:\/\//i.test(text);
}

/** S3's rules for bucket names (3–63 of lowercase letters, digits, dots, hyphens). */
const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
/** A PBS datastore name. */
const STORE = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;

/** Parses `s3://BUCKET/STORE`; `ERR_LR_S3_URL_INVALID` names what is wrong. */
export function parseS3Url(text: string): S3Location {
  const match = /^s3:\/\/([^/?#]*)\/([^/?#]*)\/?$/i.exec(text);
  if (match === null) {
    throw new S3Error(
      'ERR_LR_S3_URL_INVALID',
      `"${text}" is not s3://BUCKET/STORE (one bucket, one datastore name)`,
    );
  }
  const [, bucket = '', store = ''] = match;
  if (!BUCKET.test(bucket))
    throw new S3Error('ERR_LR_S3_URL_INVALID', `invalid bucket name "${bucket}" in ${text}`);
  if (!STORE.test(store) || store === '.' || store === '..')
    throw new S3Error('ERR_LR_S3_URL_INVALID', `invalid datastore name "${store}" in ${text}`);
  return { bucket, store };
}

function positiveInteger(
  value: number | undefined,
  fallback: number,
  name: string,
  allowZero = false,
): number {
  const n = value ?? fallback;
  if (!Number.isSafeInteger(n) || n < (allowZero ? 0 : 1))
    throw new RangeError(
      `${name} must be a ${allowZero ? 'non-negative' : 'positive'} integer, got ${value}`,
    );
  return n;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}

/** True for an endpoint host without per-bucket DNS names: an IP address or localhost. */
export function needsPathStyle(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, '');
  return isIP(host) !== 0 || host === 'localhost' || host.endsWith('.localhost');
}

/** Resolves options against the environment; `ERR_LR_S3_CREDENTIALS_MISSING` without a key pair. */
export function resolveS3Settings(
  options: S3ConnectionOptions = {},
  env: NodeJS.ProcessEnv = process.env,
): S3Settings {
  const region =
    nonEmpty(options.region) ?? nonEmpty(env.AWS_REGION) ?? nonEmpty(env.AWS_DEFAULT_REGION) ?? 'us-east-1';
  const endpointText =
    nonEmpty(options.endpoint) ??
    nonEmpty(env.AWS_ENDPOINT_URL_S3) ??
    nonEmpty(env.AWS_ENDPOINT_URL) ??
    `https://s3.${region}.amazonaws.com`;
  let endpoint: URL;
  try {
    endpoint = new URL(endpointText);
  } catch (cause) {
    throw new S3Error('ERR_LR_S3_URL_INVALID', `invalid S3 endpoint "${endpointText}"`, { cause });
  }
  if (
    (endpoint.protocol !== 'http:' && endpoint.protocol !== 'https:') ||
    endpoint.username !== '' ||
    endpoint.search !== ''
  ) {
    throw new S3Error(
      'ERR_LR_S3_URL_INVALID',
      `the S3 endpoint must be http(s)://HOST[:PORT], got "${endpointText}"`,
    );
  }
  const accessKeyId = nonEmpty(options.accessKeyId) ?? nonEmpty(env.AWS_ACCESS_KEY_ID);
  const secretAccessKey = nonEmpty(options.secretAccessKey) ?? nonEmpty(env.AWS_SECRET_ACCESS_KEY);
  if (accessKeyId === undefined || secretAccessKey === undefined) {
    throw new S3Error(
      'ERR_LR_S3_CREDENTIALS_MISSING',
      'no S3 credentials: give an access key id and secret key (liverestore: --s3-access-key-id and --s3-secret-key-file), or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY',
    );
  }
  const sessionToken = nonEmpty(options.sessionToken) ?? nonEmpty(env.AWS_SESSION_TOKEN);
  return {
    endpoint,
    region,
    credentials: { accessKeyId, secretAccessKey, ...(sessionToken === undefined ? {} : { sessionToken }) },
    pathStyle: options.pathStyle ?? needsPathStyle(endpoint.hostname),
    timeoutMs: positiveInteger(options.timeoutMs, 30_000, 'timeoutMs'),
    retries: positiveInteger(options.retries, 8, 'retries', true),
    connections: positiveInteger(options.connections, 8, 'connections'),
    backoffBaseMs: positiveInteger(options.backoffBaseMs, 100, 'backoffBaseMs'),
    backoffCapMs: positiveInteger(options.backoffCapMs, 2_000, 'backoffCapMs'),
  };
}
