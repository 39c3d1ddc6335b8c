/**
 * A peer that breaks QUIC's limits on purpose (tools/quic-misbehave) against the real
 * examples/quic-echo server: the caps on what a peer can make Turnpike's QUIC runtime hold, shown
 * by a peer that goes past them. The tool completes a normal handshake, then appends hand-made
 * frames to its own 1-RTT packets: more NEW_CONNECTION_IDs than active_connection_id_limit,
 * CRYPTO data beyond the 64 KiB reorder limit (one frame far ahead, or many small ones), a
 * stream past initial_max_streams_bidi or initial_max_streams_uni, stream data past a stream's
 * flow-control window or past the connection's (spread over streams, each within its own), a
 * RETIRE_CONNECTION_ID of a sequence number the server never issued, and 2 000 000
 * PATH_CHALLENGEs. All but the flood must end the connection with their specific transport
 * error (and the flow-control ones are accepted when they end exactly at the window); the flood
 * must leave the connection working and the server's memory flat. After each, the server must
 * still serve a fresh, well-behaved client (quic-echo's own), and exit cleanly without a
 * sanitizer report.
 */
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';

import {
    appBinary,
    cleanup,
    makeTestCerts,
    peakRssKiB,
    resetPeakRss,
    runProcess,
    startProcess,
    toolBinary,
    type TestCerts,
    type TestProcess,
} from '../src/index.js';

const ECHO = appBinary('quic-echo');
const TOOL = toolBinary('quic-misbehave');

// RFC 9000 20.1 transport error codes.
const FLOW_CONTROL_ERROR = 0x03;
const STREAM_LIMIT_ERROR = 0x04;
const CONNECTION_ID_LIMIT_ERROR = 0x09;
const PROTOCOL_VIOLATION = 0x0a;
const CRYPTO_BUFFER_EXCEEDED = 0x0d;

interface Summary {
    mode: string;
    handshake: boolean;
    limit: number;
    stream_id: number;
    packets_injected: number;
    packets_acked: number;
    packets_lost: number;
    frames_injected: number;
    frames_acked: number;
    crypto_end_acked: number;
    data_end: number;
    streams_used: number;
    retire_seq: number;
    injection_done: boolean;
    closed_by_peer: boolean;
    error_type?: string;
    error_code?: number;
    echo_ok: boolean;
    echo_bytes: number;
    error: string;
}

async function startServer(certs: TestCerts): Promise<{ srv: TestProcess; port: number }> {
    // Under ASan freed memory waits in a quarantine (256 MiB by default) before reuse, so RSS
    // would show the allocation churn, not what the server holds: keep the quarantine small.
    const asan = [process.env.ASAN_OPTIONS, 'quarantine_size_mb=1', 'thread_local_quarantine_size_kb=64'].filter(Boolean).join(':');
    // Retry always (the default): the tool's client goes through a Retry first, as real ones do.
    const srv = startProcess(ECHO, ['server', '--listen', '127.0.0.1:0', '--cert', certs.certFile, '--key', certs.keyFile], { ASAN_OPTIONS: asan });
    const ready = await srv.waitForJson((l) => l.msg === 'ready', 20_000);
    return { srv, port: ready.port as number };
}

async function misbehave(certs: TestCerts, port: number, mode: string, extra: string[] = []): Promise<Summary> {
    const r = await runProcess(TOOL, ['127.0.0.1', String(port), '--abuse', mode, '--ca', certs.caFile, '--timeout-ms', '60000', ...extra], 90_000);
    assert.equal(r.proc.sanitizerReport(), null, `quic-misbehave sanitizer report:\n${r.stderr}`);
    const summary = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as Summary;
    assert.equal(r.code, 0, `quic-misbehave --abuse ${mode} did not run as designed: ${r.stdout}\n${r.stderr}`);
    assert.equal(summary.mode, mode);
    assert.equal(summary.handshake, true, r.stdout);
    return summary;
}

/** A fresh connection from quic-echo's own client (Turnpike's runtime): streams and datagrams echoed intact. */
async function wellBehavedClient(certs: TestCerts, port: number): Promise<void> {
    const r = await runProcess(ECHO, ['client', '127.0.0.1', String(port), '--streams', '4', '--bytes', '256K', '--datagrams', '10', '--ca', certs.caFile, '--timeout-ms', '30000'], 60_000);
    assert.equal(r.proc.sanitizerReport(), null, `client sanitizer report:\n${r.stderr}`);
    const s = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}');
    assert.equal(r.code, 0, `a well-behaved client failed after the abuse: ${r.stdout}`);
    assert.equal(s.bytes_echoed, 4 * 256 * 1024);
    assert.equal(s.mismatched_streams, 0);
}

/** The server ended the abusive connection with transport error `code`, before the echo. */
function assertClosedWith(s: Summary, code: number): void {
    assert.equal(s.closed_by_peer, true, JSON.stringify(s));
    assert.equal(s.error_type, 'transport');
    assert.equal(s.error_code, code, JSON.stringify(s));
    assert.equal(s.echo_ok, false, 'the connection should have ended before the echo');
}

/** Stops the server; it must exit cleanly (no sanitizer report); returns its last counters. */
async function stopAndStats(srv: TestProcess): Promise<Record<string, number>> {
    assert.equal(srv.sanitizerReport(), null, `server sanitizer report:\n${srv.sanitizerReport()}`);
    await srv.stop();
    await srv.assertCleanExit();
    const last = srv.jsonLines().filter((l) => l.msg === 'stats').pop();
    assert.ok(last, `no stats line\n${srv.tail()}`);
    return last.stats as Record<string, number>;
}

describe('QUIC peer that breaks the limits on purpose (quic-misbehave against quic-echo)', () => {
    afterEach(cleanup);

    it('control: the same tool without abuse is not closed, and its echo comes back', { timeout: 120_000 }, async () => {
        const certs = makeTestCerts();
        const { srv, port } = await startServer(certs);
        const s = await misbehave(certs, port, 'none');
        assert.equal(s.packets_injected, 0);
        assert.equal(s.closed_by_peer, false, JSON.stringify(s));
        assert.equal(s.echo_ok, true, JSON.stringify(s));
        assert.equal(s.echo_bytes, 4096);
        const st = await stopAndStats(srv);
        assert.equal(st.close_transport_error, 0);
        assert.equal(st.handshakes, 1);
    });

    it('more NEW_CONNECTION_IDs than active_connection_id_limit: CONNECTION_ID_LIMIT_ERROR, the server serves on', { timeout: 120_000 }, async () => {
        const certs = makeTestCerts();
        const { srv, port } = await startServer(certs);
        const s = await misbehave(certs, port, 'cids', ['--count', '8']);
        assert.equal(s.limit, 4, 'the server announces active_connection_id_limit 4 (the runtime default)');
        assert.equal(s.frames_injected, 8);
        assertClosedWith(s, CONNECTION_ID_LIMIT_ERROR);
        await wellBehavedClient(certs, port);
        const st = await stopAndStats(srv);
        assert.equal(st.close_transport_error, 1);
        assert.equal(st.handshakes, 2);
    });

    it('a 1-RTT CRYPTO frame 1 MiB ahead: CRYPTO_BUFFER_EXCEEDED, the server serves on', { timeout: 120_000 }, async () => {
        const certs = makeTestCerts();
        const { srv, port } = await startServer(certs);
        const s = await misbehave(certs, port, 'crypto', ['--offset', String(1 << 20)]);
        assert.equal(s.frames_injected, 1);
        assertClosedWith(s, CRYPTO_BUFFER_EXCEEDED);
        await wellBehavedClient(certs, port);
        const st = await stopAndStats(srv);
        assert.equal(st.close_transport_error, 1);
    });

    it('many 1 KiB CRYPTO frames behind a gap: held up to 64 KiB ahead, the next one is CRYPTO_BUFFER_EXCEEDED', { timeout: 120_000 }, async () => {
        const certs = makeTestCerts();
        const { srv, port } = await startServer(certs);
        // Frames at offsets 1024, 2048, ... (offset 0 never comes), one packet at a time: every
        // acknowledged frame is data the server accepted to hold.
        const s = await misbehave(certs, port, 'crypto-small', ['--count', '128']);
        assert.equal(s.closed_by_peer, true, JSON.stringify(s));
        assert.equal(s.error_code, CRYPTO_BUFFER_EXCEEDED, JSON.stringify(s));
        // The server held data up to 64 KiB ahead of what it had read, and not beyond: the
        // frame that crossed the limit was refused, and the connection ended there.
        assert.ok(s.crypto_end_acked <= 64 * 1024, `the server accepted CRYPTO data up to ${s.crypto_end_acked}`);
        assert.ok(s.crypto_end_acked >= 60 * 1024, `the server refused CRYPTO data already at ${s.crypto_end_acked}`);
        assert.ok((s.frames_injected + 1) * 1024 > 64 * 1024, `only ${s.frames_injected} frames sent`);
        assert.ok(s.frames_injected < 128, 'the connection should have ended before all 128 frames');
        assert.equal(s.echo_ok, false);
        await wellBehavedClient(certs, port);
        const st = await stopAndStats(srv);
        assert.equal(st.close_transport_error, 1);
    });

    it('a STREAM frame past initial_max_streams_bidi: STREAM_LIMIT_ERROR, the server serves on', { timeout: 120_000 }, async () => {
        const certs = makeTestCerts();
        const { srv, port } = await startServer(certs);
        const s = await misbehave(certs, port, 'streams');
        assert.equal(s.limit, 100, 'the server announces initial_max_streams_bidi 100 (the runtime default)');
        assert.equal(s.stream_id, 4 * 100, 'client bidi stream 4 x limit is the first one past it');
        assertClosedWith(s, STREAM_LIMIT_ERROR);
        await wellBehavedClient(certs, port);
        const st = await stopAndStats(srv);
        assert.equal(st.close_transport_error, 1);
    });

    it('a STREAM frame opening client uni stream 402, past initial_max_streams_uni 100: STREAM_LIMIT_ERROR, the server serves on', { timeout: 120_000 }, async () => {
        const certs = makeTestCerts();
        const { srv, port } = await startServer(certs);
        const s = await misbehave(certs, port, 'streams-uni');
        // quic-echo keeps the runtime's default for peer-opened uni streams (it never uses one).
        assert.equal(s.limit, 100, 'the server announces initial_max_streams_uni 100 (the runtime default)');
        assert.equal(s.stream_id, 4 * 100 + 2, 'client uni stream 4 x limit + 2 is the first one past it');
        assert.equal(s.frames_injected, 1);
        assertClosedWith(s, STREAM_LIMIT_ERROR);
        await wellBehavedClient(certs, port);
        const st = await stopAndStats(srv);
        assert.equal(st.close_transport_error, 1);
        assert.equal(st.handshakes, 2);
    });

    it('stream data one byte past initial_max_stream_data_bidi_remote: FLOW_CONTROL_ERROR (exactly up to it is held), the server serves on', { timeout: 120_000 }, async () => {
        const certs = makeTestCerts();
        const { srv, port } = await startServer(certs);
        // The control: 5 bytes ending exactly at the stream window, the bytes before them never
        // sent: the server holds them, acknowledges the packet, and the echo on stream 0 works.
        const ok = await misbehave(certs, port, 'flow-stream', ['--excess', '0']);
        assert.equal(ok.limit, 1_000_000, 'the server announces initial_max_stream_data_bidi_remote 1 MB (the runtime default)');
        assert.equal(ok.stream_id, 4 * 99, 'the last client bidi stream of the announced 100 (stream 0 is the echo\'s)');
        assert.equal(ok.data_end, 1_000_000);
        assert.equal(ok.closed_by_peer, false, JSON.stringify(ok));
        assert.equal(ok.frames_acked, 1, `the server did not accept data up to its window: ${JSON.stringify(ok)}`);
        assert.equal(ok.echo_ok, true, JSON.stringify(ok));
        // One byte more: offset 999 996, 5 bytes.
        const s = await misbehave(certs, port, 'flow-stream');
        assert.equal(s.limit, 1_000_000);
        assert.equal(s.data_end, 1_000_001);
        assert.equal(s.closed_by_peer, true, JSON.stringify(s));
        assert.equal(s.error_type, 'transport');
        assert.equal(s.error_code, FLOW_CONTROL_ERROR, JSON.stringify(s));
        assert.equal(s.frames_acked, 0, 'the packet that broke the window must not be acknowledged');
        assert.equal(s.echo_ok, false);
        await wellBehavedClient(certs, port);
        const st = await stopAndStats(srv);
        assert.equal(st.close_transport_error, 1);
        assert.equal(st.close_no_error, 1, 'the control closes with NO_ERROR (quic-echo\'s client with an application close)');
        assert.equal(st.handshakes, 3);
    });

    it('stream data one byte past initial_max_data, spread over streams each within its window: FLOW_CONTROL_ERROR (exactly up to it is held), the server serves on', { timeout: 120_000 }, async () => {
        const certs = makeTestCerts();
        const { srv, port } = await startServer(certs);
        // One byte at the end of each of several streams (the bytes before never sent): the
        // connection counts each stream's highest offset. The control fills the connection
        // window exactly, so it cannot echo (its echo would break the window): --no-echo, it
        // waits for the server's ACKs instead.
        const ok = await misbehave(certs, port, 'flow-conn', ['--excess', '0', '--no-echo']);
        assert.equal(ok.limit, 10_000_000, 'the server announces initial_max_data 10 MB (the runtime default)');
        assert.equal(ok.data_end, 10_000_000);
        assert.equal(ok.streams_used, 10, '10 streams of 1 MB each');
        assert.equal(ok.closed_by_peer, false, JSON.stringify(ok));
        assert.equal(ok.frames_acked, 10, `the server did not accept data up to its window: ${JSON.stringify(ok)}`);
        const s = await misbehave(certs, port, 'flow-conn');
        assert.equal(s.limit, 10_000_000);
        assert.equal(s.data_end, 10_000_001);
        assert.equal(s.streams_used, 11);
        // No stream past its own window (1 MB): only the connection's is broken.
        assert.ok(Math.ceil(s.data_end / s.streams_used) <= 1_000_000, JSON.stringify(s));
        assert.equal(s.frames_injected, 11);
        assertClosedWith(s, FLOW_CONTROL_ERROR);
        await wellBehavedClient(certs, port);
        const st = await stopAndStats(srv);
        assert.equal(st.close_transport_error, 1);
        assert.equal(st.close_no_error, 1, 'the control closes with NO_ERROR (quic-echo\'s client with an application close)');
        assert.equal(st.handshakes, 3);
    });

    it('RETIRE_CONNECTION_ID of a sequence number the server never issued: PROTOCOL_VIOLATION, the server serves on', { timeout: 120_000 }, async () => {
        const certs = makeTestCerts();
        const { srv, port } = await startServer(certs);
        const s = await misbehave(certs, port, 'retire-cid');
        // The tool announces active_connection_id_limit 2 (ngtcp2's default) and retires none,
        // so the server can have issued sequence numbers 0 and 1 only (RFC 9000 5.1.1).
        assert.equal(s.limit, 2, "the tool's own active_connection_id_limit");
        assert.equal(s.retire_seq, 2);
        assert.equal(s.frames_injected, 1);
        assertClosedWith(s, PROTOCOL_VIOLATION);
        await wellBehavedClient(certs, port);
        const st = await stopAndStats(srv);
        assert.equal(st.close_transport_error, 1);
        assert.equal(st.handshakes, 2);
    });

    it('2 000 000 PATH_CHALLENGEs: the connection survives, its echo works after, the server memory stays flat', { timeout: 300_000 }, async () => {
        const certs = makeTestCerts();
        const { srv, port } = await startServer(certs);
        // A first connection makes the allocations every connection needs (TLS, buffers).
        const warm = await misbehave(certs, port, 'none');
        assert.equal(warm.echo_ok, true);
        const base = resetPeakRss(srv.pid);
        const count = 2_000_000;
        const s = await misbehave(certs, port, 'path-challenge', ['--count', String(count)]);
        const peak = peakRssKiB(srv.pid);
        assert.equal(s.frames_injected, count);
        // Acknowledged: the server decrypted the packet and processed each of its frames. On
        // loopback none is lost; 1% is left for a packet the client might count as lost.
        assert.ok(s.frames_acked >= count * 0.99, `the server acknowledged ${s.frames_acked} of ${count} challenges: ${JSON.stringify(s)}`);
        assert.equal(s.closed_by_peer, false, JSON.stringify(s));
        assert.equal(s.echo_ok, true, `no echo after the flood: ${JSON.stringify(s)}`);
        // Each challenge is 8 bytes: a queue that kept them all would hold 15 MiB of data alone.
        assert.ok(peak - base < 8 * 1024, `server RSS grew ${peak - base} KiB during the flood (base ${base} KiB)`);
        console.log(`# path-challenge flood: ${s.packets_injected} packets, server RSS base ${base} KiB, peak ${peak} KiB`);
        await wellBehavedClient(certs, port);
        const st = await stopAndStats(srv);
        assert.equal(st.close_transport_error, 0);
        assert.equal(st.handshakes, 3);
    });
});
