/**
 * Turnpike as a TLS client (issue 5, off-ramp): upstream groups with `tls:` and https:// targets
 * on the forward proxy, against real TLS origins (nginx, gnutls-serv): a valid chain, wrong
 * hostname, expired and not-yet-valid certificates, an unknown CA, revocation by CRL and by a
 * stapled OCSP response (made with `openssl ocsp`), upstream mTLS, SNI and ALPN as the origin saw
 * them, session resumption, pool reuse of TLS connections without mixing TLS and plain ones,
 * a TLS alert from the origin, and configuration errors.
 */
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';

import {
    cleanup,
    httpRequest,
    issueCert,
    makeCrl,
    makeOcspResponse,
    makeTestCerts,
    proxyRequest,
    proxyStatusParams,
    runTurnpike,
    startGnutlsServ,
    startHttpOrigin,
    startNginxTls,
    startOpensslServer,
    startTcpServer,
    startTcpSink,
    startTurnpike,
    withTurnpike,
    writeConfigFile,
    type HttpResponse,
    type TestCerts,
} from '../src/index.js';
import { LOOPBACK } from './common.js';

/** A server certificate of `ca` for localhost and 127.0.0.1 (with options). */
function serverCert(ca: TestCerts, extra: Parameters<typeof issueCert>[1] = {}) {
    return issueCert(ca, { dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], ...extra });
}

interface Group {
    name: string;
    servers: string[];
    tls?: Record<string, unknown>;
    keepalive?: Record<string, unknown>;
    path?: string;
}

/** An http endpoint routing /<group name>/... (or everything, for one group) to the groups. */
function reverseConfig(groups: Group[]) {
    return {
        runtime: { workers: 1, log_level: 'debug' },
        endpoints: [
            {
                name: 'web',
                type: 'http',
                listen: ['127.0.0.1:0'],
                routes: groups.map((g) => (groups.length === 1 ? { upstream: g.name } : { path_prefix: `/${g.name}`, upstream: g.name })),
            },
        ],
        upstreams: groups.map((g) => {
            const u: Record<string, unknown> = { name: g.name, servers: g.servers, retries: 0 };
            if (g.tls) u.tls = g.tls;
            if (g.keepalive) u.keepalive = g.keepalive;
            return u;
        }),
    };
}

function assertTlsError(r: HttpResponse, error: string, details: RegExp) {
    assert.equal(r.status, 502, r.text());
    const ps = proxyStatusParams(r.headers['proxy-status']);
    assert.equal(ps.error, error, String(r.headers['proxy-status']));
    assert.match(String(ps.details), details);
}

describe('TLS to upstreams (Turnpike as a TLS client)', () => {
    afterEach(cleanup);

    it('valid chain: 200 with the origin body; SNI and ALPN as nginx saw them; an IP server gets no SNI', async () => {
        const ca = makeTestCerts();
        const origin = await startNginxTls({ cert: serverCert(ca) });
        const config = reverseConfig([
            { name: 'named', servers: [origin.address], tls: { ca: ca.caFile, server_name: 'localhost' } },
            { name: 'ip', servers: [origin.address], tls: { ca: ca.caFile, alpn: ['http/1.1'] } },
        ]);
        await withTurnpike({ config }, async (tp) => {
            const ep = tp.endpoint('web');
            const a = await httpRequest(ep, { path: '/named/x' });
            assert.equal(a.status, 200, a.text());
            assert.equal(a.text(), origin.body);
            const b = await httpRequest(ep, { path: '/ip/y' });
            assert.equal(b.status, 200, b.text());
            const named = await origin.entry('/named/x');
            const ip = await origin.entry('/ip/y');
            assert.equal(named.sni, 'localhost');
            assert.equal(named.alpn, 'http/1.1');
            assert.equal(named.protocol, 'TLSv1.3');
            assert.equal(ip.sni, '', 'an IP address is not sent as SNI');
            assert.notEqual(ip.connection, named.connection, 'two TLS configurations: two connections');
            const line = await tp.waitForLog({ msg: 'upstream tls', server_name: 'localhost' });
            assert.equal(line.version, 'TLS1.3');
        });
    });

    it('verification failures are 502 tls_certificate_error naming the reason', async () => {
        const ca = makeTestCerts();
        const otherCa = makeTestCerts();
        const good = await startNginxTls({ cert: serverCert(ca) });
        const expired = await startNginxTls({ cert: serverCert(ca, { days: -1 }) });
        const future = await startNginxTls({ cert: serverCert(ca, { notYetValid: true }) });
        const unknown = await startNginxTls({ cert: serverCert(otherCa) });
        const config = reverseConfig([
            { name: 'wrongname', servers: [good.address], tls: { ca: ca.caFile, server_name: 'wrong.example' } },
            { name: 'expired', servers: [expired.address], tls: { ca: ca.caFile } },
            { name: 'future', servers: [future.address], tls: { ca: ca.caFile } },
            { name: 'unknown', servers: [unknown.address], tls: { ca: ca.caFile } },
            { name: 'sysstore', servers: [good.address], tls: {} },
            { name: 'noverify', servers: [unknown.address], tls: { verify: false } },
        ]);
        await withTurnpike({ config }, async (tp) => {
            const ep = tp.endpoint('web');
            assertTlsError(await httpRequest(ep, { path: '/wrongname' }), 'tls_certificate_error', /hostname mismatch \(not valid for wrong\.example\)/);
            assertTlsError(await httpRequest(ep, { path: '/expired' }), 'tls_certificate_error', /certificate expired/);
            assertTlsError(await httpRequest(ep, { path: '/future' }), 'tls_certificate_error', /not yet valid/);
            assertTlsError(await httpRequest(ep, { path: '/unknown' }), 'tls_certificate_error', /unknown issuer/);
            // Without `ca`, the system trust store decides: the test CA is not in it.
            assertTlsError(await httpRequest(ep, { path: '/sysstore' }), 'tls_certificate_error', /unknown issuer/);
            const nv = await httpRequest(ep, { path: '/noverify' });
            assert.equal(nv.status, 200, 'verify: false accepts the unknown CA');
            assert.ok(tp.findLog({ msg: 'tls client verification off' }), 'warned at start-up');
            const failed = await tp.waitForLog({ msg: 'egress failed', error: 'tls_certificate_error' });
            assert.match(String(failed.details), /hostname mismatch|expired|unknown issuer|not yet valid/);
            assert.equal(good.log().length, 0, 'nothing reached the origin');
        });
    });

    it('revocation: a CRL refuses the revoked certificate and not the others', async () => {
        const ca = makeTestCerts();
        const revokedCert = serverCert(ca);
        const goodCert = serverCert(ca);
        const crl = makeCrl(ca, [revokedCert]);
        const revoked = await startNginxTls({ cert: revokedCert });
        const good = await startNginxTls({ cert: goodCert });
        const tls = { ca: ca.caFile, crl: [crl] };
        const config = reverseConfig([
            { name: 'revoked', servers: [revoked.address], tls },
            { name: 'good', servers: [good.address], tls },
        ]);
        await withTurnpike({ config }, async (tp) => {
            const ep = tp.endpoint('web');
            assertTlsError(await httpRequest(ep, { path: '/revoked' }), 'tls_certificate_error', /certificate revoked \(CRL\)/);
            const ok = await httpRequest(ep, { path: '/good' });
            assert.equal(ok.status, 200, ok.text());
            assert.equal(ok.text(), good.body);
        });
    });

    it('stapled OCSP: revoked -> 502, good -> 200; ocsp: require refuses a server without a staple', async () => {
        const ca = makeTestCerts();
        const revokedCert = serverCert(ca);
        const goodCert = serverCert(ca);
        const revokedResp = makeOcspResponse(ca, revokedCert, 'revoked', 'ocsp-revoked');
        const goodResp = makeOcspResponse(ca, goodCert, 'good', 'ocsp-good');
        const revoked = await startGnutlsServ({ cert: revokedCert, ocspResponse: revokedResp });
        const good = await startGnutlsServ({ cert: goodCert, ocspResponse: goodResp });
        const noStaple = await startNginxTls({ cert: goodCert });
        const config = reverseConfig([
            { name: 'revoked', servers: [revoked.address], tls: { ca: ca.caFile } },
            { name: 'good', servers: [good.address], tls: { ca: ca.caFile, ocsp: 'require' } },
            { name: 'nostaple', servers: [noStaple.address], tls: { ca: ca.caFile, ocsp: 'require' } },
            { name: 'lenient', servers: [noStaple.address], tls: { ca: ca.caFile } },
            { name: 'off', servers: [revoked.address], tls: { ca: ca.caFile, ocsp: 'off' } },
        ]);
        await withTurnpike({ config }, async (tp) => {
            const ep = tp.endpoint('web');
            assertTlsError(await httpRequest(ep, { path: '/revoked' }), 'tls_certificate_error', /revoked \(stapled OCSP response\)/);
            const ok = await httpRequest(ep, { path: '/good' });
            assert.equal(ok.status, 200, ok.text());
            assert.match(ok.text(), /GnuTLS/i, 'gnutls-serv answered');
            assertTlsError(await httpRequest(ep, { path: '/nostaple' }), 'tls_certificate_error', /OCSP staple missing/);
            const lenient = await httpRequest(ep, { path: '/lenient' });
            assert.equal(lenient.status, 200, 'if_stapled: no staple is fine');
            const off = await httpRequest(ep, { path: '/off' });
            assert.equal(off.status, 200, 'ocsp: off does not ask for the (revoked) staple');
        });
    });

    it('upstream mTLS: nginx requires a client certificate; sent when configured', async () => {
        const ca = makeTestCerts();
        const client = issueCert(ca, { cn: 'turnpike upstream client', usage: 'client' });
        const origin = await startNginxTls({ cert: serverCert(ca), verifyClientCa: ca.caFile });
        const config = reverseConfig([
            { name: 'without', servers: [origin.address], tls: { ca: ca.caFile } },
            { name: 'with', servers: [origin.address], tls: { ca: ca.caFile, certificate: client.certFile, private_key: client.keyFile } },
        ]);
        await withTurnpike({ config }, async (tp) => {
            const ep = tp.endpoint('web');
            const no = await httpRequest(ep, { path: '/without' });
            assert.equal(no.status, 400, 'nginx refuses a request without a client certificate');
            assert.match(no.text(), /No required SSL certificate/);
            const yes = await httpRequest(ep, { path: '/with' });
            assert.equal(yes.status, 200, yes.text());
            const entry = await origin.entry('/with');
            assert.equal(entry?.clientVerify, 'SUCCESS');
            assert.match(entry?.clientSubject ?? '', /turnpike upstream client/);
        });
    });

    it('session resumption per server: the second connection is resumed (nginx $ssl_session_reused)', async () => {
        const ca = makeTestCerts();
        const origin = await startNginxTls({ cert: serverCert(ca) });
        const config = reverseConfig([
            // max_idle 0: no pooling, so every request makes a new connection.
            { name: 'resume', servers: [origin.address], tls: { ca: ca.caFile, server_name: 'localhost' }, keepalive: { max_idle: 0 } },
            { name: 'noresume', servers: [origin.address], tls: { ca: ca.caFile, session_resumption: false }, keepalive: { max_idle: 0 } },
        ]);
        await withTurnpike({ config }, async (tp) => {
            const ep = tp.endpoint('web');
            for (const p of ['/resume/1', '/resume/2', '/resume/3', '/noresume/1', '/noresume/2']) {
                const r = await httpRequest(ep, { path: p });
                assert.equal(r.status, 200, `${p}: ${r.text()}`);
            }
            const by = (u: string) => origin.entry(u);
            assert.equal((await by('/resume/1')).reused, '.', 'the first is a full handshake');
            assert.equal((await by('/resume/2')).reused, 'r', 'the second resumes');
            assert.equal((await by('/resume/3')).reused, 'r');
            assert.notEqual((await by('/resume/2')).connection, (await by('/resume/1')).connection);
            assert.equal((await by('/noresume/2')).reused, '.', 'session_resumption: false');
            assert.ok(tp.findLog({ msg: 'upstream tls', resumed: true }), 'the log says resumed');
        });
    });

    it('pool: a TLS connection is reused across clients; a plain group to the same port never gets it', async () => {
        const ca = makeTestCerts();
        const origin = await startNginxTls({ cert: serverCert(ca) });
        const config = reverseConfig([
            { name: 'tls', servers: [origin.address], tls: { ca: ca.caFile } },
            { name: 'plain', servers: [origin.address] },
        ]);
        await withTurnpike({ config }, async (tp) => {
            const ep = tp.endpoint('web');
            const a = await httpRequest(ep, { path: '/tls/1' });
            assert.equal(a.status, 200);
            // Let TLS 1.3 tickets arrive while the connection is parked: they must not drop it.
            await new Promise((r) => setTimeout(r, 300));
            const plain = await httpRequest(ep, { path: '/plain/1' });
            assert.equal(plain.status, 400, 'plain HTTP to the TLS port: nginx refuses it, so it did not get the TLS connection');
            assert.match(plain.text(), /plain HTTP request was sent to HTTPS port/);
            const b = await httpRequest(ep, { path: '/tls/2' });
            assert.equal(b.status, 200);
            const first = await origin.entry('/tls/1');
            const second = await origin.entry('/tls/2');
            assert.equal(second.connection, first.connection, 'the parked TLS connection was reused');
            assert.equal(second.requests, 2, '$connection_requests');
        });
    });

    it('pool: a parked TLS connection the origin closes is dropped, the next request connects anew', async () => {
        const ca = makeTestCerts();
        const origin = await startNginxTls({ cert: serverCert(ca), keepaliveTimeout: '1s' });
        const config = reverseConfig([{ name: 'o', servers: [origin.address], tls: { ca: ca.caFile } }]);
        const tp = await startTurnpike({ config });
        try {
            const ep = tp.endpoint('web');
            assert.equal((await httpRequest(ep, { path: '/a' })).status, 200);
            await new Promise((r) => setTimeout(r, 1800)); // nginx closes its idle connection
            const b = await httpRequest(ep, { path: '/b' });
            assert.equal(b.status, 200, b.text());
            const a = await origin.entry('/a');
            const b2 = await origin.entry('/b');
            assert.notEqual(b2.connection, a.connection, 'a new connection');
            assert.equal(b2.requests, 1);
        } finally {
            await tp.stop();
        }
        const pool = tp.findLog({ msg: 'upstream pool' });
        assert.ok(pool, 'the pool reported at stop');
        assert.equal(pool.closed_peer, 1, JSON.stringify(pool));
        assert.equal(pool.reused, 0);
        await tp.assertCleanExit();
    });

    it('pool: a parked TLS connection is read through TLS: a KeyUpdate keeps it, application data drops it', async () => {
        const ca = makeTestCerts();
        const srv = await startOpensslServer({ cert: serverCert(ca) });
        const config = reverseConfig([{ name: 'o', servers: [srv.address], tls: { ca: ca.caFile } }]);
        const reply = 'HTTP/1.1 200 OK\nContent-Length: 4\n\nok\n'; // s_server sends LF as CRLF
        const exchange = async (ep: { host: string; port: number }, path: string) => {
            const p = httpRequest(ep, { path, timeoutMs: 10_000 });
            await srv.waitFor(new RegExp(`GET ${path} HTTP/1\\.1[^]*?\\r\\n\\r\\n`));
            srv.send(reply);
            const r = await p;
            assert.equal(r.status, 200, r.text());
        };
        const accepts = () => srv.received().match(/<<< TLS 1\.3, Handshake \[length \w+\], ClientHello/g)?.length ?? 0;
        const tp = await startTurnpike({ config });
        try {
            const ep = tp.endpoint('web');
            await exchange(ep, '/one');
            const acceptsBefore = accepts();
            await new Promise((r) => setTimeout(r, 300)); // parked by now
            srv.keyUpdate(true); // a post-handshake message to the parked connection, answer requested
            await srv.waitFor(/>>> TLS 1\.3, Handshake \[length 0005\], KeyUpdate/);
            await new Promise((r) => setTimeout(r, 300)); // read (through TLS) by the pool
            await exchange(ep, '/two');
            assert.equal(accepts(), acceptsBefore, 'the same connection served /two');
            // RFC 8446 4.6.3: our own KeyUpdate went before the next application data.
            assert.match(srv.received(), /<<< TLS 1\.3, Handshake \[length 0005\], KeyUpdate[^]*GET \/two/);
            await new Promise((r) => setTimeout(r, 300));
            srv.send('unexpected\n'); // application data while parked: the server spoke
            await new Promise((r) => setTimeout(r, 300));
            await exchange(ep, '/three');
            assert.equal(accepts(), acceptsBefore + 1, 'a new connection served /three');
        } finally {
            await tp.stop();
        }
        const pool = tp.findLog({ msg: 'upstream pool' });
        assert.equal(pool?.reused, 1, JSON.stringify(pool));
        assert.equal(pool?.closed_peer, 1, JSON.stringify(pool));
        // At stop the pool dropped the parked connection with a close_notify.
        await srv.waitFor(/<<< TLS 1\.3, Alert \[length 0002\], warning close_notify/);
        await tp.assertCleanExit();
    });

    it('a fatal alert from the origin is 502 tls_alert_received with alert-id', async () => {
        const ca = makeTestCerts();
        // TLS 1.2 with a required client certificate: the server's alert ends our handshake.
        const cert = serverCert(ca);
        const serv = await startGnutlsServ({ cert, priority: 'NORMAL:-VERS-ALL:+VERS-TLS1.2', requireClientCert: ca.caFile });
        const config = reverseConfig([{ name: 'o', servers: [serv.address], tls: { ca: ca.caFile } }]);
        await withTurnpike({ config }, async (tp) => {
            const r = await httpRequest(tp.endpoint('web'), { path: '/' });
            assert.equal(r.status, 502, r.text());
            const ps = proxyStatusParams(r.headers['proxy-status']);
            assert.equal(ps.error, 'tls_alert_received', String(r.headers['proxy-status']));
            assert.equal(typeof ps['alert-id'], 'number');
            assert.equal(typeof ps['alert-message'], 'string');
        });
    });

    it('profiles on the client side: fips refuses a ChaCha20-only origin that modern takes; min_version 1.3 refuses a TLS 1.2 origin that compat takes', async () => {
        const ca = makeTestCerts();
        const cert = serverCert(ca);
        const chacha = await startGnutlsServ({ cert, priority: 'NORMAL:-CIPHER-ALL:+CHACHA20-POLY1305' });
        const tls12 = await startGnutlsServ({ cert, priority: 'NORMAL:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:+AES-128-CBC:-MAC-ALL:+SHA1' });
        const groups: Group[] = [
            { name: 'fips', servers: [chacha.address], tls: { ca: ca.caFile, profile: 'fips' } },
            { name: 'modern', servers: [chacha.address], tls: { ca: ca.caFile, profile: 'modern' } },
            { name: 'v13', servers: [tls12.address], tls: { ca: ca.caFile, min_version: '1.3' } },
            { name: 'compat', servers: [tls12.address], tls: { ca: ca.caFile, profile: 'compat', min_version: '1.2' } },
        ];
        await withTurnpike({ config: reverseConfig(groups) }, async (tp) => {
            const ep = tp.endpoint('web');
            const fips = await httpRequest(ep, { path: '/fips/' });
            assert.equal(fips.status, 502, fips.text());
            assert.match(String(fips.headers['proxy-status']), /error=tls_/);
            const modern = await httpRequest(ep, { path: '/modern/' });
            assert.equal(modern.status, 200, modern.text());
            assert.match(modern.text(), /CHACHA20/i, 'gnutls-serv reports the cipher it used');
            const v13 = await httpRequest(ep, { path: '/v13/' });
            assert.equal(v13.status, 502, v13.text());
            assert.match(String(v13.headers['proxy-status']), /error=tls_/);
            const compat = await httpRequest(ep, { path: '/compat/' });
            assert.equal(compat.status, 200, compat.text());
            assert.match(compat.text(), /TLS1\.2/);
            assert.match(compat.text(), /AES-128-CBC/);
        });
    });

    it('a verification failure counts as a connect failure: retried on another server, passive health takes it out', async () => {
        const ca = makeTestCerts();
        const otherCa = makeTestCerts();
        const bad = await startNginxTls({ cert: serverCert(otherCa) });
        const good = await startNginxTls({ cert: serverCert(ca) });
        const config = {
            runtime: { workers: 1 },
            endpoints: [{ name: 'web', type: 'http', listen: ['127.0.0.1:0'], routes: [{ upstream: 'o' }] }],
            upstreams: [
                {
                    name: 'o',
                    servers: [bad.address, good.address],
                    retries: 1,
                    health: { max_fails: 1, fail_timeout: '30s' },
                    tls: { ca: ca.caFile },
                },
            ],
        };
        await withTurnpike({ config }, async (tp) => {
            const ep = tp.endpoint('web');
            for (let i = 0; i < 4; i++) {
                const r = await httpRequest(ep, { path: `/${i}` });
                assert.equal(r.status, 200, `request ${i}: ${r.text()}`);
                assert.equal(r.text(), good.body);
            }
            const out = await tp.waitForLog({ msg: 'upstream health', healthy: false });
            assert.equal(out.server, bad.address);
            assert.equal(tp.logsWithMsg('egress failed').filter((l) => l.error === 'tls_certificate_error').length, 1, 'tried once, then out');
        });
    });

    it('a silent server is 504 after timeouts.connect, a plain HTTP server is tls_protocol_error', async () => {
        const silent = await startTcpSink(); // accepts, reads the ClientHello, never answers
        const plain = await startTcpServer((socket) => {
            socket.once('data', () => socket.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n'));
        });
        const config = reverseConfig([
            { name: 'silent', servers: [silent.address], tls: {} },
            { name: 'plain', servers: [plain.address], tls: {} },
        ]);
        (config.endpoints[0] as Record<string, unknown>).timeouts = { connect: '500ms' };
        await withTurnpike({ config }, async (tp) => {
            const ep = tp.endpoint('web');
            const t0 = Date.now();
            const r = await httpRequest(ep, { path: '/silent' });
            assert.equal(r.status, 504, r.text());
            const ps = proxyStatusParams(r.headers['proxy-status']);
            assert.equal(ps.error, 'connection_timeout');
            assert.match(String(ps.details), /TLS handshake with 127\.0\.0\.1 did not finish in time/);
            assert.ok(Date.now() - t0 >= 400, 'waited for the deadline');
            assert.ok(silent.bytes > 0, 'the ClientHello went out');
            const p = await httpRequest(ep, { path: '/plain' });
            assert.equal(p.status, 502, p.text());
            assert.equal(proxyStatusParams(p.headers['proxy-status']).error, 'tls_protocol_error', String(p.headers['proxy-status']));
        });
    });

    it('forward proxy: an https:// absolute-form target goes over TLS (origin_tls); a bad one is 502', async () => {
        const ca = makeTestCerts();
        const otherCa = makeTestCerts();
        const origin = await startNginxTls({ cert: serverCert(ca) });
        const bad = await startNginxTls({ cert: serverCert(otherCa) });
        const plain = await startHttpOrigin();
        const config = {
            runtime: { workers: 1 },
            endpoints: [
                {
                    name: 'proxy',
                    type: 'http_proxy',
                    listen: ['127.0.0.1:0'],
                    allow_destinations: LOOPBACK,
                    origin_tls: { ca: ca.caFile },
                },
            ],
        };
        await withTurnpike({ config }, async (tp) => {
            const ep = tp.endpoint('proxy');
            const ok = await proxyRequest(ep, { url: `https://127.0.0.1:${origin.port}/fwd` });
            assert.equal(ok.status, 200, ok.text());
            assert.equal(ok.text(), origin.body);
            assert.equal((await origin.entry('/fwd')).sni, '', 'an IP target: no SNI');
            const again = await proxyRequest(ep, { url: `https://127.0.0.1:${origin.port}/fwd2` });
            assert.equal(again.status, 200);
            const second = await origin.entry('/fwd2');
            assert.notEqual(second.connection, (await origin.entry('/fwd')).connection);
            assert.equal(second.reused, 'r', 'the session with the origin was resumed');
            const r = await proxyRequest(ep, { url: `https://127.0.0.1:${bad.port}/` });
            assertTlsError(r, 'tls_certificate_error', /unknown issuer/);
            const p = await proxyRequest(ep, { url: `http://127.0.0.1:${plain.port}/plain` });
            assert.equal(p.status, 200, 'http:// stays plain');
            assert.equal(plain.requests[0]?.url, '/plain');
        });
    });

    it('configuration errors name the file and the problem', async () => {
        const ca = makeTestCerts();
        const start = async (tls: Record<string, unknown>) => {
            const file = writeConfigFile(reverseConfig([{ name: 'o', servers: ['127.0.0.1:9'], tls }]));
            return runTurnpike(['-c', file], { timeoutMs: 10_000 });
        };
        const missing = await start({ ca: '/nonexistent/ca.pem' });
        assert.notEqual(missing.code, 0);
        assert.match(missing.stderr, /upstream 'o': tls: ca '\/nonexistent\/ca\.pem': No such file or directory/);
        const notPem = await start({ ca: ca.keyFile.replace(/server\.key$/, 'ca.tmpl') });
        assert.notEqual(notPem.code, 0);
        assert.match(notPem.stderr, /upstream 'o': tls: ca '.*ca\.tmpl': /);
        const client = issueCert(ca, { usage: 'client' });
        const badKey = await start({ certificate: client.certFile, private_key: ca.caFile });
        assert.notEqual(badKey.code, 0);
        assert.match(badKey.stderr, /upstream 'o': tls: certificate\/private_key '.*': /);
        const halfPair = await start({ certificate: client.certFile });
        assert.equal(halfPair.code, 2);
        assert.match(halfPair.stderr, /private_key/);
        const http = await runTurnpike(['--check-config', '-c', writeConfigFile({
            upstreams: [{ name: 'o', servers: ['127.0.0.1:9'], tls: {}, health: { check: 'http' } }],
        })]);
        assert.equal(http.code, 2);
        assert.match(http.stderr, /http health checks speak plain HTTP/);
    });
});
