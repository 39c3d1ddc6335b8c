/**
 * L4 TLS termination (a `tcp` endpoint with `tls`): real TLS clients (Node's OpenSSL, gnutls-cli)
 * reach a plain upstream through Turnpike; bytes both ways, backpressure toward a paused TLS
 * client, SNI picking the certificate, and the bad inputs: garbage instead of a ClientHello, a
 * stall (the handshake timeout), and a client offering only a disabled version.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { afterEach, describe, it } from 'node:test';

import {
    cleanup,
    issueCert,
    makeTestCerts,
    PatternVerifier,
    rawTcp,
    sleep,
    startTcpEcho,
    startTcpSource,
    waitFor,
    withTurnpike,
} from '../src/index.js';
import { tcpConfig } from './common.js';
import { gnutlsCli, pem, tlsConnect } from './tls-common.js';

const MiB = 1 << 20;

describe('TLS on a tcp endpoint (L4 termination)', () => {
    afterEach(cleanup);

    it('carries bytes both ways between a TLS 1.3 client and a plain upstream', async () => {
        const certs = makeTestCerts();
        const echo = await startTcpEcho();
        const config = tcpConfig(echo.address, { tls: { certificates: [{ cert: certs.certFile, key: certs.keyFile }] } });
        await withTurnpike({ config }, async (tp) => {
            const s = await tlsConnect(tp.endpoint('l4'), { ca: pem(certs.caFile), servername: 'localhost' });
            assert.equal(s.getProtocol(), 'TLSv1.3');
            const payload = crypto.randomBytes(4 * MiB);
            const got: Buffer[] = [];
            let n = 0;
            const done = new Promise<void>((resolve) => {
                s.on('data', (c: Buffer) => {
                    got.push(c);
                    n += c.length;
                    if (n >= payload.length) resolve();
                });
            });
            s.write(payload);
            await done;
            assert.ok(Buffer.concat(got).equals(payload), 'the echo came back intact');
            const port = s.localPort;
            s.end();
            const trace = await tp.connectionFor(port!);
            assert.deepEqual(trace.hooks, [
                'ingress.handle_tls_client_hello',
                'ingress.handle_connection',
                'egress.handle_connection',
                'egress.handle_connection_established',
                'ingress.handle_connection_close',
            ]);
            assert.equal(trace.close.reason, 'done');
            assert.equal(trace.close.tls_version, 'TLS1.3');
            assert.equal(trace.close.sni, 'localhost');
            assert.equal(trace.close.tls_resumed, false);
            assert.equal(trace.close.bytes_to_upstream, payload.length, 'plaintext upstream');
            assert.ok(Number(trace.close.bytes_from_client) > payload.length, 'ciphertext from the client');
        });
    });

    it('stops reading the upstream while the TLS client does not read, then delivers everything', { timeout: 120_000 }, async () => {
        const certs = makeTestCerts();
        const total = 64 * MiB;
        const source = await startTcpSource({ bytes: total });
        const config = tcpConfig(source.address, { tls: { certificates: [{ cert: certs.certFile, key: certs.keyFile }] } });
        await withTurnpike({ config }, async (tp) => {
            const s = await tlsConnect(tp.endpoint('l4'), { ca: pem(certs.caFile), servername: 'localhost' });
            s.pause();
            await waitFor(() => source.sent > 0, { timeoutMs: 10_000, message: () => 'the source never sent' });
            await sleep(1500);
            const sentWhilePaused = source.sent;
            await sleep(500);
            assert.equal(source.sent, sentWhilePaused, 'the source is blocked: Turnpike stopped reading it');
            assert.ok(sentWhilePaused < 24 * MiB, `only socket buffers and the watermark are in flight (${sentWhilePaused} bytes)`);
            const verify = new PatternVerifier();
            const ended = new Promise<void>((resolve) => s.on('end', () => resolve()));
            s.on('data', (c: Buffer) => verify.update(c));
            s.resume();
            await ended;
            assert.equal(verify.bytes, total);
            s.end();
        });
    });

    it('picks the certificate by SNI: exact names, a wildcard, and the first one otherwise', async () => {
        const certs = makeTestCerts();
        const a = issueCert(certs, { dnsNames: ['a.example.test'] });
        const wild = issueCert(certs, { dnsNames: ['*.w.example.test'] });
        const exactInWild = issueCert(certs, { dnsNames: ['exact.w.example.test'] });
        const echo = await startTcpEcho();
        const config = tcpConfig(echo.address, {
            tls: {
                certificates: [
                    { cert: certs.certFile, key: certs.keyFile },
                    { cert: wild.certFile, key: wild.keyFile },
                    { cert: a.certFile, key: a.keyFile },
                    { cert: exactInWild.certFile, key: exactInWild.keyFile },
                ],
            },
        });
        await withTurnpike({ config }, async (tp) => {
            const port = tp.endpoint('l4').port;
            const cases: Array<[string, string]> = [
                ['a.example.test', 'CN=a.example.test'],
                ['x.w.example.test', 'CN=\\*.w.example.test'],
                ['exact.w.example.test', 'CN=exact.w.example.test'],
                ['other.example.test', 'CN=localhost'],
            ];
            for (const [sni, cn] of cases) {
                const r = await gnutlsCli(port, ['--x509cafile', certs.caFile, '--sni-hostname', sni, '--verify-hostname', sni === 'other.example.test' ? 'localhost' : sni], 'ping\n');
                assert.match(r.out, new RegExp(`subject \`${cn}'`), `SNI ${sni}:\n${r.out}`);
                assert.match(r.out, /Handshake was completed/);
                assert.match(r.out, /\(TLS1\.3/);
                assert.match(r.out, /ping/, 'the echo came back');
            }
        });
    });

    it('closes a client that sends garbage instead of a ClientHello, with the reason', async () => {
        const certs = makeTestCerts();
        const echo = await startTcpEcho();
        const config = tcpConfig(echo.address, { tls: { certificates: [{ cert: certs.certFile, key: certs.keyFile }] } });
        await withTurnpike({ config }, async (tp) => {
            for (const [bytes, why] of [
                ['GET / HTTP/1.1\r\nHost: x\r\n\r\n', 'not a TLS handshake record'],
                [Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05, 0x02, 0, 0, 1, 0]), 'the first handshake message is not a ClientHello'],
                [Buffer.from([0x80, 0x2e, 0x01, 0x00, 0x02]), 'an SSLv2 ClientHello (SSL 2 is refused)'],
            ] as const) {
                const c = await rawTcp(tp.endpoint('l4'));
                await c.write(bytes);
                await c.waitForPeerClose();
                const trace = await tp.connectionFor(c.localPort);
                assert.equal(trace.close.reason, 'tls_handshake_failed');
                assert.deepEqual(trace.hooks, ['ingress.handle_connection_close'], 'no hook before the ClientHello');
                const line = tp.findLog((l) => l.msg === 'tls handshake failed' && l.conn === trace.conn);
                assert.equal(line?.reason, why);
            }
            assert.equal(echo.sockets.length, 0, 'nothing reached the upstream');
        });
    });

    it('closes a client that stalls in the handshake after tls.handshake_timeout', async () => {
        const certs = makeTestCerts();
        const echo = await startTcpEcho();
        const config = tcpConfig(echo.address, {
            tls: { certificates: [{ cert: certs.certFile, key: certs.keyFile }], handshake_timeout: '400ms' },
        });
        await withTurnpike({ config }, async (tp) => {
            // Nothing at all, then half a ClientHello (a valid beginning).
            for (const bytes of [null, Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01])]) {
                const c = await rawTcp(tp.endpoint('l4'));
                if (bytes) await c.write(bytes);
                const t0 = Date.now();
                await c.waitForPeerClose(5000);
                const took = Date.now() - t0;
                assert.ok(took >= 300, `closed after ${took} ms`);
                const trace = await tp.connectionFor(c.localPort);
                assert.equal(trace.close.reason, 'tls_handshake_timeout');
                const line = tp.findLog((l) => l.msg === 'tls handshake failed' && l.conn === trace.conn);
                assert.equal(line?.reason, 'no complete ClientHello within tls.handshake_timeout');
            }
        });
    });

    it('refuses a client that offers only TLS 1.2 when min_version is 1.3, and says why', async () => {
        const certs = makeTestCerts();
        const echo = await startTcpEcho();
        const config = tcpConfig(echo.address, { tls: { certificates: [{ cert: certs.certFile, key: certs.keyFile }] } });
        await withTurnpike({ config }, async (tp) => {
            const r = await gnutlsCli(tp.endpoint('l4').port, ['--x509cafile', certs.caFile, '--priority', 'NORMAL:-VERS-ALL:+VERS-TLS1.2'], 'x\n');
            assert.notEqual(r.code, 0);
            assert.doesNotMatch(r.out, /Handshake was completed/);
            const line = await tp.waitForLog({ msg: 'tls handshake failed' });
            assert.equal(line.reason, 'no TLS version in common: the client offers at most TLS1.2, the minimum is TLS1.3');
            const close = await tp.waitForLog({ msg: 'close', conn: line.conn });
            assert.equal(close.reason, 'tls_handshake_failed');
        });
    });
});
