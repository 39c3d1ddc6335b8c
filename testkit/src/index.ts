/**
 * @turnpike/testkit: test Turnpike apps from TypeScript on Node's built-in test runner.
 * See README.md for a guide and examples.
 */
export { cleanup, openResources, track } from './cleanup.js';
export {
    connectTunnel,
    httpRequest,
    proxyRequest,
    rawHttp,
    rawTcp,
    RawConnection,
    type ConnectTunnelOptions,
    type HttpRequestOptions,
    type HttpResponse,
    type Pattern,
    type ProxyRequestOptions,
    type RawHttpOptions,
    type RawHttpResult,
    type Target,
    type TunnelResult,
} from './clients.js';
export {
    parseProxyStatus,
    parseResponse,
    parseResponseHead,
    proxyStatusParams,
    type ParsedResponse,
    type ParseResponseOptions,
    type ProxyStatusEntry,
    type ResponseHead,
} from './http.js';
export {
    echoBody,
    echoJson,
    startHttpOrigin,
    startTcpEcho,
    startTcpServer,
    startTcpSink,
    startTcpSource,
    type HttpOrigin,
    type OriginHandler,
    type OriginRequest,
    type ServerBase,
    type TcpServer,
    type TcpSink,
    type TcpSource,
} from './origins.js';
export {
    startRecordingOrigin,
    type RecordedConnection,
    type RecordedRequest,
    type RecordingOrigin,
    type RecordingOriginOptions,
} from './recording-origin.js';
export { startUploadOrigin, type UploadOrigin, type UploadOriginOptions, type UploadRecord } from './upload-origin.js';
export { startWebSocketOrigin, webSocketAccept, type UpgradeRecord, type WebSocketOrigin } from './websocket-origin.js';
export { startDnsmasq, type Dnsmasq } from './dnsmasq.js';
export { startScriptedDns, type ScriptedDns, type ScriptedName } from './dns-server.js';
export { canMakeNetns, createNetns, type Netns } from './netns.js';
export { startUdpImpair, type UdpImpair, type UdpImpairOptions, type UdpImpairStats } from './udp-impair.js';
export { appBinary, buildDir, REPO_ROOT, toolBinary } from './paths.js';
export { peakRssKiB, resetPeakRss, rssKiB } from './proc-memory.js';
export { PATTERN_PERIOD, PatternVerifier, patternBytes, randomBytes, sha256, StreamHash } from './pattern.js';
export {
    checkConfig,
    peerPort,
    runTurnpike,
    splitHostPort,
    startTurnpike,
    Turnpike,
    withTurnpike,
    writeConfigFile,
    type ConfigInput,
    type ConnectionTrace,
    type Endpoint,
    type ExitInfo,
    type LogLine,
    type LogMatcher,
    type RunOptions,
    type RunResult,
    type StartOptions,
} from './turnpike.js';
export { closedPort, sleep, waitFor, withTimeout, type WaitForOptions } from './wait.js';
export { toYaml, yamlString, type YamlScalar, type YamlValue } from './yaml.js';
export {
    issueCert,
    makeRawKey,
    makeTestCerts,
    type CertOptions,
    type IssueOptions,
    type IssuedCert,
    type RawKey,
    type TestCerts,
} from './certs.js';
export { runProcess, startProcess, TestProcess, type ProcessExit } from './process.js';
export {
    makeCrl,
    makeOcspResponse,
    startGnutlsServ,
    startNginxTls,
    startOpensslServer,
    type GnutlsServ,
    type OpensslServer,
    type NginxLogEntry,
    type NginxTlsOptions,
    type NginxTlsOrigin,
} from './tls-origins.js';
