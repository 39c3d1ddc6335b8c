/**
 * The server side's TLS profiles and OCSP stapling, against Node's TLS client (OpenSSL): the
 * `compat` profile takes an old TLS 1.2 CBC client that `modern` refuses; `fips` refuses ChaCha20
 * and X25519 and takes AES-GCM over P-256, and the start-up line says whether GnuTLS runs in FIPS
 * 140 mode; a certificate's `ocsp_staple_file` is stapled byte for byte to a client that asks.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { afterEach, describe, it } from 'node:test';

import { cleanup, makeTestCerts, startTcpEcho, withTurnpike, type TestCerts } from '../src/index.js';
import { pem, tlsConnect } from './tls-common.js';

function l4Config(echoPort: number, certs: TestCerts, tlsSection: Record<string, unknown>) {
    return {
        runtime: { workers: 1 },
        endpoints: [
            {
                name: 'tls',
                type: 'tcp',
                listen: ['127.0.0.1:0'],
                upstream: `127.0.0.1:${echoPort}`,
                tls: { certificates: [{ cert: certs.certFile, key: certs.keyFile }], ...tlsSection },
            },
        ],
    };
}

/** Handshakes with Node's client; resolves to the negotiated protocol and cipher, or the error. */
async function handshake(port: number, certs: TestCerts, options: tls.ConnectionOptions) {
    try {
        const s = await tlsConnect(
            { host: '127.0.0.1', port, address: `127.0.0.1:${port}` } as never,
            { ca: pem(certs.caFile), servername: 'localhost', ...options },
        );
        const out = { ok: true as const, protocol: s.getProtocol(), cipher: s.getCipher().name };
        s.destroy();
        return out;
    } catch (e) {
        return { ok: false as const, error: String(e) };
    }
}

/**
 * A DER OCSP response saying "good" for the server certificate, signed by the test CA itself (a
 * CA may answer for the certificates it issued), made with `openssl ocsp` from an index file.
 */
function makeOcspResponse(certs: TestCerts): string {
    const f = (n: string) => path.join(certs.dir, n);
    const serial = execFileSync('openssl', ['x509', '-in', certs.certFile, '-noout', '-serial'])
        .toString()
        .trim()
        .replace(/^serial=/, '');
    const subject = execFileSync('openssl', ['x509', '-in', certs.certFile, '-noout', '-subject', '-nameopt', 'compat'])
        .toString()
        .trim()
        .replace(/^subject=\s*/, '');
    fs.writeFileSync(f('index.txt'), `V\t491231235959Z\t\t${serial}\tunknown\t${subject}\n`);
    execFileSync('openssl', ['ocsp', '-issuer', certs.caFile, '-cert', certs.certFile, '-no_nonce', '-reqout', f('ocsp.req')], { stdio: 'pipe' });
    execFileSync(
        'openssl',
        ['ocsp', '-index', f('index.txt'), '-rsigner', certs.caFile, '-rkey', f('ca.key'), '-CA', certs.caFile, '-reqin', f('ocsp.req'), '-respout', f('ocsp.der'), '-ndays', '1'],
        { stdio: 'pipe' },
    );
    return f('ocsp.der');
}

/** The OCSP response stapled to a handshake (null: none), asking for one or not. */
function stapleOf(port: number, certs: TestCerts, requestOCSP: boolean): Promise<Buffer | null> {
    return new Promise<Buffer | null>((resolve, reject) => {
        const s = tls.connect({ host: '127.0.0.1', port, ca: pem(certs.caFile), servername: 'localhost', requestOCSP } as tls.ConnectionOptions);
        let got: Buffer | null = null;
        s.on('OCSPResponse', (b: Buffer) => (got = b));
        s.once('secureConnect', () => {
            s.destroy();
            resolve(got);
        });
        s.once('error', reject);
    });
}

describe('TLS profiles and OCSP stapling', () => {
    afterEach(cleanup);

    it('compat takes a TLS 1.2 CBC client that modern refuses; both take TLS 1.2 with AES-GCM', async () => {
        const certs = makeTestCerts();
        const echo = await startTcpEcho();
        const cbc = { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES128-SHA' } as const;
        const gcm = { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256' } as const;
        await withTurnpike({ config: l4Config(echo.port, certs, { profile: 'compat', min_version: '1.2' }) }, async (tp) => {
            const port = tp.endpoint('tls').port;
            const r = await handshake(port, certs, cbc);
            assert.ok(r.ok, `compat refused a CBC client: ${JSON.stringify(r)}`);
            assert.equal(r.protocol, 'TLSv1.2');
            assert.equal(r.cipher, 'ECDHE-ECDSA-AES128-SHA');
            const g = await handshake(port, certs, gcm);
            assert.ok(g.ok && g.cipher === 'ECDHE-ECDSA-AES128-GCM-SHA256', JSON.stringify(g));
            const line = await tp.waitForLog({ msg: 'tls' });
            assert.equal(line.profile, 'compat');
            assert.equal(line.min_version, 'TLS1.2');
        });
        await withTurnpike({ config: l4Config(echo.port, certs, { profile: 'modern', min_version: '1.2' }) }, async (tp) => {
            const port = tp.endpoint('tls').port;
            const r = await handshake(port, certs, cbc);
            assert.equal(r.ok, false, 'modern must refuse a CBC suite');
            const failed = await tp.waitForLog({ msg: 'tls handshake failed' });
            assert.ok(failed.reason, 'the failure has a reason');
            const g = await handshake(port, certs, gcm);
            assert.ok(g.ok && g.protocol === 'TLSv1.2', JSON.stringify(g));
        });
    });

    it('fips refuses ChaCha20 and X25519, takes AES-GCM over P-256, and reports the FIPS mode', async () => {
        const certs = makeTestCerts();
        const echo = await startTcpEcho();
        await withTurnpike({ config: l4Config(echo.port, certs, { profile: 'fips' }) }, async (tp) => {
            const port = tp.endpoint('tls').port;
            const chacha = await handshake(port, certs, { ciphers: 'TLS_CHACHA20_POLY1305_SHA256' });
            assert.equal(chacha.ok, false, 'ChaCha20-Poly1305 is not FIPS-approved');
            const x25519 = await handshake(port, certs, { ecdhCurve: 'X25519' });
            assert.equal(x25519.ok, false, 'X25519 is not a FIPS group');
            const ok = await handshake(port, certs, { ecdhCurve: 'P-256', ciphers: 'TLS_AES_128_GCM_SHA256' });
            assert.ok(ok.ok, JSON.stringify(ok));
            assert.equal(ok.protocol, 'TLSv1.3');
            assert.equal(ok.cipher, 'TLS_AES_128_GCM_SHA256');
            const line = await tp.waitForLog({ msg: 'tls' });
            assert.equal(line.profile, 'fips');
            assert.equal(typeof line.fips_mode, 'boolean');
            if (line.fips_mode === false) {
                // Debian's GnuTLS is not a validated module: the profile says so rather than pretend.
                await tp.waitForLog({ msg: 'tls fips profile without FIPS mode' });
            }
        });
    });

    it('staples the configured OCSP response, byte for byte, to a client that asks for it', async () => {
        const certs = makeTestCerts();
        const echo = await startTcpEcho();
        const der = makeOcspResponse(certs);
        const tlsSection = { certificates: [{ cert: certs.certFile, key: certs.keyFile, ocsp_staple_file: der }] };
        await withTurnpike({ config: l4Config(echo.port, certs, tlsSection) }, async (tp) => {
            const port = tp.endpoint('tls').port;
            const stapled = await stapleOf(port, certs, true);
            assert.ok(stapled, 'the handshake carried an OCSP response');
            assert.deepEqual(stapled, fs.readFileSync(der));
            const text = execFileSync('openssl', ['ocsp', '-respin', der, '-resp_text', '-noverify']).toString();
            assert.match(text, /Cert Status: good/);
            // A client that does not ask gets none.
            const plain = await stapleOf(port, certs, false);
            assert.equal(plain, null);
        });
    });
});
