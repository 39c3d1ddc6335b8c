/**
 * testssl.sh (Debian's, offline) against an HTTPS endpoint with the modern profile and TLS 1.2
 * allowed: no protocol below TLS 1.2, and no vulnerability finding. The certificate findings of a
 * throw-away test CA (not trusted, one-day validity, no revocation URLs) are expected and ignored.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, it } from 'node:test';

import { cleanup, makeTestCerts, startHttpOrigin, withTurnpike } from '../src/index.js';

const run = promisify(execFile);

interface Finding {
    id: string;
    severity: string;
    finding: string;
}

describe('testssl.sh', () => {
    afterEach(cleanup);

    it('finds no vulnerability in the modern profile (TLS 1.2 and 1.3)', { timeout: 600_000 }, async () => {
        const certs = makeTestCerts();
        const origin = await startHttpOrigin();
        const config = {
            runtime: { workers: 1 },
            endpoints: [
                {
                    name: 'web',
                    type: 'http',
                    listen: ['127.0.0.1:0'],
                    routes: [{ upstream: 'o' }],
                    tls: { profile: 'modern', min_version: '1.2', certificates: [{ cert: certs.certFile, key: certs.keyFile }] },
                },
            ],
            upstreams: [{ name: 'o', servers: [`127.0.0.1:${origin.port}`] }],
        };
        await withTurnpike({ config }, async (tp) => {
            const json = path.join(certs.dir, 'testssl.json');
            // --fast skips the slow cipher-by-cipher probes; -p protocols, -S server defaults,
            // -U vulnerabilities. testssl.sh phones nowhere unless asked (--phone-out).
            await run('testssl', ['--quiet', '--fast', '--warnings', 'off', '--color', '0', '--jsonfile', json, '-p', '-S', '-U', `127.0.0.1:${tp.endpoint('web').port}`], {
                timeout: 540_000,
                maxBuffer: 16 << 20,
            }).catch((e: { code?: number }) => {
                // testssl.sh exits non-zero when it has findings; the JSON is the judge.
                if (!fs.existsSync(json)) throw e;
            });
            const findings = JSON.parse(fs.readFileSync(json, 'utf8')) as Finding[];
            const by = (id: string) => findings.find((f) => f.id === id);
            for (const old of ['SSLv2', 'SSLv3', 'TLS1', 'TLS1_1']) assert.match(by(old)?.finding ?? '', /not offered/, old);
            assert.match(by('TLS1_2')?.finding ?? '', /^offered/);
            assert.match(by('TLS1_3')?.finding ?? '', /^offered/);
            const bad = findings.filter(
                (f) =>
                    !['OK', 'INFO', 'DEBUG'].includes(f.severity) &&
                    !f.id.startsWith('cert') && // the test CA is not trusted, lives one day, has no OCSP/CRL
                    f.id !== 'DNS_CAArecord' &&
                    !/local OpenSSL|your \/usr\/bin\/openssl/.test(f.finding), // what the client cannot test
            );
            assert.deepEqual(bad, [], `testssl.sh findings:\n${JSON.stringify(bad, null, 2)}`);
            assert.ok(findings.some((f) => f.id === 'heartbleed' && f.severity === 'OK'), 'the vulnerability checks ran');
        });
    });
});
