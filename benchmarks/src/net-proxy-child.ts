/**
 * The network-conditions proxy in its own process (so its timers and copies do not run
 * on the event loop being measured): `node net-proxy-child.js UPSTREAM_HOST:PORT RTT_MS BITS_PER_S`.
 * Prints `127.0.0.1:PORT` once listening and runs until SIGTERM.
 */

import { startShapedProxy } from './net-proxy.js';

const [upstream = '', rtt = '', bits = ''] = process.argv.slice(2);
const colon = upstream.lastIndexOf(':');
const proxy = await startShapedProxy({
  upstream: { host: upstream.slice(0, colon), port: Number(upstream.slice(colon + 1)) },
  conditions: { rttMs: Number(rtt), bitsPerSecond: Number(bits) },
});
process.stdout.write(`${proxy.address}\n`);
process.once('SIGTERM', () => {
  void proxy.close().then(() => process.exit(0));
});
