/**
 * QUIC over a bad path: a relay (testkit's startUdpImpair: this machine's kernel has no sch_netem)
 * adds 25 ms each way (50 ms RTT) and drops 5% of the datagrams each way; Turnpike's HTTP/3 server
 * (examples/h3-files, Retry always, BBR: with CUBIC, whose window halves on every random loss, the
 * same download takes about 135 s instead of 5) serves 20 MiB to Turnpike's client (turnpike-h3)
 * intact. Then a
 * NAT rebinding mid-transfer: the relay moves the client to a new source port, then to a new
 * source address, and the server must follow (path validation) for the download to finish.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, it } from 'node:test';

import { cleanup, makeTestCerts, runProcess, sleep, startUdpImpair, toolBinary, type TestCerts } from '../src/index.js';
import { fileSha256, MiB, patternSha256, quicGoClient, startH3Files, stopH3Files, tempDir } from './h3-helpers.js';

const TOOL = toolBinary('turnpike-h3');

describe('QUIC over loss, delay and NAT rebinding (h3-files, turnpike-h3, quic-go)', () => {
    afterEach(cleanup);

    it('5% loss and 50 ms RTT: a 20 MiB download (BBR) through a Retry arrives intact', { timeout: 600_000 }, async () => {
        const certs = makeTestCerts();
        const { srv, port } = await startH3Files(certs, ['--retry', 'always', '--cc', 'bbr']);
        const relay = await startUdpImpair({ target: { host: '127.0.0.1', port }, delayMs: 25, loss: 0.05 });
        const size = 20 * MiB;
        const out = path.join(tempDir('tp-quic-loss-'), 'dl.bin');
        const started = Date.now();
        const r = await runProcess(TOOL, ['get', `https://127.0.0.1:${relay.port}/bytes/${size}`, '--ca', certs.caFile, '--sni', 'localhost', '-o', out, '--timeout-ms', '400000'], 450_000);
        const summary = JSON.parse(r.stdout.trim().split('\n').pop() || '{}');
        assert.equal(r.proc.sanitizerReport(), null, r.stderr);
        assert.equal(r.code, 0, `${JSON.stringify(summary)}\n${JSON.stringify(relay.stats)}`);
        assert.equal(fs.statSync(out).size, size);
        assert.equal(fileSha256(out), patternSha256(size));
        // The path really was bad: datagrams were lost both ways.
        assert.ok(relay.stats.droppedToClient > 100, JSON.stringify(relay.stats));
        assert.ok(relay.stats.droppedToServer > 10, JSON.stringify(relay.stats));
        const q = (await stopH3Files(srv)).stats as Record<string, number>;
        // Retry exercised: at least one (a lost Retry makes the client ask again), and exactly one
        // connection made from a token-bearing Initial.
        assert.ok(q.retries_sent >= 1, 'the Retry was sent');
        assert.equal(q.accepted_initials, 1);
        assert.equal(q.handshakes, 1);
        assert.equal(q.failed_handshakes, 0);
        console.log(`# 20 MiB over 5% loss / 50 ms RTT in ${((Date.now() - started) / 1000).toFixed(1)} s; relay ${JSON.stringify(relay.stats)}`);
    });

    interface Download {
        code: number | null;
        out: string;
        bytes: number;
        sha256: string;
    }

    /** A 40 MiB download through the relay; the relay rebinds at a quarter and at half of it. */
    async function rebindingDownload(client: (url: string, certs: TestCerts) => Promise<Download>) {
        const certs = makeTestCerts();
        const { srv, port } = await startH3Files(certs);
        const relay = await startUdpImpair({ target: { host: '127.0.0.1', port }, delayMs: 5 });
        const size = 40 * MiB;
        const done = client(`https://127.0.0.1:${relay.port}/bytes/${size}`, certs);
        const waitBytes = async (n: number) => {
            while (relay.stats.bytesToClient < n) await sleep(5);
        };
        await waitBytes(size / 4);
        const first = await relay.rebind();
        await waitBytes(size / 2);
        const second = await relay.rebind('127.0.0.2');
        const r = await done;
        assert.equal(r.code, 0, `${r.out}\n${JSON.stringify(relay.stats)}`);
        assert.equal(r.bytes, size);
        assert.equal(r.sha256, patternSha256(size));
        assert.equal(relay.stats.rebinds, 2);
        assert.notEqual(first.port, 0);
        assert.equal(second.address, '127.0.0.2');
        // The server followed the client to its new address: the rest of the body came there.
        assert.ok(relay.receivedOnCurrent() > 1000, `only ${relay.receivedOnCurrent()} datagrams reached 127.0.0.2`);
        const q = (await stopH3Files(srv)).stats as Record<string, number>;
        assert.equal(q.handshakes, 1, 'the same connection, not a new one');
        assert.equal(q.accepted_initials, 1);
    }

    it("a NAT rebinding mid-transfer (new port, then new address) does not break turnpike-h3's download", { timeout: 300_000 }, async () => {
        await rebindingDownload(async (url, certs) => {
            const file = path.join(tempDir('tp-quic-nat-'), 'dl.bin');
            const r = await runProcess(TOOL, ['get', url, '--ca', certs.caFile, '--sni', 'localhost', '-o', file, '--timeout-ms', '200000'], 250_000);
            assert.equal(r.proc.sanitizerReport(), null, r.stderr);
            const ok = fs.existsSync(file);
            return { code: r.code, out: `${r.stdout}\n${r.stderr}`, bytes: ok ? fs.statSync(file).size : 0, sha256: ok ? fileSha256(file) : '' };
        });
    });

    it("a NAT rebinding mid-transfer does not break quic-go's download either", { timeout: 900_000 }, async (t) => {
        const bin = quicGoClient(t);
        if (!bin) return;
        await rebindingDownload(async (url, certs) => {
            const r = await runProcess(bin, ['--ca', certs.caFile, url], 250_000);
            const summary = JSON.parse(r.stdout.trim().split('\n').pop() || '{}');
            const s = summary.per_stream?.[0] ?? {};
            return { code: r.code, out: `${r.stdout}\n${r.stderr}`, bytes: s.bytes ?? 0, sha256: s.sha256 ?? '' };
        });
    });
});
