/**
 * Edges of the QUIC runtime seen from outside, against examples/h3-files: stateless resets only
 * for short-header packets whose unknown DCID has our layout and our server id (never for a
 * foreign CID, never for a packet too short to hide a reset), ECN marks both ways on a real
 * transfer, and the peer-opened stream limit holding concurrency while every request is served.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import dgram from 'node:dgram';
import { afterEach, describe, it } from 'node:test';

import { cleanup, makeTestCerts, runProcess, toolBinary } from '../src/index.js';
import { MiB, startH3Files, stopH3Files } from './h3-helpers.js';

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

describe('QUIC edges (stateless reset, ECN, stream limit) against h3-files', () => {
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
});
