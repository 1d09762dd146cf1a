/*
 * Throw-away TLS certificates for tests, made by the openssl CLI (check it first with
 * `requireTool(t, 'openssl', process.env, ['version'])`): a self-signed one for a server
 * the client trusts by fingerprint or as its own CA, and a CA with a server certificate
 * signed by it, for clients (QEMU, libnbd) that insist on a real chain. Valid one day,
 * RSA 2048, no passphrase.
 */
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The subject a certificate is for: an IP address (as its SAN) or a DNS name. */
export type CertificateSubject = { readonly ip: string } | { readonly dns: string };

/** PEM files of a certificate and its key, and the certificate's SHA-256 fingerprint (`AB:CD:…`). */
export interface TestCertificate {
  readonly certPath: string;
  readonly keyPath: string;
  readonly fingerprint256: string;
}

/** A CA and a server certificate signed by it, under the file names QEMU and libnbd look for. */
export interface TestCertificateChain {
  readonly caCertPath: string;
  readonly server: TestCertificate;
}

function commonName(subject: CertificateSubject): string {
  return 'ip' in subject ? subject.ip : subject.dns;
}

function subjectAltName(subject: CertificateSubject): string {
  return 'ip' in subject ? `subjectAltName=IP:${subject.ip}` : `subjectAltName=DNS:${subject.dns}`;
}

/** `openssl ...args` in `dir`. */
async function openssl(dir: string, args: readonly string[]): Promise<void> {
  await run('openssl', args, { cwd: dir });
}

async function described(certPath: string, keyPath: string): Promise<TestCertificate> {
  const fingerprint256 = new X509Certificate(await readFile(certPath)).fingerprint256;
  return { certPath, keyPath, fingerprint256 };
}

/** A self-signed certificate for `subject` (default 127.0.0.1) as `cert.pem` and `key.pem` in `dir`. */
export async function selfSignedCertificate(
  dir: string,
  subject: CertificateSubject = { ip: '127.0.0.1' },
): Promise<TestCertificate> {
  const [certPath, keyPath] = [join(dir, 'cert.pem'), join(dir, 'key.pem')];
  await openssl(dir, [
    ...['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1'],
    ...['-subj', `/CN=${commonName(subject)}`, '-addext', subjectAltName(subject)],
    ...['-keyout', keyPath, '-out', certPath],
  ]);
  return await described(certPath, keyPath);
}

/**
 * A CA (`ca-cert.pem`) and a server certificate for `subject` (default 127.0.0.1) signed by
 * it (`server-cert.pem`, `server-key.pem`, for serverAuth) in `dir`.
 */
export async function caSignedCertificates(
  dir: string,
  subject: CertificateSubject = { ip: '127.0.0.1' },
): Promise<TestCertificateChain> {
  await openssl(dir, [
    ...['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=test CA'],
    ...['-keyout', 'ca-key.pem', '-out', 'ca-cert.pem'],
  ]);
  await openssl(dir, [
    ...['req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${commonName(subject)}`],
    ...['-keyout', 'server-key.pem', '-out', 'server.csr'],
  ]);
  await writeFile(join(dir, 'ext.cnf'), `${subjectAltName(subject)}\nextendedKeyUsage=serverAuth\n`);
  await openssl(dir, [
    ...['x509', '-req', '-in', 'server.csr', '-CA', 'ca-cert.pem', '-CAkey', 'ca-key.pem'],
    ...['-CAcreateserial', '-days', '1', '-extfile', 'ext.cnf', '-out', 'server-cert.pem'],
  ]);
  return {
    caCertPath: join(dir, 'ca-cert.pem'),
    server: await described(join(dir, 'server-cert.pem'), join(dir, 'server-key.pem')),
  };
}
