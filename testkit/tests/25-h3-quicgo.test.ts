/**
 * HTTP/3 interop with quic-go, an independent QUIC and HTTP/3 stack in Go: a small client
 * (tests/interop/h3-quicgo, built offline in GOPATH mode from Debian's golang-1.23-go and
 * golang-github-lucas-clemente-quic-go-dev 0.46) against Turnpike's HTTP/3 server example
 * (examples/h3-files): GET on parallel streams of one connection with every byte checked, a
 * Retry on the way, plain CONNECT to a TCP echo and extended CONNECT (RFC 9220) to an echo, both
 * with HTTP datagrams (RFC 9297).
 */
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';

import { cleanup, makeTestCerts, runProcess, startTcpEcho } from '../src/index.js';
import { MiB, patternSha256, quicGoClient, startH3Files, stopH3Files } from './h3-helpers.js';

async function quicgo(bin: string, args: string[], timeoutMs = 180_000) {
    const r = await runProcess(bin, args, timeoutMs);
    const summary = JSON.parse(r.stdout.trim().split('\n').pop() || '{}');
    return { ...r, summary };
}

describe('HTTP/3 interop with quic-go (h3-quicgo against h3-files)', () => {
    afterEach(cleanup);

    it('GET on 16 parallel streams of one connection, every byte checked', { timeout: 900_000 }, async (t) => {
        const bin = quicGoClient(t);
        if (!bin) return;
        const certs = makeTestCerts();
        const { srv, port } = await startH3Files(certs);
        const size = 4 * MiB;
        const r = await quicgo(bin, ['--ca', certs.caFile, '-n', '16', `https://127.0.0.1:${port}/bytes/${size}`]);
        assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
        assert.equal(r.summary.ok, true);
        assert.equal(r.summary.alpn, 'h3');
        assert.equal(r.summary.quic_version, 'v1');
        assert.equal(r.summary.per_stream.length, 16);
        const want = patternSha256(size);
        for (const s of r.summary.per_stream) {
            assert.deepEqual(
                { status: s.status, bytes: s.bytes, cl: s.content_length, pattern: s.pattern_ok, sha: s.sha256 },
                { status: 200, bytes: size, cl: size, pattern: true, sha: want },
            );
        }
        const st = await stopH3Files(srv);
        assert.equal(st.requests, 16);
        assert.equal(st.responses_done, 16);
        const q = st.stats as Record<string, number>;
        assert.equal(q.handshakes, 1, 'one connection carried all streams');
        assert.equal(q.failed_handshakes, 0);
    });

    it('GET through a Retry (retry always): quic-go follows it', { timeout: 900_000 }, async (t) => {
        const bin = quicGoClient(t);
        if (!bin) return;
        const certs = makeTestCerts();
        const { srv, port } = await startH3Files(certs, ['--retry', 'always']);
        const size = 10 * MiB;
        const r = await quicgo(bin, ['--ca', certs.caFile, `https://127.0.0.1:${port}/bytes/${size}`]);
        assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
        assert.equal(r.summary.per_stream[0].sha256, patternSha256(size));
        const q = (await stopH3Files(srv)).stats as Record<string, number>;
        assert.equal(q.retries_sent, 1);
        assert.equal(q.accepted_initials, 1);
        assert.equal(q.rejected_initials, 0);
        assert.equal(q.handshakes, 1);
    });

    it('plain CONNECT to a TCP echo: 4 MiB through the tunnel and HTTP datagrams on its stream', { timeout: 900_000 }, async (t) => {
        const bin = quicGoClient(t);
        if (!bin) return;
        const certs = makeTestCerts();
        const { srv, port } = await startH3Files(certs);
        const echo = await startTcpEcho();
        const r = await quicgo(bin, [
            '--ca', certs.caFile, '--connect', `127.0.0.1:${echo.port}`, '--bytes', String(4 * MiB), '--datagrams', '20',
            `https://127.0.0.1:${port}/`,
        ]);
        assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
        assert.equal(r.summary.mode, 'connect');
        assert.equal(r.summary.status, 200);
        assert.equal(r.summary.echoed, 4 * MiB);
        assert.equal(r.summary.echo_ok, true);
        assert.equal(r.summary.datagrams_sent, 20);
        assert.ok(r.summary.datagrams_echoed > 0, 'no datagram came back');
        assert.equal(r.summary.datagrams_bad, 0);
        const st = await stopH3Files(srv);
        assert.equal(st.requests, 1);
    });

    it('extended CONNECT (RFC 9220, :protocol) to an echo, after the server announced it in SETTINGS', { timeout: 900_000 }, async (t) => {
        const bin = quicGoClient(t);
        if (!bin) return;
        const certs = makeTestCerts();
        const { srv, port } = await startH3Files(certs);
        const r = await quicgo(bin, [
            '--ca', certs.caFile, '--protocol', 'echo', '--path', '/echo', '--bytes', String(8 * MiB), '--datagrams', '20',
            `https://127.0.0.1:${port}/`,
        ]);
        assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
        assert.equal(r.summary.mode, 'extended-connect');
        assert.equal(r.summary.status, 200);
        assert.equal(r.summary.echoed, 8 * MiB);
        assert.equal(r.summary.echo_ok, true);
        assert.ok(r.summary.datagrams_echoed > 0, 'no datagram came back');
        assert.equal(r.summary.datagrams_bad, 0);
        // Another path is refused with 404 (the request reached the app, which said no).
        const bad = await quicgo(bin, ['--ca', certs.caFile, '--protocol', 'echo', '--path', '/nope', `https://127.0.0.1:${port}/`]);
        assert.equal(bad.code, 1);
        assert.equal(bad.summary.status, 404);
        const st = await stopH3Files(srv);
        assert.equal(st.requests, 2);
    });
});
