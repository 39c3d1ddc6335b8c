/**
 * QUIC session resumption, 0-RTT and key update, against real peers: ngtcp2's gtlsclient and
 * gtlsserver (Debian ngtcp2-client / ngtcp2-server), Turnpike's client tool (tools/turnpike-h3
 * --session-file) and server example (examples/h3-files, 0-RTT with --early-data). Every download
 * is checked byte for byte; "accepted" is read from both ends (the client's report and the
 * server's counters).
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import dgram from 'node:dgram';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, it } from 'node:test';

import {
    cleanup,
    makeTestCerts,
    runProcess,
    sleep,
    startHttpOrigin,
    toolBinary,
    withTurnpike,
    track,
    type TestCerts,
    type TestProcess,
} from '../src/index.js';
import { fileSha256, freeUdpPort, MiB, needBinary, patternSha256, startGtlsServer, startH3Files, stopH3Files, tempDir } from './h3-helpers.js';

const TOOL = toolBinary('turnpike-h3');

/** h3-files, with 0-RTT on or off. */
function startServer(certs: TestCerts, earlyData: boolean): Promise<{ srv: TestProcess; port: number }> {
    return startH3Files(certs, earlyData ? ['--early-data'] : []);
}

type Stats = Record<string, unknown> & { stats: Record<string, number> };

/** Stops the server, checks a clean exit, and returns its last stats line. */
async function stopServer(srv: TestProcess): Promise<Stats> {
    return (await stopH3Files(srv)) as Stats;
}

async function tool(args: string[], timeoutMs = 120_000) {
    const r = await runProcess(TOOL, args, timeoutMs);
    assert.equal(r.proc.sanitizerReport(), null, `turnpike-h3 sanitizer report:\n${r.stderr}`);
    const summary = JSON.parse(r.stdout.trim().split('\n').pop() || '{}');
    return { ...r, summary };
}

/** gtlsclient, not quiet (its packet log shows which frames went as 0-RTT), one download. */
async function gtlsGet(gtlsclient: string, port: number, size: number, dir: string, extra: string[]) {
    const r = await runProcess(
        gtlsclient,
        ['--no-quic-dump', '--no-http-dump', '--exit-on-all-streams-close', '--download', dir, ...extra,
            '127.0.0.1', String(port), `https://127.0.0.1:${port}/bytes/${size}`],
        120_000,
    );
    assert.equal(r.code, 0, `gtlsclient failed\n${r.stderr.slice(-2000)}\n${r.stdout.slice(-2000)}`);
    const file = path.join(dir, String(size));
    assert.ok(fs.existsSync(file), `gtlsclient wrote no file; ${fs.readdirSync(dir).join(', ')}`);
    assert.equal(fs.statSync(file).size, size);
    assert.equal(fileSha256(file), patternSha256(size), 'the downloaded bytes differ from the pattern');
    fs.rmSync(file);
    const out = `${r.stdout}\n${r.stderr}`;
    return {
        out,
        // The request (client bidi stream 0) inside a 0-RTT packet.
        requestIn0rtt: /0RTT STREAM\(0x0[8-f]\) id=0x0 /.test(out),
        any0rtt: / type=0RTT /.test(out),
        rejected: out.includes('Early data was rejected by server'),
    };
}

/** A UDP relay for one client that keeps a copy of every datagram the client sent. */
async function startRecordingRelay(serverPort: number) {
    const front = dgram.createSocket('udp4');
    const back = dgram.createSocket('udp4');
    const fromClient: Buffer[] = [];
    let client: { address: string; port: number } | null = null;
    front.on('message', (msg, rinfo) => {
        client = { address: rinfo.address, port: rinfo.port };
        fromClient.push(Buffer.from(msg));
        back.send(msg, serverPort, '127.0.0.1');
    });
    back.on('message', (msg) => {
        if (client) front.send(msg, client.port, client.address);
    });
    await new Promise<void>((resolve) => front.bind(0, '127.0.0.1', () => resolve()));
    await new Promise<void>((resolve) => back.bind(0, '127.0.0.1', () => resolve()));
    const close = () => {
        front.close();
        back.close();
    };
    track('udp relay', close, close);
    return { port: front.address().port, fromClient };
}

describe('QUIC resumption, 0-RTT and key update', () => {
    afterEach(cleanup);

    it('gtlsclient resumes against h3-files --early-data and its request goes as accepted 0-RTT', { timeout: 300_000 }, async (t) => {
        const gtlsclient = needBinary(t, 'gtlsclient', 'ngtcp2-client');
        if (!gtlsclient) return;
        const certs = makeTestCerts();
        const { srv, port } = await startServer(certs, true);
        const dir = tempDir('tp-0rtt-');
        const state = ['--session-file', path.join(dir, 'session.pem'), '--tp-file', path.join(dir, 'tp.pem')];
        const first = await gtlsGet(gtlsclient, port, 300_000, dir, state);
        assert.equal(first.any0rtt, false, 'a first connection has no ticket: no 0-RTT');
        assert.ok(fs.existsSync(path.join(dir, 'session.pem')), 'gtlsclient saved no session ticket');
        const second = await gtlsGet(gtlsclient, port, 300_000, dir, state);
        assert.equal(second.requestIn0rtt, true, `the request did not go as 0-RTT\n${second.out.slice(-3000)}`);
        assert.equal(second.rejected, false, 'the server rejected the early data');
        const st = await stopServer(srv);
        assert.equal(st.requests, 2);
        assert.equal(st.responses_done, 2);
        assert.equal(st.early_requests, 1, 'h3-files saw no request arrive in 0-RTT');
        assert.equal(st.stats.handshakes, 2);
        assert.equal(st.stats.resumed_handshakes, 1);
        assert.equal(st.stats.early_data_accepted, 1);
        assert.equal(st.stats.key_updates, 0);
    });

    it('without --early-data the second gtlsclient connection resumes, its 0-RTT is rejected, and it still succeeds', { timeout: 300_000 }, async (t) => {
        const gtlsclient = needBinary(t, 'gtlsclient', 'ngtcp2-client');
        if (!gtlsclient) return;
        const certs = makeTestCerts();
        const { srv, port } = await startServer(certs, false);
        const dir = tempDir('tp-0rtt-off-');
        const state = ['--session-file', path.join(dir, 'session.pem'), '--tp-file', path.join(dir, 'tp.pem')];
        await gtlsGet(gtlsclient, port, 300_000, dir, state);
        const second = await gtlsGet(gtlsclient, port, 300_000, dir, state);
        // gtlsclient offers 0-RTT with any ticket; the server must refuse it.
        assert.equal(second.rejected, true, `gtlsclient did not report the rejection\n${second.out.slice(-3000)}`);
        const st = await stopServer(srv);
        assert.equal(st.requests, 2);
        assert.equal(st.responses_done, 2);
        assert.equal(st.early_requests, 0);
        assert.equal(st.stats.resumed_handshakes, 1, 'tickets are issued even without 0-RTT');
        assert.equal(st.stats.early_data_accepted, 0);
    });

    it('turnpike-h3 --session-file: resumed, requests in accepted 0-RTT; an unsafe 0-RTT request gets 425', { timeout: 300_000 }, async () => {
        const certs = makeTestCerts();
        const { srv, port } = await startServer(certs, true);
        const dir = tempDir('tp-0rtt-tool-');
        const sess = path.join(dir, 'session.bin');
        const url = `https://127.0.0.1:${port}/bytes/500000`;
        const base = ['--ca', certs.caFile, '--verify-pattern', '--session-file', sess];
        const r1 = await tool(['get', url, '-n', '2', ...base]);
        assert.equal(r1.code, 0, JSON.stringify(r1.summary));
        assert.equal(r1.summary.resumed, false);
        assert.equal(r1.summary.early_data, 'none');
        assert.equal(r1.summary.session_saved, true);
        assert.ok(fs.statSync(sess).size > 0);
        assert.equal(fs.statSync(sess).mode & 0o077, 0, 'the session file must be private');
        const r2 = await tool(['get', url, '-n', '2', ...base]);
        assert.equal(r2.code, 0, JSON.stringify(r2.summary));
        assert.equal(r2.summary.resumed, true);
        assert.equal(r2.summary.early_data, 'accepted');
        assert.equal(r2.summary.early_requests, 2);
        for (const s of r2.summary.per_stream) {
            assert.equal(s.status, 200);
            assert.equal(s.bytes, 500000);
            assert.equal(s.pattern_ok, true);
            assert.equal(s.sha256, patternSha256(500000));
        }
        // --no-early-data: resumed, nothing sent early.
        const r3 = await tool(['get', url, ...base, '--no-early-data']);
        assert.equal(r3.code, 0, JSON.stringify(r3.summary));
        assert.equal(r3.summary.resumed, true);
        assert.equal(r3.summary.early_data, 'none');
        // A POST in 0-RTT is replayable: h3-files asks for it again after the handshake.
        const r4 = await tool(['get', `https://127.0.0.1:${port}/echo`, '-X', 'POST', '--body-bytes', '1000', ...base]);
        assert.equal(r4.summary.early_data, 'accepted');
        assert.equal(r4.summary.per_stream[0].status, 425);
        const st = await stopServer(srv);
        assert.equal(st.early_requests, 3);
        assert.equal(st.too_early, 1);
        assert.equal(st.stats.resumed_handshakes, 3);
        assert.equal(st.stats.early_data_accepted, 2);
    });

    it('turnpike-h3: a refused 0-RTT (ticket from another server, then a server without --early-data) is sent again and succeeds', { timeout: 300_000 }, async () => {
        const certs = makeTestCerts();
        const dir = tempDir('tp-0rtt-rej-');
        const sess = path.join(dir, 'session.bin');
        const base = ['--ca', certs.caFile, '--verify-pattern', '--session-file', sess, '-n', '3'];
        const a = await startServer(certs, true);
        const r1 = await tool(['get', `https://127.0.0.1:${a.port}/bytes/200000`, ...base]);
        assert.equal(r1.code, 0, JSON.stringify(r1.summary));
        await stopServer(a.srv);
        // Another process: another ticket key. The ticket is not readable, 0-RTT is ignored.
        const b = await startServer(certs, false);
        const url = `https://127.0.0.1:${b.port}/bytes/200000`;
        const r2 = await tool(['get', url, ...base]);
        assert.equal(r2.code, 0, JSON.stringify(r2.summary));
        assert.equal(r2.summary.resumed, false);
        assert.equal(r2.summary.early_data, 'rejected');
        assert.equal(r2.summary.early_requests, 3, 'the requests were not made in 0-RTT first');
        for (const s of r2.summary.per_stream) assert.equal(s.sha256, patternSha256(200000));
        // Its own ticket: resumed, and its 0-RTT refused.
        const r3 = await tool(['get', url, ...base]);
        assert.equal(r3.code, 0, JSON.stringify(r3.summary));
        assert.equal(r3.summary.resumed, true);
        assert.equal(r3.summary.early_data, 'rejected');
        for (const s of r3.summary.per_stream) assert.equal(s.sha256, patternSha256(200000));
        const st = await stopServer(b.srv);
        assert.equal(st.requests, 6, 'each request reached the server once');
        assert.equal(st.early_requests, 0);
        assert.equal(st.stats.resumed_handshakes, 1);
    });

    it('turnpike-h3 --session-file keeps the NEW_TOKEN token: later connections to a Retry-always server skip the Retry', { timeout: 300_000 }, async () => {
        const certs = makeTestCerts();
        const dir = tempDir('tp-newtoken-');
        const sess = path.join(dir, 'session.bin');
        const base = ['--ca', certs.caFile, '--verify-pattern', '--session-file', sess, '--no-early-data'];
        const a = await startH3Files(certs, ['--retry', 'always']);
        const url = `https://127.0.0.1:${a.port}/bytes/100000`;
        for (let i = 0; i < 3; i++) {
            const r = await tool(['get', url, ...base]);
            assert.equal(r.code, 0, JSON.stringify(r.summary));
            assert.equal(r.summary.per_stream[0].pattern_ok, true);
            assert.equal(r.summary.resumed, i > 0);
        }
        // The saved blob (format TPQ2) carries the token as its third part; an older TPQ1 blob
        // (session and transport parameters only) still resumes, and pays the Retry again.
        const blob = fs.readFileSync(sess);
        assert.equal(blob.subarray(0, 4).toString('latin1'), 'TPQ2');
        let off = 4;
        const parts: Buffer[] = [];
        for (let i = 0; i < 3; i++) {
            const n = blob.readUInt32BE(off);
            parts.push(blob.subarray(off + 4, off + 4 + n));
            off += 4 + n;
        }
        assert.equal(off, blob.length);
        assert.ok(parts[2].length > 0, 'no NEW_TOKEN token was saved');
        const v1 = path.join(dir, 'v1.bin');
        const len = (b: Buffer) => {
            const l = Buffer.alloc(4);
            l.writeUInt32BE(b.length);
            return l;
        };
        fs.writeFileSync(v1, Buffer.concat([Buffer.from('TPQ1', 'latin1'), len(parts[0]), parts[0], len(parts[1]), parts[1]]), { mode: 0o600 });
        const old = await tool(['get', url, '--ca', certs.caFile, '--verify-pattern', '--session-file', v1, '--no-early-data']);
        assert.equal(old.code, 0, JSON.stringify(old.summary));
        assert.equal(old.summary.resumed, true);
        const sa = await stopServer(a.srv);
        // Four connections; the first and the TPQ1 one (no token) were asked for a Retry, the two
        // that presented the token were not.
        assert.equal(sa.stats.handshakes, 4);
        assert.equal(sa.stats.retries_sent, 2);
        assert.equal(sa.stats.accepted_initials, 4);
        assert.equal(sa.stats.rejected_initials, 0);
        // Another server (another secret): the token does not verify, so that server asks for a
        // Retry as for any new client, and the connection is made all the same.
        const b = await startH3Files(certs, ['--retry', 'always']);
        const r = await tool(['get', `https://127.0.0.1:${b.port}/bytes/100000`, ...base]);
        assert.equal(r.code, 0, JSON.stringify(r.summary));
        assert.equal(r.summary.per_stream[0].pattern_ok, true);
        const sb = await stopServer(b.srv);
        assert.equal(sb.stats.retries_sent, 1);
        assert.equal(sb.stats.handshakes, 1);
    });

    it('turnpike-h3: a --session-file that is not a saved session is a clear error', { timeout: 60_000 }, async () => {
        const certs = makeTestCerts();
        const { srv, port } = await startServer(certs, true);
        const dir = tempDir('tp-0rtt-bad-');
        const url = `https://127.0.0.1:${port}/bytes/1000`;
        const cases: [string, Buffer][] = [
            ['garbage', crypto.randomBytes(300)],
            ['a truncated blob', Buffer.from('TPQ1\0\0\0\x05abc', 'latin1')],
        ];
        for (const [what, bytes] of cases) {
            const sess = path.join(dir, `${what.replace(/ /g, '-')}.bin`);
            fs.writeFileSync(sess, bytes);
            const r = await tool(['get', url, '--ca', certs.caFile, '--session-file', sess]);
            assert.equal(r.code, 1, what);
            assert.equal(r.summary.ok, false, what);
            assert.match(r.summary.error, /not a saved session/, what);
            assert.deepEqual(fs.readFileSync(sess), bytes, `${what}: the file was changed`);
        }
        const st = await stopServer(srv);
        assert.equal(st.stats.accepted_initials, 0, 'a connection was attempted');
    });

    it('turnpike-h3 --session-file against gtlsserver: resumed, 0-RTT accepted, bytes intact', { timeout: 300_000 }, async (t) => {
        const gtlsserver = needBinary(t, 'gtlsserver', 'ngtcp2-server');
        if (!gtlsserver) return;
        const certs = makeTestCerts();
        const { srv, port, sha256: want } = await startGtlsServer(gtlsserver, certs, 2 * MiB);
        const sess = path.join(tempDir('tp-0rtt-gs-'), 'session.bin');
        const args = ['get', `https://127.0.0.1:${port}/blob.bin`, '--ca', certs.caFile, '--session-file', sess];
        const r1 = await tool(args);
        assert.equal(r1.code, 0, JSON.stringify(r1.summary));
        assert.equal(r1.summary.resumed, false);
        assert.equal(r1.summary.per_stream[0].sha256, want);
        const r2 = await tool(args);
        assert.equal(r2.code, 0, JSON.stringify(r2.summary));
        assert.equal(r2.summary.resumed, true);
        assert.equal(r2.summary.early_data, 'accepted');
        assert.equal(r2.summary.early_requests, 1);
        assert.equal(r2.summary.per_stream[0].sha256, want);
        await srv.stop();
    });

    it('a replayed 0-RTT flight is not served again (anti-replay)', { timeout: 300_000 }, async () => {
        const certs = makeTestCerts();
        const { srv, port } = await startServer(certs, true);
        const dir = tempDir('tp-0rtt-replay-');
        const sess = path.join(dir, 'session.bin');
        const base = ['--ca', certs.caFile, '--verify-pattern', '--session-file', sess];
        const r1 = await tool(['get', `https://127.0.0.1:${port}/bytes/1000`, ...base]);
        assert.equal(r1.code, 0, JSON.stringify(r1.summary));
        const relay = await startRecordingRelay(port);
        const r2 = await tool(['get', `https://127.0.0.1:${relay.port}/bytes/1000`, ...base]);
        assert.equal(r2.code, 0, JSON.stringify(r2.summary));
        assert.equal(r2.summary.early_data, 'accepted');
        await srv.waitForJson((l) => l.msg === 'stats' && l.requests === 2, 10_000);
        // Let the server forget that connection (its closing period), or the replay would just
        // reach it. Then an attacker sends the client's datagrams again, from another port.
        await sleep(1500);
        const attacker = dgram.createSocket('udp4');
        track('attacker socket', () => attacker.close(), () => attacker.close());
        await new Promise<void>((resolve) => attacker.bind(0, '127.0.0.1', () => resolve()));
        for (const d of relay.fromClient) attacker.send(d, port, '127.0.0.1');
        await sleep(1500);
        const st = await stopServer(srv);
        assert.ok(st.stats.accepted_initials >= 3, `the replayed Initial did not reach the server: ${JSON.stringify(st.stats)} ${relay.fromClient.length} datagrams ${srv.tail(20)}`);
        assert.equal(st.requests, 2, 'the replayed 0-RTT request was served');
        assert.equal(st.early_requests, 1);
        assert.equal(st.stats.early_data_accepted, 1);
    });

    it('the proxy with quic.early_data: a GET in 0-RTT reaches the origin with Early-Data: 1, a POST gets 425', { timeout: 120_000 }, async () => {
        const certs = makeTestCerts();
        const o = await startHttpOrigin();
        const udp = await freeUdpPort();
        const cfg = {
            runtime: { workers: 1 },
            endpoints: [
                {
                    name: 'h3', type: 'http3', listen: [`127.0.0.1:${udp}`],
                    quic: { certificate: certs.certFile, private_key: certs.keyFile, early_data: true },
                    routes: [{ path_prefix: '/', upstream: 'o' }],
                },
            ],
            upstreams: [{ name: 'o', servers: [`127.0.0.1:${o.port}`] }],
        };
        await withTurnpike({ config: cfg }, async () => {
            const dir = tempDir('tp-0rtt-proxy-');
            const sess = path.join(dir, 'session.bin');
            const out = path.join(dir, 'body.json');
            const url = `https://127.0.0.1:${udp}/x`;
            const base = ['--ca', certs.caFile, '--session-file', sess];
            const r1 = await tool(['get', url, ...base, '-o', out]);
            assert.equal(r1.code, 0, JSON.stringify(r1.summary));
            assert.equal(r1.summary.early_data, 'none');
            assert.equal(JSON.parse(fs.readFileSync(out, 'utf8')).headers['early-data'], undefined);
            const r2 = await tool(['get', url, ...base, '-o', out]);
            assert.equal(r2.code, 0, JSON.stringify(r2.summary));
            assert.equal(r2.summary.resumed, true);
            assert.equal(r2.summary.early_data, 'accepted');
            assert.equal(r2.summary.early_requests, 1);
            assert.equal(JSON.parse(fs.readFileSync(out, 'utf8')).headers['early-data'], '1');
            const r3 = await tool(['get', url, '-X', 'POST', '--body-bytes', '100', ...base]);
            assert.equal(r3.summary.early_data, 'accepted');
            assert.equal(r3.summary.per_stream[0].status, 425);
        });
    });

    it('gtlsclient --key-update during a 50 MiB download from h3-files: intact, and the key update is seen', { timeout: 600_000 }, async (t) => {
        const gtlsclient = needBinary(t, 'gtlsclient', 'ngtcp2-client');
        if (!gtlsclient) return;
        const certs = makeTestCerts();
        const { srv, port } = await startServer(certs, false);
        const dir = tempDir('tp-keyupdate-');
        const size = 50 * MiB;
        const run = async (extra: string[]) => {
            const r = await runProcess(
                gtlsclient,
                ['-q', '--no-quic-dump', '--no-http-dump', '--exit-on-all-streams-close', '--download', dir, ...extra,
                    '127.0.0.1', String(port), `https://127.0.0.1:${port}/bytes/${size}`],
                540_000,
            );
            assert.equal(r.code, 0, `gtlsclient failed\n${r.stderr.slice(-2000)}`);
            const file = path.join(dir, String(size));
            assert.equal(fs.statSync(file).size, size);
            assert.equal(fileSha256(file), patternSha256(size), 'the downloaded bytes differ from the pattern');
            fs.rmSync(file);
        };
        await run([]);
        const closed = () => srv.jsonLines().filter((l) => l.msg === 'stats' && l.why === 'connection closed');
        await srv.waitForJson((l) => l.msg === 'stats' && l.why === 'connection closed', 10_000);
        const before = (closed().pop() as Stats).stats.key_updates;
        assert.equal(before, 0, 'a key update without --key-update');
        await run(['--key-update=50ms']);
        const st = await stopServer(srv);
        assert.equal(st.responses_done, 2);
        assert.ok(st.stats.key_updates >= 1, `no key update seen by h3-files: ${JSON.stringify(st.stats)}`);
    });
});
