/**
 * Edges of the QUIC runtime seen from outside, against examples/h3-files: stateless resets only
 * for short-header packets whose unknown DCID has our layout and our server id (never for a
 * foreign CID, never for a packet too short to hide a reset), ECN marks both ways on a real
 * transfer, the peer-opened stream limit holding concurrency while every request is served,
 * Version Negotiation for an unknown version (RFC 9000 6, RFC 8999), and the anti-amplification
 * limit (RFC 9000 8.1): before the client's address is validated the server sends at most three
 * times what it received, even when its first flight (a certificate with many names) is larger;
 * and the qlog and TLS key log options of both ends.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import dgram from 'node:dgram';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, it } from 'node:test';

import { cleanup, makeTestCerts, runProcess, sleep, toolBinary } from '../src/index.js';
import { MiB, startH3Files, stopH3Files, tempDir } from './h3-helpers.js';

const TOOL = toolBinary('turnpike-h3');

/** Sends `pkt` to the server and resolves with the first reply within `ms`, or null. */
async function probe(port: number, pkt: Buffer, ms = 500): Promise<Buffer | null> {
    const s = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', () => resolve()));
    try {
        return await new Promise<Buffer | null>((resolve) => {
            const timer = setTimeout(() => resolve(null), ms);
            s.once('message', (m) => {
                clearTimeout(timer);
                resolve(m);
            });
            s.send(pkt, port, '127.0.0.1');
        });
    } finally {
        s.close();
    }
}

/** A short-header packet: first byte 0x40 | random low bits, then `dcid`, then random bytes. */
function shortHeader(dcid: Buffer, total: number): Buffer {
    const rest = crypto.randomBytes(Math.max(0, total - 1 - dcid.length));
    return Buffer.concat([Buffer.from([0x40 | (crypto.randomBytes(1)[0] & 0x3f)]), dcid, rest]);
}

/** A CID with the runtime's layout (docs/quic.md): 0x0f, server id, worker, 12 random bytes. */
function ourCid(serverId: number, worker = 0): Buffer {
    return Buffer.concat([Buffer.from([0x0f, serverId >> 8, serverId & 0xff, worker]), crypto.randomBytes(12)]);
}

/** A long-header packet of `total` bytes: version, DCID and SCID as given, then padding. */
function longHeader(version: number, dcid: Buffer, scid: Buffer, total: number): Buffer {
    const head = Buffer.alloc(5);
    head[0] = 0xc0 | (crypto.randomBytes(1)[0] & 0x3f);
    head.writeUInt32BE(version >>> 0, 1);
    const ids = Buffer.concat([Buffer.from([dcid.length]), dcid, Buffer.from([scid.length]), scid]);
    return Buffer.concat([head, ids, Buffer.alloc(Math.max(0, total - head.length - ids.length))]);
}

/**
 * A UDP relay between a client and the server that lets through only the client's first
 * datagram until `open()` (then everything, both ways); it counts what the server sends while
 * closed, and does not pass that on (the client keeps retransmitting its Initial).
 */
async function startGate(serverPort: number) {
    const sock = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => sock.bind(0, '127.0.0.1', () => resolve()));
    const up = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => up.bind(0, '127.0.0.1', () => resolve()));
    const st = { open: false, firstBytes: 0, clientDatagrams: 0, serverBytesWhileClosed: 0, serverDatagramsWhileClosed: 0 };
    let client: { port: number; address: string } | null = null;
    sock.on('message', (m, rinfo) => {
        st.clientDatagrams++;
        client = { port: rinfo.port, address: rinfo.address };
        if (st.open) {
            up.send(m, serverPort, '127.0.0.1');
        } else if (st.firstBytes === 0) {
            st.firstBytes = m.length;
            up.send(m, serverPort, '127.0.0.1');
        }
    });
    up.on('message', (m) => {
        if (!st.open) {
            st.serverBytesWhileClosed += m.length;
            st.serverDatagramsWhileClosed++;
            return;
        }
        if (client) {
            sock.send(m, client.port, client.address);
        }
    });
    return {
        port: sock.address().port,
        stats: st,
        open: () => {
            st.open = true;
        },
        close: () => {
            sock.close();
            up.close();
        },
    };
}

describe('QUIC edges (stateless reset, ECN, stream limit, version negotiation, amplification) against h3-files', () => {
    afterEach(cleanup);

    it('a stateless reset answers an unknown CID of ours, one byte shorter; foreign or short packets get nothing', { timeout: 60_000 }, async () => {
        const certs = makeTestCerts();
        const { srv, port } = await startH3Files(certs);
        const ours = await probe(port, shortHeader(ourCid(0), 60));
        assert.ok(ours, 'no stateless reset for an unknown CID with our layout and server id');
        assert.equal(ours.length, 59, 'one byte shorter than the packet that caused it (no reset loops)');
        assert.equal(ours[0] & 0xc0, 0x40, 'it looks like a short-header packet');
        // Another server's CID (server id 1): that server may still own the connection.
        assert.equal(await probe(port, shortHeader(ourCid(1), 60)), null);
        // Not our layout at all.
        assert.equal(await probe(port, shortHeader(Buffer.concat([Buffer.from([0x55]), crypto.randomBytes(15)]), 60)), null);
        // Too short to be answered by a reset that is smaller still (RFC 9000 10.3).
        assert.equal(await probe(port, shortHeader(ourCid(0), 30)), null);
        const q = (await stopH3Files(srv)).stats as Record<string, number>;
        assert.equal(q.stateless_resets, 1);
        assert.equal(q.invalid_cid_packets, 4);
        assert.equal(q.connections, 0, 'no state for any of them');
    });

    it('ECN: both sides mark their packets ECT and keep marking (validated by the peer\'s ACKs)', { timeout: 120_000 }, async () => {
        const certs = makeTestCerts();
        const { srv, port } = await startH3Files(certs);
        const r = await runProcess(TOOL, ['get', `https://127.0.0.1:${port}/bytes/${20 * MiB}`, '--ca', certs.caFile], 60_000);
        assert.equal(r.code, 0, r.stdout);
        const q = (await stopH3Files(srv)).stats as Record<string, number>;
        // ngtcp2 stops marking after its validation packets unless the ACKs report the marks
        // back: thousands of marked packets mean our receive path reads TOS, hands it to
        // ngtcp2, and ngtcp2 echoes the counts in its ACKs, on both sides.
        assert.ok(q.ecn_packets_out > q.packets_out / 2, `server sent ${q.ecn_packets_out} of ${q.packets_out} packets with ECT`);
        assert.ok(q.ecn_packets_in > q.packets_in / 2, `server got ${q.ecn_packets_in} of ${q.packets_in} packets with ECT`);
    });

    it('the peer-opened stream limit (10) holds concurrency; 50 parallel requests are all served', { timeout: 120_000 }, async () => {
        const certs = makeTestCerts();
        const { srv, port } = await startH3Files(certs, ['--max-streams', '10']);
        const r = await runProcess(TOOL, ['get', `https://127.0.0.1:${port}/bytes/200000`, '-n', '50', '--verify-pattern', '--ca', certs.caFile], 60_000);
        const summary = JSON.parse(r.stdout.trim().split('\n').pop() || '{}');
        assert.equal(r.code, 0, r.stdout);
        assert.equal(summary.streams, 50);
        assert.ok(summary.per_stream.every((s: { pattern_ok: boolean; status: number }) => s.pattern_ok && s.status === 200));
        const st = await stopH3Files(srv);
        assert.equal(st.requests, 50);
        assert.ok((st.downloads_peak as number) <= 10, `${st.downloads_peak} requests at once over a limit of 10`);
        assert.ok((st.downloads_peak as number) >= 5, 'the client did use the streams it had');
    });
    it('an unknown version gets Version Negotiation listing v1 and v2; a short one gets nothing', { timeout: 60_000 }, async () => {
        const certs = makeTestCerts();
        const { srv, port } = await startH3Files(certs);
        const dcid = crypto.randomBytes(8);
        const scid = crypto.randomBytes(8);
        // 0x?a?a?a?a is reserved to exercise version negotiation (RFC 9000 15).
        const vn = await probe(port, longHeader(0x1a2a3a4a, dcid, scid, 1200));
        assert.ok(vn, 'no Version Negotiation for an unknown version');
        assert.equal(vn[0] & 0x80, 0x80, 'a long header');
        assert.equal(vn.readUInt32BE(1), 0, 'version 0 marks Version Negotiation');
        let at = 5;
        const dlen = vn[at++];
        assert.ok(vn.subarray(at, at + dlen).equals(scid), 'its DCID is the SCID we sent');
        at += dlen;
        const slen = vn[at++];
        assert.ok(vn.subarray(at, at + slen).equals(dcid), 'its SCID is the DCID we sent');
        at += slen;
        const versions: number[] = [];
        for (; at + 4 <= vn.length; at += 4) {
            versions.push(vn.readUInt32BE(at));
        }
        assert.ok(versions.includes(0x00000001), `QUIC v1 offered: ${versions.map((v) => v.toString(16))}`);
        assert.ok(versions.includes(0x6b3343cf), `QUIC v2 offered: ${versions.map((v) => v.toString(16))}`);
        assert.ok(!versions.includes(0x1a2a3a4a), 'not the version we asked for');
        // A datagram under 1200 bytes is dropped, not answered (RFC 9000 14.1): no amplification.
        assert.equal(await probe(port, longHeader(0x1a2a3a4a, crypto.randomBytes(8), crypto.randomBytes(8), 1100)), null);
        const q = (await stopH3Files(srv)).stats as Record<string, number>;
        assert.equal(q.version_negotiations, 1);
        assert.equal(q.connections, 0, 'no state for either');
    });

    it('before the address is validated the server sends at most 3x what it got; then the handshake completes', { timeout: 120_000 }, async () => {
        // Many names make the certificate, and so the server's first flight, larger than three
        // client Initials: without the limit the whole flight would go out at once.
        const names = Array.from({ length: 150 }, (_, i) => `host-${i}.amplification.turnpike.test`);
        const certs = makeTestCerts({ dnsNames: ['localhost', ...names] });
        const pem = fs.readFileSync(certs.certFile, 'utf8').replace(/-----[A-Z ]+-----|\s/g, '');
        const der = Buffer.from(pem, 'base64').length;
        assert.ok(der > 3 * 1200, `the certificate (${der} bytes) must exceed 3 x 1200`);
        const { srv, port } = await startH3Files(certs, ['--retry', 'never']);
        const gate = await startGate(port);
        try {
            const run = runProcess(TOOL, ['get', `https://127.0.0.1:${gate.port}/bytes/100000`, '--verify-pattern', '--ca', certs.caFile, '--sni', 'localhost', '--timeout-ms', '30000'], 60_000);
            // The server's Initial and Handshake packets, and its PTO probes, for 3 s.
            await sleep(3000);
            const st = { ...gate.stats };
            assert.ok(st.firstBytes >= 1200, `the client's first Initial is padded (${st.firstBytes})`);
            assert.ok(st.clientDatagrams > 1, 'the client retransmitted while it heard nothing');
            assert.ok(st.serverDatagramsWhileClosed >= 1, 'the server answered the Initial');
            assert.ok(st.serverBytesWhileClosed <= 3 * st.firstBytes, `${st.serverBytesWhileClosed} bytes sent for ${st.firstBytes} received`);
            gate.open();
            const r = await run;
            const summary = JSON.parse(r.stdout.trim().split('\n').pop() || '{}');
            assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
            assert.ok(summary.per_stream.every((s: { pattern_ok: boolean; status: number }) => s.pattern_ok && s.status === 200), r.stdout);
            console.log(`# amplification: ${st.serverBytesWhileClosed} bytes in ${st.serverDatagramsWhileClosed} datagrams for one ${st.firstBytes}-byte Initial; certificate ${der} bytes`);
        } finally {
            gate.close();
        }
        const q = (await stopH3Files(srv)).stats as Record<string, number>;
        assert.equal(q.handshakes, 1);
    });
    it('qlog and key log: one JSON-SEQ qlog per connection on each side, and the same TLS secrets logged by both', { timeout: 60_000 }, async () => {
        const certs = makeTestCerts();
        const dir = tempDir('tp-qlog-');
        const sq = path.join(dir, 'server-qlog');
        const cq = path.join(dir, 'client-qlog');
        fs.mkdirSync(sq);
        fs.mkdirSync(cq);
        const skl = path.join(dir, 'server.keys');
        const ckl = path.join(dir, 'client.keys');
        const { srv, port } = await startH3Files(certs, ['--qlog-dir', sq, '--keylog', skl]);
        const r = await runProcess(TOOL, ['get', `https://127.0.0.1:${port}/bytes/300000`, '--verify-pattern', '--ca', certs.caFile, '--qlog-dir', cq, '--keylog', ckl], 60_000);
        assert.equal(r.code, 0, r.stdout);
        await stopH3Files(srv);
        for (const [side, d] of [['server', sq], ['client', cq]]) {
            const files = fs.readdirSync(d);
            assert.equal(files.length, 1, `${side}: one qlog for one connection: ${files}`);
            const text = fs.readFileSync(path.join(d, files[0]), 'utf8');
            // JSON text sequences (RFC 7464): each record starts with RS (0x1e).
            const records = text.split('\x1e').filter((x) => x.trim()).map((x) => JSON.parse(x));
            assert.ok(records.length > 20, `${side}: ${records.length} qlog records`);
            assert.match(JSON.stringify(records[0]), /JSON-SEQ/, `${side}: the qlog header`);
            const names = new Set(records.map((e) => e.name).filter(Boolean));
            assert.ok([...names].some((n) => /packet_sent/.test(n)), `${side}: packet_sent events: ${[...names]}`);
            assert.ok([...names].some((n) => /packet_received/.test(n)), `${side}: packet_received events: ${[...names]}`);
        }
        const lines = (f: string) => new Set(fs.readFileSync(f, 'utf8').split('\n').filter((l) => l.trim()));
        const a = lines(skl);
        const b = lines(ckl);
        const labels = new Set([...a].map((l) => l.split(' ')[0]));
        for (const want of ['CLIENT_HANDSHAKE_TRAFFIC_SECRET', 'SERVER_HANDSHAKE_TRAFFIC_SECRET', 'CLIENT_TRAFFIC_SECRET_0', 'SERVER_TRAFFIC_SECRET_0']) {
            assert.ok(labels.has(want), `server key log has ${want}: ${[...labels]}`);
        }
        for (const l of a) {
            assert.match(l, /^[A-Z_0-9]+ [0-9a-f]{64} [0-9a-f]{64,}$/, 'NSS key log format');
        }
        assert.deepEqual([...a].sort(), [...b].sort(), 'both ends logged the same client random and secrets');
    });
});
