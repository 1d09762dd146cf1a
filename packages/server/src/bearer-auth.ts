import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

/**
 * The check of a request's `Authorization` against the server's token: `Bearer TOKEN`, or
 * `Basic base64(ANY-USER:TOKEN)` since QEMU's curl driver can only send Basic auth. Both
 * sides are hashed before a constant-time compare (equal lengths for timingSafeEqual, and
 * no length leak). Without a token every request passes.
 */
export function bearerAuth(token: string | undefined): (req: IncomingMessage) => boolean {
  if (token === undefined) return () => true;
  const expected = createHash('sha256').update(`Bearer ${token}`).digest();
  return (req) => {
    const given = req.headers.authorization;
    if (given === undefined) return false;
    let presented = given;
    if (/^basic /i.test(given)) {
      const decoded = Buffer.from(given.slice(6).trim(), 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      presented = colon < 0 ? '' : `Bearer ${decoded.slice(colon + 1)}`;
    }
    return timingSafeEqual(createHash('sha256').update(presented).digest(), expected);
  };
}
