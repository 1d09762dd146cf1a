/**
 * @liverestore/testkit (private): what the tests and benchmarks share. The synthetic VM
 * images come from @liverestore/vmgen (re-exported here, so tests import one package);
 * the rest are test helpers: temporary directories, file hashes, QMP and tool checks,
 * throw-away TLS certificates, a small tmpfs for full-disk tests, a fake clock, nginx's
 * main configuration, a flood of idle connections from child processes with a
 * descriptor limit of their own.
 */

export * from '@liverestore/vmgen';
export {
  type CertificateSubject,
  caSignedCertificates,
  selfSignedCertificate,
  type TestCertificate,
  type TestCertificateChain,
} from './certificates.js';
export {
  type ConnectionFlood,
  type ConnectionFloodOptions,
  type FloodCounts,
  startConnectionFlood,
} from './connection-flood.js';
export { withDescriptorLimit } from './descriptor-limit.js';
export { FakeClock, type FakeTimer } from './fake-clock.js';
export { type FaultMatch, FaultProxy, type ProxyFault } from './fault-proxy.js';
export { fileHashes } from './file-hashes.js';
export { freePort } from './free-port.js';
export { hasNginx, type NginxMainConfig, nginxMainConfig } from './nginx-config.js';
export { promiseState } from './promise-state.js';
export { Qmp, type QmpMessage, type StorageDaemonPaths, storageDaemonArgs, withTimeout } from './qmp.js';
export { ExtraGateway, type TestRgw, testRgw } from './rgw.js';
export { type HookedTest, shareFixture } from './shared-fixture.js';
export { allowsDirectIo, type TempDir, tempDir } from './temp.js';
export { mountSmallTmpfs, type TeardownContext } from './tmpfs.js';
export { hasTool, requireTool, type ToolContext } from './tools.js';
export { type VmImageFile, writeVmImageFiles } from './vm-image-files.js';
