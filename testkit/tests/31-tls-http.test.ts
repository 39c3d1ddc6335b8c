/**
 * TLS on the HTTP on-ramps, with curl and gnutls-cli: an HTTPS reverse proxy (ALPN, resumption),
 * an HTTPS forward proxy (`curl -x https://`), mTLS required and optional (the client certificate
 * in the close hook), raw public keys (RFC 7250), the SNI peek hook, and certificate reload on
 * SIGHUP without dropping a connection.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, it } from 'node:test';

import {
    buildDir,
    cleanup,
    issueCert,
    makeRawKey,
    makeTestCerts,
    startHttpOrigin,
    startTcpEcho,
    withTurnpike,
    type HttpOrigin,
    type TestCerts,
} from '../src/index.js';
import { LOOPBACK } from './common.js';
import { gnutlsCli, pem, tlsConnect } from './tls-common.js';

const run = promisify(execFile);
const lab = () => path.join(buildDir(), 'tests', 'apps', 'hook-lab');

async function curl(args: string[]): Promise<{ code: number; out: string; err: string }> {
    try {
        const r = await run('curl', ['-sS', '--max-time', '10', ...args]);
        return { code: 0, out: r.stdout, err: r.stderr };
    } catch (e) {
        const x = e as { code: number; stdout: string; stderr: string };
        return { code: x.code, out: x.stdout ?? '', err: x.stderr ?? '' };
    }
}

function webConfig(origin: HttpOrigin, certs: TestCerts, tls: Record<string, unknown> = {}) {
    return {
        runtime: { workers: 1, trace_hooks: true },
        endpoints: [
            {
                name: 'web',
                type: 'http',
                listen: ['127.0.0.1:0'],
                routes: [{ upstream: 'o' }],
                tls: { certificates: [{ cert: certs.certFile, key: certs.keyFile }], ...tls },
            },
        ],
        upstreams: [{ name: 'o', servers: [`127.0.0.1:${origin.port}`] }],
    };
}

describe('TLS on the HTTP on-ramps', () => {
    afterEach(cleanup);

    it('HTTPS reverse proxy: curl over TLS 1.3 with ALPN http/1.1, keep-alive, the session in the close line', async () => {
        const certs = makeTestCerts();
        const origin = await startHttpOrigin();
        await withTurnpike({ config: webConfig(origin, certs) }, async (tp) => {
            const ep = tp.endpoint('web');
            const url = `https://localhost:${ep.port}`;
            const r = await curl(['-v', '--cacert', certs.caFile, '--resolve', `localhost:${ep.port}:127.0.0.1`, `${url}/a`, `${url}/b`]);
            assert.equal(r.code, 0, r.err);
            assert.match(r.err, /SSL connection using TLSv1\.3/);
            assert.match(r.err, /ALPN: server accepted http\/1\.1/);
            assert.equal(origin.requests.length, 2);
            assert.equal(origin.requests[1]!.url, '/b');
            const close = await tp.waitForLog({ msg: 'close' });
            assert.equal(close.requests, 2, 'both requests on one TLS connection');
            assert.equal(close.tls_version, 'TLS1.3');
            assert.equal(close.alpn, 'http/1.1');
            assert.equal(close.sni, 'localhost');
            assert.equal(close.reason, 'client_closed');
        });
    });

    it('resumes a session from a ticket (gnutls-cli --resume), seen as resumed', async () => {
        const certs = makeTestCerts();
        const origin = await startHttpOrigin();
        await withTurnpike({ config: webConfig(origin, certs, { alpn: ['http/1.1'] }) }, async (tp) => {
            const r = await gnutlsCli(tp.endpoint('web').port, ['--x509cafile', certs.caFile, '--sni-hostname', 'localhost', '--verify-hostname', 'localhost', '--resume', '--alpn', 'http/1.1'], '', 1500);
            assert.match(r.out, /This is a resumed session/, r.out);
            const closes = tp.logsWithMsg('close');
            assert.ok(closes.some((l) => l.tls_resumed === true), 'one close line says resumed');
            assert.ok(closes.some((l) => l.tls_resumed === false), 'the first was a full handshake');
        });
    });

    it('HTTPS forward proxy: curl -x https:// with --proxy-cacert, absolute-form and CONNECT', async () => {
        const certs = makeTestCerts();
        const origin = await startHttpOrigin();
        const config = {
            runtime: { workers: 1, trace_hooks: true },
            endpoints: [
                {
                    name: 'proxy',
                    type: 'http_proxy',
                    listen: ['127.0.0.1:0'],
                    allow_destinations: LOOPBACK,
                    tls: { certificates: [{ cert: certs.certFile, key: certs.keyFile }] },
                },
            ],
        };
        await withTurnpike({ config }, async (tp) => {
            const proxy = `https://127.0.0.1:${tp.endpoint('proxy').port}`;
            const get = await curl(['-v', '-x', proxy, '--proxy-cacert', certs.caFile, `${origin.url('/via-tls-proxy')}`]);
            assert.equal(get.code, 0, get.err);
            assert.match(get.err, /Proxy certificate:|SSL connection using TLSv1\.3/);
            assert.equal(origin.requests.at(-1)!.url, '/via-tls-proxy');
            const tunnel = await curl(['-x', proxy, '--proxy-cacert', certs.caFile, '-p', origin.url('/through-connect')]);
            assert.equal(tunnel.code, 0, tunnel.err);
            assert.equal(origin.requests.at(-1)!.url, '/through-connect');
            const bad = await curl(['-x', proxy, origin.url('/untrusted')]);
            assert.notEqual(bad.code, 0, 'curl refuses the proxy without its CA');
            const closes = tp.logsWithMsg('close');
            assert.ok(closes.every((l) => l.reason !== 'done' || l.tls_version === 'TLS1.3'));
        });
    });

    it('mTLS required: a client certificate from client_ca is accepted and shown, none or another CA is refused', async () => {
        const certs = makeTestCerts();
        const other = makeTestCerts();
        const client = issueCert(certs, { cn: 'alice', usage: 'client', emails: ['alice@example.test'], dnsNames: ['alice.example.test'] });
        const stranger = issueCert(other, { cn: 'mallory', usage: 'client' });
        const origin = await startHttpOrigin();
        const config = webConfig(origin, certs, { client_auth: 'required', client_ca: certs.caFile });
        await withTurnpike({ config, binary: lab() }, async (tp) => {
            const ep = tp.endpoint('web');
            const base = ['--cacert', certs.caFile, '--resolve', `localhost:${ep.port}:127.0.0.1`];
            const url = `https://localhost:${ep.port}/m`;
            const ok = await curl([...base, '--cert', client.certFile, '--key', client.keyFile, url]);
            assert.equal(ok.code, 0, ok.err);
            const info = await tp.waitForLog((l) => l.msg === 'app' && l.event === 'tls');
            assert.equal(info.peer, 1, 'an X.509 peer');
            assert.equal(info.peer_verified, true);
            assert.equal(info.peer_verify, 'ok');
            assert.match(String(info.peer_subject), /CN=alice/);
            assert.match(String(info.peer_issuer), /CN=turnpike test CA/);
            assert.match(String(info.peer_sans), /DNS:alice\.example\.test/);
            assert.match(String(info.peer_sans), /email:alice@example\.test/);
            assert.match(String(info.peer_serial), /^[0-9a-f]+$/);
            const der = Buffer.from(fs.readFileSync(client.certFile, 'utf8').replace(/-----[^-]+-----|\s/g, ''), 'base64');
            const { createHash } = await import('node:crypto');
            assert.equal(info.peer_sha256, createHash('sha256').update(der).digest('hex'));

            const none = await curl([...base, url]);
            assert.notEqual(none.code, 0, 'no certificate: refused');
            await tp.waitForLog({ msg: 'tls handshake failed', reason: 'client certificate required but none was sent' });
            const bad = await curl([...base, '--cert', stranger.certFile, '--key', stranger.keyFile, url]);
            assert.notEqual(bad.code, 0, 'a certificate of another CA: refused');
            const refused = await tp.waitForLog((l) => l.msg === 'tls handshake failed' && /client certificate refused/.test(String(l.reason)));
            assert.match(String(refused.reason), /issuer|signer|not trusted/i);
            assert.equal(origin.requests.length, 1, 'only the good client got through');
        });
    });

    it('mTLS optional: no certificate passes, an untrusted one passes unverified for the hooks to judge', async () => {
        const certs = makeTestCerts();
        const other = makeTestCerts();
        const stranger = issueCert(other, { cn: 'mallory', usage: 'client' });
        const origin = await startHttpOrigin();
        const config = webConfig(origin, certs, { client_auth: 'optional', client_ca: certs.caFile });
        await withTurnpike({ config, binary: lab() }, async (tp) => {
            const ep = tp.endpoint('web');
            const base = ['--cacert', certs.caFile, '--resolve', `localhost:${ep.port}:127.0.0.1`];
            const url = `https://localhost:${ep.port}/o`;
            assert.equal((await curl([...base, url])).code, 0);
            const first = await tp.waitForLog((l) => l.msg === 'app' && l.event === 'tls');
            assert.equal(first.peer, 0);
            assert.equal((await curl([...base, '--cert', stranger.certFile, '--key', stranger.keyFile, url])).code, 0);
            const second = await tp.waitForLog((l) => l.msg === 'app' && l.event === 'tls' && l.peer === 1);
            assert.equal(second.peer_verified, false);
            assert.match(String(second.peer_subject), /CN=mallory/);
            assert.notEqual(second.peer_verify, 'ok');
        });
    });

    it('raw public keys (RFC 7250): a listed client key is accepted, another is refused', async () => {
        const certs = makeTestCerts();
        const server = makeRawKey(certs.dir, 'server-rpk');
        const good = makeRawKey(certs.dir, 'client-good');
        const bad = makeRawKey(certs.dir, 'client-bad');
        const echo = await startTcpEcho();
        const config = {
            runtime: { workers: 1, trace_hooks: true },
            endpoints: [
                {
                    name: 'rpk',
                    type: 'tcp',
                    listen: ['127.0.0.1:0'],
                    upstream: echo.address,
                    allow_destinations: LOOPBACK,
                    tls: {
                        client_auth: 'required',
                        raw_public_key: { key: server.keyFile, public_key: server.pubFile, peers: [good.sha256] },
                    },
                },
            ],
        };
        const prio = 'NORMAL:-CTYPE-CLI-ALL:+CTYPE-CLI-RAWPK:+CTYPE-SRV-RAWPK';
        await withTurnpike({ config }, async (tp) => {
            const port = tp.endpoint('rpk').port;
            const ok = await gnutlsCli(port, ['--priority', prio, '--rawpkkeyfile', good.keyFile, '--rawpkfile', good.pubFile, '--insecure'], 'raw-hello\n', 800);
            assert.match(ok.out, /Certificate type: Raw Public Key/);
            assert.match(ok.out, /Handshake was completed/);
            assert.match(ok.out, /raw-hello/, 'the echo came back');
            const close = await tp.waitForLog({ msg: 'close', peer_cert: 'raw_public_key' });
            assert.equal(close.peer_sha256, good.sha256);
            assert.equal(close.peer_verified, true);
            const no = await gnutlsCli(port, ['--priority', prio, '--rawpkkeyfile', bad.keyFile, '--rawpkfile', bad.pubFile, '--insecure'], 'x\n', 800);
            assert.doesNotMatch(no.out, /x\n.*x/s);
            await tp.waitForLog({ msg: 'tls handshake failed', reason: 'client raw public key refused: not in raw_public_key.peers' });
        });
    });

    it('the SNI peek hook sees SNI and ALPN before the handshake and can block; the order is recorded', async () => {
        const certs = makeTestCerts({ dnsNames: ['localhost', 'blocked.test', 'ok.test'] });
        const origin = await startHttpOrigin();
        const config = {
            ...webConfig(origin, certs),
            app: { banner: 'tls' },
        };
        (config.endpoints[0] as Record<string, unknown>).app = { tls_block_sni: 'blocked.test' };
        await withTurnpike({ config, binary: lab() }, async (tp) => {
            const ep = tp.endpoint('web');
            const resolve = (h: string) => ['--resolve', `${h}:${ep.port}:127.0.0.1`];
            const ok = await curl(['--cacert', certs.caFile, ...resolve('ok.test'), `https://ok.test:${ep.port}/fine`]);
            assert.equal(ok.code, 0, ok.err);
            const hello = await tp.waitForLog((l) => l.msg === 'app' && l.event === 'client_hello' && l.sni === 'ok.test');
            assert.deepEqual(hello.alpn, ['h2', 'http/1.1'], 'curl offers both; the endpoint takes http/1.1');
            assert.equal(hello.max_version, 0x0304);
            const trace = (await tp.waitForLog((l) => l.msg === 'app' && l.event === 'close')) as { hooks?: string[] };
            assert.deepEqual(trace.hooks?.slice(0, 2), ['ingress.handle_tls_client_hello', 'ingress.handle_connection']);
            const blocked = await curl(['--cacert', certs.caFile, ...resolve('blocked.test'), `https://blocked.test:${ep.port}/no`]);
            assert.notEqual(blocked.code, 0);
            const close = await tp.waitForLog((l) => l.msg === 'close' && l.reason === 'blocked');
            const hooks = tp.logs.filter((l) => l.msg === 'hook' && l.conn === close.conn).map((l) => l.hook);
            assert.deepEqual(hooks, ['ingress.handle_tls_client_hello', 'ingress.handle_connection_close']);
            assert.equal(origin.requests.length, 1);
        });
    });

    it('reloads certificates on SIGHUP: new connections get the new one, an open one goes on', async () => {
        const certs = makeTestCerts();
        const first = issueCert(certs, { dnsNames: ['localhost'], cn: 'first' });
        const second = issueCert(certs, { dnsNames: ['localhost'], cn: 'second' });
        const certFile = path.join(certs.dir, 'live.pem');
        const keyFile = path.join(certs.dir, 'live.key');
        fs.copyFileSync(first.certFile, certFile);
        fs.copyFileSync(first.keyFile, keyFile);
        const echo = await startTcpEcho();
        const config = {
            runtime: { workers: 2, trace_hooks: true },
            endpoints: [
                { name: 'l4', type: 'tcp', listen: ['127.0.0.1:0'], upstream: echo.address, allow_destinations: LOOPBACK, tls: { certificates: [{ cert: certFile, key: keyFile }] } },
            ],
        };
        await withTurnpike({ config }, async (tp) => {
            const ep = tp.endpoint('l4');
            const old = await tlsConnect(ep, { ca: pem(certs.caFile), servername: 'localhost' });
            assert.equal(old.getPeerCertificate().subject.CN, 'first');
            fs.copyFileSync(second.certFile, certFile);
            fs.copyFileSync(second.keyFile, keyFile);
            tp.signal('SIGHUP');
            await tp.waitForLog({ msg: 'reload', tls_endpoints: 1, failed: 0 });
            await tp.waitForLog({ msg: 'tls reloaded', endpoint: 'l4', generation: 1 });
            // Every worker takes it at its wakeup; a few tries cover both.
            for (let i = 0; i < 4; i++) {
                const fresh = await tlsConnect(ep, { ca: pem(certs.caFile), servername: 'localhost' });
                assert.equal(fresh.getPeerCertificate().subject.CN, 'second');
                fresh.end();
            }
            const echoed = new Promise<string>((resolve) => old.once('data', (c: Buffer) => resolve(c.toString())));
            old.write('still here');
            assert.equal(await echoed, 'still here', 'the old connection still works with its old session');
            old.end();
            // A broken file keeps the old credentials.
            fs.writeFileSync(keyFile, 'not a key');
            tp.signal('SIGHUP');
            await tp.waitForLog({ msg: 'tls reload failed' });
            const after = await tlsConnect(ep, { ca: pem(certs.caFile), servername: 'localhost' });
            assert.equal(after.getPeerCertificate().subject.CN, 'second');
            after.end();
        });
    });
});
