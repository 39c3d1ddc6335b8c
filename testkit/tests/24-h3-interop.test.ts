/**
 * HTTP/3 interop: Turnpike's H3 driver against ngtcp2's own HTTP/3 client and server (Debian's
 * ngtcp2-client and ngtcp2-server from bookworm-backports: gtlsclient, gtlsserver), and
 * Turnpike's client tool (tools/turnpike-h3) against Turnpike's server example
 * (examples/h3-files), with certtool certificates. Every download is checked byte for byte.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, it } from 'node:test';

import {
    cleanup,
    makeTestCerts,
    patternBytes,
    runProcess,
    sleep,
    startTcpEcho,
    toolBinary,
    track,
} from '../src/index.js';
import { fileSha256, MiB, needBinary, patternSha256, startGtlsServer, startH3Files, stopH3Files, tempDir } from './h3-helpers.js';

const TOOL = toolBinary('turnpike-h3');

async function tool(args: string[], timeoutMs = 180_000) {
    const r = await runProcess(TOOL, args, timeoutMs);
    assert.equal(r.proc.sanitizerReport(), null, `turnpike-h3 sanitizer report:\n${r.stderr}`);
    const summary = JSON.parse(r.stdout.trim().split('\n').pop() || '{}');
    return { ...r, summary };
}

describe('HTTP/3 interop (ngtcp2 gtlsclient/gtlsserver, turnpike-h3, h3-files)', () => {
    afterEach(cleanup);

    it('gtlsclient downloads 100 MiB from h3-files intact', { timeout: 600_000 }, async (t) => {
        const gtlsclient = needBinary(t, 'gtlsclient', 'ngtcp2-client');
        if (!gtlsclient) return;
        const certs = makeTestCerts();
        const { srv, port } = await startH3Files(certs);
        const dir = tempDir('tp-h3-dl-');
        const size = 100 * MiB;
        const r = await runProcess(
            gtlsclient,
            ['-q', '--no-quic-dump', '--no-http-dump', '--exit-on-all-streams-close', '--download', dir,
                '127.0.0.1', String(port), `https://127.0.0.1:${port}/bytes/${size}`],
            540_000,
        );
        assert.equal(r.code, 0, `gtlsclient failed\n${r.stderr.slice(-2000)}`);
        const file = path.join(dir, String(size));
        assert.ok(fs.existsSync(file), `gtlsclient wrote no file; ${fs.readdirSync(dir).join(', ')}`);
        assert.equal(fs.statSync(file).size, size);
        assert.equal(fileSha256(file), patternSha256(size), 'the downloaded bytes differ from the pattern');
        const st = await stopH3Files(srv);
        assert.equal(st.requests, 1);
        assert.equal(st.responses_done, 1);
        assert.equal(st.bytes_out, size);
    });

    it('turnpike-h3 downloads 20 MiB from gtlsserver intact', { timeout: 300_000 }, async (t) => {
        const gtlsserver = needBinary(t, 'gtlsserver', 'ngtcp2-server');
        if (!gtlsserver) return;
        const certs = makeTestCerts();
        const { srv, port, sha256: want } = await startGtlsServer(gtlsserver, certs, 20 * MiB);
        const out = path.join(tempDir('tp-h3-out-'), 'blob.bin');
        const r = await tool(['get', `https://127.0.0.1:${port}/blob.bin`, '--ca', certs.caFile, '-o', out]);
        assert.equal(r.code, 0, JSON.stringify(r.summary));
        assert.equal(r.summary.ok, true);
        assert.equal(r.summary.per_stream[0].status, 200);
        assert.equal(r.summary.per_stream[0].bytes, 20 * MiB);
        assert.equal(r.summary.per_stream[0].sha256, want);
        assert.equal(fs.statSync(out).size, 20 * MiB);
        assert.equal(fileSha256(out), want);
        await srv.stop();
    });

    it('turnpike-h3 downloads with 8 parallel streams from h3-files, every byte checked', { timeout: 300_000 }, async () => {
        const certs = makeTestCerts();
        const { srv, port } = await startH3Files(certs);
        const size = 8 * MiB;
        const r = await tool(['get', `https://127.0.0.1:${port}/bytes/${size}`, '-n', '8', '--verify-pattern', '--ca', certs.caFile]);
        assert.equal(r.code, 0, JSON.stringify(r.summary));
        assert.equal(r.summary.ok, true);
        assert.equal(r.summary.streams, 8);
        assert.equal(r.summary.bytes, 8 * size);
        const want = patternSha256(size);
        for (const s of r.summary.per_stream) {
            assert.deepEqual(
                { status: s.status, bytes: s.bytes, cl: s.content_length, complete: s.complete, pattern: s.pattern_ok, sha: s.sha256 },
                { status: 200, bytes: size, cl: size, complete: true, pattern: true, sha: want },
            );
        }
        const st = await stopH3Files(srv);
        assert.equal(st.requests, 8);
        assert.equal(st.responses_done, 8);
        assert.equal((st.stats as Record<string, number>).handshakes, 1);
    });

    it('h3-files answers 404 for an unknown path and 400 for a bad size; the tool reports the failure', { timeout: 60_000 }, async () => {
        const certs = makeTestCerts();
        const { srv, port } = await startH3Files(certs);
        const r = await tool(['get', `https://127.0.0.1:${port}/nope`, '--ca', certs.caFile]);
        assert.equal(r.code, 1);
        assert.equal(r.summary.ok, false);
        assert.equal(r.summary.per_stream[0].status, 404);
        assert.equal(r.summary.per_stream[0].complete, true);
        const bad = await tool(['get', `https://127.0.0.1:${port}/bytes/12x`, '--ca', certs.caFile]);
        assert.equal(bad.summary.per_stream[0].status, 400);
        await stopH3Files(srv);
    });

    it('a request header section over max_field_section_size (64 KiB) gets 431; one under it is served', { timeout: 60_000 }, async () => {
        const certs = makeTestCerts();
        const { srv, port } = await startH3Files(certs);
        const over = await tool(['get', `https://127.0.0.1:${port}/bytes/10`, '--ca', certs.caFile, '-H', `x-big: ${'a'.repeat(70_000)}`]);
        assert.equal(over.code, 1);
        assert.equal(over.summary.per_stream[0].status, 431);
        assert.equal(over.summary.per_stream[0].complete, true);
        const under = await tool(['get', `https://127.0.0.1:${port}/bytes/10`, '--ca', certs.caFile, '-H', `x-big: ${'a'.repeat(60_000)}`]);
        assert.equal(under.code, 0, JSON.stringify(under.summary));
        assert.equal(under.summary.per_stream[0].status, 200);
        // A field the client may not send is refused before anything leaves.
        const bad = await tool(['get', `https://127.0.0.1:${port}/bytes/10`, '--ca', certs.caFile, '-H', 'connection: close']);
        assert.equal(bad.code, 1);
        assert.match(bad.summary.error, /request: invalid/);
        const st = await stopH3Files(srv);
        assert.equal(st.requests, 1, 'only the request under the limit reaches the app');
    });

    it('turnpike-h3 refuses a server whose certificate it does not trust', { timeout: 60_000 }, async () => {
        const certs = makeTestCerts();
        const other = makeTestCerts();
        const { srv, port } = await startH3Files(certs);
        const r = await tool(['get', `https://127.0.0.1:${port}/bytes/10`, '--ca', other.caFile, '--timeout-ms', '20000'], 30_000);
        assert.equal(r.code, 1);
        assert.match(r.summary.error, /TLS alert|closed/);
        await stopH3Files(srv);
    });

    it('turnpike-h3 connect tunnels stdin/stdout through CONNECT to a TCP echo via h3-files, with HTTP datagrams echoed', { timeout: 120_000 }, async () => {
        const certs = makeTestCerts();
        const { srv, port } = await startH3Files(certs);
        const echo = await startTcpEcho();
        const payload = patternBytes(3 * MiB);
        const child = spawn(TOOL, ['connect', `127.0.0.1:${port}`, `127.0.0.1:${echo.port}`, '--ca', certs.caFile, '--datagrams', '20'], {
            stdio: ['pipe', 'pipe', 'pipe'],
        });
        track(`turnpike-h3 connect pid ${child.pid}`, () => child.kill('SIGKILL'), () => child.kill('SIGKILL'));
        const out: Buffer[] = [];
        let stderr = '';
        child.stdout.on('data', (d: Buffer) => out.push(d));
        child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
        const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
        child.stdin.end(payload);
        const code = await Promise.race([exited, sleep(100_000).then(() => 'timeout' as const)]);
        assert.equal(code, 0, `turnpike-h3 connect: ${code}\n${stderr}`);
        assert.doesNotMatch(stderr, /AddressSanitizer|runtime error/);
        const got = Buffer.concat(out);
        assert.equal(got.length, payload.length);
        assert.ok(got.equals(payload), 'the echoed bytes differ');
        // HTTP datagrams on the tunnel's stream (Quarter Stream ID) came back from h3-files.
        const dg = JSON.parse(stderr.split('\n').find((l) => l.startsWith('{"datagrams_sent"')) ?? '{}');
        assert.equal(dg.datagrams_sent, 20, stderr);
        assert.ok(dg.datagrams_echoed > 0, `no datagram came back: ${stderr}`);
        assert.equal(dg.datagrams_bad, 0);
        await stopH3Files(srv);
    });

    it('rate mode keeps C x S requests in flight and reports req/s as JSON', { timeout: 60_000 }, async () => {
        const certs = makeTestCerts();
        const { srv, port } = await startH3Files(certs);
        const r = await tool(['get', `https://127.0.0.1:${port}/bytes/64`, '--rate', '2', '-c', '2', '-s', '4', '--ca', certs.caFile]);
        assert.equal(r.code, 0, JSON.stringify(r.summary));
        assert.equal(r.summary.connections, 2);
        assert.equal(r.summary.streams_per_connection, 4);
        assert.ok(r.summary.requests > 10, `only ${r.summary.requests} requests`);
        assert.equal(r.summary.failed, 0);
        assert.ok(r.summary.req_per_s > 0);
        const st = await stopH3Files(srv);
        assert.equal((st.stats as Record<string, number>).handshakes, 2);
    });
});

