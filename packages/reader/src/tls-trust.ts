import { isIP } from 'node:net';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';
import type { Http1Tls } from '@liverestore/format/internal';
import { ReaderError } from './errors.js';

/*
 * Which server certificates an https:// source trusts, as proxmox-backup-client does it:
 * the system's CAs, or a CA file (`ca`), or exactly one certificate named by its SHA-256
 * fingerprint (`fingerprint`, PBS_FINGERPRINT's form `AA:BB:…` or plain hex) — the way to
 * reach a server with a self-signed certificate without trusting every certificate. A
 * certificate that is not trusted fails with ERR_LR_TLS_UNTRUSTED naming the fingerprint
 * the server showed, so the user can check it and pass it.
 */

/** TLS settings of an https:// source. */
export interface TlsTrust {
  /** PEM CA certificate(s) to trust instead of the system's. */
  readonly ca?: Buffer | undefined;
  /** Trust exactly the certificate with this SHA-256 fingerprint (`AA:BB:…` or 64 hex digits). */
  readonly fingerprint?: string | undefined;
  /** false: trust any certificate (tests only; the CLI never sets it). */
  readonly rejectUnauthorized?: boolean | undefined;
}

/** Certificate verification failures of Node's TLS (OpenSSL's X509 errors and the host check). */
const CERTIFICATE_ERRORS = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** `aa:BB:…` or plain hex → 64 lower-case hex digits; undefined when it is not a SHA-256 fingerprint. */
export function normalizeFingerprint(text: string): string | undefined {
  const hex = text.trim().replace(/:/g, '').toLowerCase();
  return /^[0-9a-f]{64}$/.test(hex) ? hex : undefined;
}

/** 64 hex digits → `AA:BB:…`, as PBS and openssl print fingerprints. */
export function formatFingerprint(hex: string): string {
  return hex.toUpperCase().match(/../g)!.join(':');
}

/** The certificate verification failure in `err` or its causes, if that is what it is. */
export function certificateErrorCode(err: unknown): string | undefined {
  for (let e = err, depth = 0; e !== undefined && e !== null && depth < 5; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && CERTIFICATE_ERRORS.has(code)) return code;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

/**
 * The HTTP client's TLS settings for `trust`: Node's own verification, or with a fingerprint
 * a connection that is accepted exactly when the server's certificate has that fingerprint,
 * checked after the handshake and before a byte of a request is sent.
 */
export function http1Tls(trust: TlsTrust | undefined): Http1Tls | undefined {
  if (trust === undefined) return undefined;
  const options = {
    ...(trust.ca === undefined ? {} : { ca: trust.ca }),
    ...(trust.rejectUnauthorized === undefined ? {} : { rejectUnauthorized: trust.rejectUnauthorized }),
  };
  if (trust.fingerprint === undefined) return { options };
  const expected = normalizeFingerprint(trust.fingerprint);
  if (expected === undefined)
    throw new ReaderError(
      'ERR_LR_TLS_FINGERPRINT',
      `"${trust.fingerprint}" is not a SHA-256 fingerprint (64 hex digits, colons allowed)`,
    );
  // Verification by the fingerprint alone: the chain and the host name do not matter then.
  // (Each connection does a full handshake: no session is resumed, so every one shows its certificate.)
  return {
    options: { ...options, rejectUnauthorized: false },
    verify: (socket: TLSSocket, host: string) => {
      const shown = normalizeFingerprint(socket.getPeerCertificate().fingerprint256 ?? '');
      if (shown === expected) return undefined;
      return new ReaderError(
        'ERR_LR_TLS_FINGERPRINT',
        `${host}: the server's certificate has fingerprint ${shown === undefined ? 'none' : formatFingerprint(shown)}, not the expected ${formatFingerprint(expected)}`,
      );
    },
  };
}

/**
 * The SHA-256 fingerprint of the certificate `host:port` shows (without trusting it), for
 * the message of an untrusted certificate; undefined when it cannot be read in time.
 */
export function peerFingerprint(host: string, port: number, timeoutMs = 5_000): Promise<string | undefined> {
  return new Promise((resolve) => {
    // SNI carries host names only (an IP address there is a deprecation warning).
    const socket = tlsConnect({
      host,
      port,
      ...(isIP(host) === 0 ? { servername: host } : {}),
      rejectUnauthorized: false,
    });
    const done = (value: string | undefined) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(value);
    };
    const timer = setTimeout(() => done(undefined), timeoutMs);
    socket.once('secureConnect', () =>
      done(normalizeFingerprint(socket.getPeerCertificate().fingerprint256 ?? '')),
    );
    socket.once('error', () => done(undefined));
  });
}

/** ERR_LR_TLS_UNTRUSTED for a certificate failure of `origin`, naming the fingerprint it showed. */
export async function untrustedCertificateError(
  origin: URL,
  code: string,
  cause: unknown,
): Promise<ReaderError> {
  const port = Number(origin.port === '' ? 443 : origin.port);
  const shown = await peerFingerprint(origin.hostname, port);
  const how =
    shown === undefined
      ? 'trust it with --ca FILE (its CA) or --fingerprint SHA256'
      : `its SHA-256 fingerprint is ${formatFingerprint(shown)}: check it, then trust it with --fingerprint ${formatFingerprint(shown)} (or --ca FILE)`;
  return new ReaderError(
    'ERR_LR_TLS_UNTRUSTED',
    `${origin.origin}: the server's certificate is not trusted (${code}); ${how}`,
    {
      cause,
    },
  );
}
