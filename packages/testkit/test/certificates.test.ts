/** The throw-away TLS certificates tests use: what they are for and who signed them. */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import test from 'ava';
import { caSignedCertificates, requireTool, selfSignedCertificate, tempDir } from '../src/index.js';

async function certificate(path: string): Promise<X509Certificate> {
  return new X509Certificate(await readFile(path));
}

test('selfSignedCertificate: for 127.0.0.1 (IP SAN) or a DNS name, signed by itself, with its fingerprint', async (t) => {
  if (!requireTool(t, 'openssl', process.env, ['version'])) return;
  const dir = await tempDir('testkit-tls-');
  t.teardown(() => dir.cleanup());
  const made = await selfSignedCertificate(dir.path);
  const cert = await certificate(made.certPath);
  t.is(cert.checkIP('127.0.0.1'), '127.0.0.1');
  t.true(cert.verify(cert.publicKey));
  t.is(made.fingerprint256, cert.fingerprint256);
  t.true(cert.checkPrivateKey(createPrivateKey(await readFile(made.keyPath))));
  const named = await certificate((await selfSignedCertificate(dir.path, { dns: 'localhost' })).certPath);
  t.is(named.checkHost('localhost'), 'localhost');
  t.is(named.checkIP('127.0.0.1'), undefined);
});

test('caSignedCertificates: the server certificate is for 127.0.0.1 and signed by the CA, not by itself', async (t) => {
  if (!requireTool(t, 'openssl', process.env, ['version'])) return;
  const dir = await tempDir('testkit-tls-');
  t.teardown(() => dir.cleanup());
  const { caCertPath, server } = await caSignedCertificates(dir.path);
  const [ca, cert] = [await certificate(caCertPath), await certificate(server.certPath)];
  t.is(cert.checkIP('127.0.0.1'), '127.0.0.1');
  t.true(cert.checkIssued(ca));
  t.true(cert.verify(ca.publicKey));
  t.false(cert.verify(cert.publicKey));
});
