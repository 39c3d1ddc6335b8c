/**
 * The QUIC runtime end to end, through examples/quic-echo (an app over QUIC that is not HTTP):
 * a certtool CA and certificate, the echo server on loopback, and its client checking every
 * echoed byte of parallel streams and every echoed datagram; over IPv4 and IPv6, with Retry, and
 * against a port nobody listens on (a clear error, no hang).
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { afterEach, describe, it } from 'node:test';

import { appBinary, cleanup, makeTestCerts, runProcess, startProcess, type TestCerts, type TestProcess } from '../src/index.js';

const ECHO = appBinary('quic-echo');
const MiB = 1024 * 1024;

async function startServer(certs: TestCerts, listen: string, extra: string[] = []): Promise<{ srv: TestProcess; port: number }> {
    const srv = startProcess(ECHO, ['server', '--listen', listen, '--cert', certs.certFile, '--key', certs.keyFile, ...extra]);
    const ready = await srv.waitForJson((l) => l.msg === 'ready', 20_000);
    return { srv, port: ready.port as number };
}

async function client(host: string, port: number, args: string[], timeoutMs = 120_000) {
    const r = await runProcess(ECHO, ['client', host, String(port), ...args], timeoutMs);
    const summary = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}');
    assert.equal(r.proc.sanitizerReport(), null, `client sanitizer report:\n${r.stderr}`);
    return { ...r, summary };
}

/** The server's counters after it exits (its last stats line). */
async function stopAndStats(srv: TestProcess): Promise<Record<string, number>> {
    await srv.stop();
    await srv.assertCleanExit();
    const last = srv.jsonLines().filter((l) => l.msg === 'stats').pop();
    assert.ok(last, `no stats line\n${srv.tail()}`);
    return last.stats as Record<string, number>;
}

/** A loopback UDP port nobody listens on (bound, then released). */
async function closedUdpPort(): Promise<number> {
    const s = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', () => resolve()));
    const port = s.address().port;
    await new Promise<void>((resolve) => s.close(() => resolve()));
    return port;
}

describe('QUIC echo (examples/quic-echo)', () => {
    afterEach(cleanup);

    it('echoes 8 streams x 4 MiB and datagrams intact over 127.0.0.1', { timeout: 180_000 }, async () => {
        const certs = makeTestCerts();
        const { srv, port } = await startServer(certs, '127.0.0.1:0', ['--retry', 'never']);
        const r = await client('127.0.0.1', port, ['--streams', '8', '--bytes', String(4 * MiB), '--datagrams', '20', '--ca', certs.caFile]);
        assert.equal(r.code, 0, JSON.stringify(r.summary));
        assert.equal(r.summary.ok, true);
        assert.equal(r.summary.bytes_echoed, 8 * 4 * MiB);
        assert.equal(r.summary.mismatched_streams, 0);
        assert.equal(r.summary.incomplete_streams, 0);
        assert.equal(r.summary.datagrams_sent, 20);
        assert.ok(r.summary.datagrams_echoed > 0, 'no datagram came back');
        assert.equal(r.summary.datagrams_bad, 0);
        const st = await stopAndStats(srv);
        assert.equal(st.retries_sent, 0);
        assert.equal(st.handshakes, 1);
        assert.equal(st.accepted_initials, 1);
        assert.equal(st.connections, 0);
        assert.ok(st.bytes_in >= 8 * 4 * MiB && st.bytes_out >= 8 * 4 * MiB);
        // PMTUD ran: loopback carries more than the 1200 bytes every path starts with, so the
        // server's packets average above that.
        assert.ok(st.bytes_out / st.packets_out > 1200, `average packet ${st.bytes_out / st.packets_out} bytes`);
    });

    it('works over ::1', { timeout: 120_000 }, async () => {
        const certs = makeTestCerts();
        const { srv, port } = await startServer(certs, '[::1]:0', ['--retry', 'never']);
        const r = await client('::1', port, ['--streams', '4', '--bytes', String(MiB), '--datagrams', '10', '--ca', certs.caFile]);
        assert.equal(r.code, 0, JSON.stringify(r.summary));
        assert.equal(r.summary.bytes_echoed, 4 * MiB);
        assert.equal(r.summary.mismatched_streams, 0);
        assert.ok(r.summary.datagrams_echoed > 0);
        const st = await stopAndStats(srv);
        assert.equal(st.handshakes, 1);
    });

    it('validates the client address with a Retry first, and the connection still succeeds', { timeout: 120_000 }, async () => {
        const certs = makeTestCerts();
        const { srv, port } = await startServer(certs, '127.0.0.1:0', ['--retry', 'always']);
        const r = await client('127.0.0.1', port, ['--streams', '2', '--bytes', String(MiB), '--datagrams', '5', '--ca', certs.caFile]);
        assert.equal(r.code, 0, JSON.stringify(r.summary));
        assert.equal(r.summary.bytes_echoed, 2 * MiB);
        // The stats line printed when the connection closed shows the Retry and one accepted Initial.
        const line = await srv.waitForJson((l) => l.msg === 'stats' && l.why === 'connection closed');
        const st = line.stats as Record<string, number>;
        assert.equal(st.retries_sent, 1);
        assert.equal(st.accepted_initials, 1);
        assert.equal(st.rejected_initials, 0);
        assert.equal(st.handshakes, 1);
        await stopAndStats(srv);
    });

    it('fails fast with a clear error when nobody listens on the port', { timeout: 30_000 }, async () => {
        const certs = makeTestCerts();
        const port = await closedUdpPort();
        const started = Date.now();
        const r = await client('127.0.0.1', port, ['--streams', '1', '--bytes', '10', '--ca', certs.caFile, '--timeout-ms', '20000'], 25_000);
        assert.equal(r.code, 1);
        assert.equal(r.summary.ok, false);
        assert.match(r.summary.error, /refused|unreachable/);
        assert.ok(Date.now() - started < 10_000, 'the client should not wait for a timeout');
    });

    it('reconnects on the same client endpoint after refusals, each one fast, without crashing', { timeout: 60_000 }, async () => {
        const certs = makeTestCerts();
        const port = await closedUdpPort();
        // Gap 0: the next connection starts inside on_close; 200 ms: from a timer, after the
        // socket reported the previous ICMP error (poll must still be running then).
        for (const gap of ['0', '200']) {
            const r = await client('127.0.0.1', port, ['--connects', '3', '--connect-gap-ms', gap, '--bytes', '10', '--ca', certs.caFile, '--timeout-ms', '20000'], 25_000);
            assert.equal(r.code, 1, r.stdout);
            assert.equal(r.summary.ok, false);
            const lines = r.stdout.trim().split('\n');
            const multi = JSON.parse(lines[lines.length - 2]);
            assert.equal(multi.attempts.length, 3, r.stdout);
            for (const a of multi.attempts) {
                assert.match(a.error, /refused|unreachable/, r.stdout);
                // Each ICMP error is read when it arrives, not when the first Initial is
                // retransmitted (the initial PTO is about 1 s).
                assert.ok(a.duration_ms < 800, `gap ${gap}: an attempt took ${a.duration_ms} ms\n${r.stdout}`);
            }
            assert.equal(multi.stats.close_unreachable, 3);
        }
    });

    it('refuses a server whose certificate the client does not trust', { timeout: 60_000 }, async () => {
        const certs = makeTestCerts();
        const otherCa = makeTestCerts();
        const { srv, port } = await startServer(certs, '127.0.0.1:0', ['--retry', 'never']);
        const r = await client('127.0.0.1', port, ['--ca', otherCa.caFile, '--timeout-ms', '20000'], 30_000);
        assert.equal(r.code, 1);
        assert.match(r.summary.error, /TLS alert/);
        const st = await stopAndStats(srv);
        assert.equal(st.handshakes, 0);
        assert.equal(st.failed_handshakes, 1);
    });
});
