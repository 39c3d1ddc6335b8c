/**
 * Path MTU (docs/quic.md, "Path MTU"): every QUIC path starts at 1200-byte datagrams and PMTUD
 * (RFC 8899, ngtcp2's probes) raises it to a ceiling. By default (`max_udp_payload` auto) the
 * ceiling comes from the kernel's route to the peer: 1452 on an Ethernet-sized MTU or less,
 * more on a larger one (loopback, jumbo frames), up to a 9000-byte frame. These tests check the
 * ceiling on loopback (IPv4 and IPv6) with Turnpike's client and ngtcp2's gtlsclient, a fixed
 * ceiling, a path that silently drops large datagrams (PMTUD keeps what got through), the
 * route's MTU in a namespace of the test's own, and the proxy's `quic.max_udp_payload`.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, it } from 'node:test';

import {
    canMakeNetns,
    cleanup,
    createNetns,
    makeTestCerts,
    patternBytes,
    runProcess,
    startHttpOrigin,
    startProcess,
    startUdpImpair,
    toolBinary,
    withTurnpike,
    type Netns,
    type TestCerts,
} from '../src/index.js';
import { fileSha256, H3_FILES, MiB, needBinary, patternSha256, startH3Files, stopH3Files, tempDir } from './h3-helpers.js';

const TOOL = toolBinary('turnpike-h3');

async function get(url: string, certs: TestCerts, extra: string[] = [], wrap: string[] = []) {
    const args = ['get', url, '--ca', certs.caFile, '--sni', 'localhost', '--timeout-ms', '60000', '--verify-pattern', ...extra];
    const r = wrap.length ? await runProcess(wrap[0], [...wrap.slice(1), TOOL, ...args], 120_000) : await runProcess(TOOL, args, 120_000);
    assert.equal(r.proc.sanitizerReport(), null, r.stderr);
    const summary = JSON.parse(r.stdout.trim().split('\n').pop() || '{}');
    assert.equal(r.code, 0, `${JSON.stringify(summary)}\n${r.stderr}`);
    return summary;
}

/** h3-files inside a namespace (no Retry), and the port it got. */
async function startH3FilesIn(ns: Netns, certs: TestCerts, extra: string[]) {
    const srv = startProcess('ip', ['netns', 'exec', ns.name, H3_FILES, '--listen', '127.0.0.1:0', '--cert', certs.certFile, '--key', certs.keyFile, '--retry', 'never', ...extra]);
    const ready = await srv.waitForJson((l) => l.msg === 'ready', 20_000);
    return { srv, port: ready.port as number };
}

/** h3-files' last stats: the largest datagram a path reached, its ceiling, and the averages. */
function pmtu(last: Record<string, unknown>) {
    const q = last.stats as Record<string, number>;
    return {
        peak: last.udp_payload_peak as number,
        ceiling: last.udp_payload_ceiling as number,
        avg: q.packets_out ? q.bytes_out / q.packets_out : 0,
        q,
    };
}

describe('QUIC path MTU: the ceiling, PMTUD and black holes', () => {
    afterEach(cleanup);

    it('auto on loopback: PMTUD takes an IPv4 path to 8972 bytes and an IPv6 one to 8952; 20 MiB arrive intact', { timeout: 120_000 }, async () => {
        const certs = makeTestCerts();
        const size = 20 * MiB;
        for (const [listen, host, want] of [
            ['127.0.0.1:0', '127.0.0.1', 8972],
            ['[::1]:0', '[::1]', 8952],
        ] as const) {
            const { srv, port } = await startH3Files(certs, ['--retry', 'never'], listen);
            const s = await get(`https://${host}:${port}/bytes/${size}`, certs);
            assert.equal(s.per_stream[0].bytes, size);
            assert.equal(s.per_stream[0].pattern_ok, true);
            const m = pmtu(await stopH3Files(srv));
            assert.equal(m.ceiling, want, `${host}: ceiling`);
            assert.equal(m.peak, want, `${host}: the path did not reach its ceiling`);
            // Most of the body left in datagrams of the raised size (the first ones were 1200).
            assert.ok(m.avg > 4000, `${host}: ${m.q.bytes_out} bytes in ${m.q.packets_out} datagrams`);
        }
    });

    it('auto on loopback with ngtcp2 gtlsclient as the client: 20 MiB intact in jumbo-sized datagrams', { timeout: 120_000 }, async (t) => {
        const gtlsclient = needBinary(t, 'gtlsclient', 'ngtcp2-client');
        if (!gtlsclient) return;
        const certs = makeTestCerts();
        const size = 20 * MiB;
        const { srv, port } = await startH3Files(certs, ['--retry', 'never']);
        const dir = tempDir('tp-pmtud-gtls-');
        const r = await runProcess(gtlsclient, ['-q', '--no-quic-dump', '--no-http-dump', '--exit-on-all-streams-close', '--download', dir, '127.0.0.1', String(port), `https://127.0.0.1:${port}/bytes/${size}`], 120_000);
        assert.equal(r.code, 0, r.stderr);
        const file = path.join(dir, String(size));
        assert.equal(fs.statSync(file).size, size);
        assert.equal(fileSha256(file), patternSha256(size));
        const m = pmtu(await stopH3Files(srv));
        assert.equal(m.peak, 8972);
        assert.ok(m.avg > 4000, `${m.q.bytes_out} bytes in ${m.q.packets_out} datagrams`);
    });

    it('a fixed max_udp_payload (1452) is the ceiling on every path, loopback too', { timeout: 120_000 }, async () => {
        const certs = makeTestCerts();
        const { srv, port } = await startH3Files(certs, ['--retry', 'never', '--max-udp-payload', '1452']);
        await get(`https://127.0.0.1:${port}/bytes/${8 * MiB}`, certs, ['--max-udp-payload', '1452']);
        const m = pmtu(await stopH3Files(srv));
        assert.equal(m.ceiling, 1452);
        assert.equal(m.peak, 1452);
        assert.ok(m.avg <= 1452, `${m.q.bytes_out} bytes in ${m.q.packets_out} datagrams`);
    });

    it('a path that silently drops datagrams over 1472 bytes: the large probe is lost, PMTUD keeps 1444, nothing else is lost', { timeout: 120_000 }, async () => {
        const certs = makeTestCerts();
        const size = 8 * MiB;
        const { srv, port } = await startH3Files(certs, ['--retry', 'never']);
        const relay = await startUdpImpair({ target: { host: '127.0.0.1', port }, maxDatagram: 1472 });
        const s = await get(`https://127.0.0.1:${relay.port}/bytes/${size}`, certs);
        assert.equal(s.per_stream[0].bytes, size);
        assert.equal(s.per_stream[0].pattern_ok, true);
        const m = pmtu(await stopH3Files(srv));
        // The relay sits on loopback, so both ends' ceilings are 8972; only the probes of that size
        // were dropped (each end tries 3 times), and the path kept ngtcp2's largest usual probe.
        assert.equal(m.ceiling, 8972);
        assert.equal(m.peak, 1444);
        assert.ok(relay.stats.droppedTooBig >= 3 && relay.stats.droppedTooBig <= 6, JSON.stringify(relay.stats));
        assert.ok(relay.stats.longestToClient <= 1472 && relay.stats.longestToClient >= 1444, JSON.stringify(relay.stats));
        await relay.close();
    });

    it("the ceiling follows the route's MTU: a namespace whose loopback has MTU 1500, then 4000", { timeout: 120_000 }, async (t) => {
        if (!canMakeNetns()) {
            t.skip('no network namespaces here (not root, or no iproute2)');
            return;
        }
        const certs = makeTestCerts();
        const ns = createNetns('tppmtu');
        for (const [mtu, want] of [
            [1500, 1452],
            [4000, 3972],
        ] as const) {
            ns.run('ip', ['link', 'set', 'lo', 'mtu', String(mtu)]);
            const { srv, port } = await startH3FilesIn(ns, certs, []);
            const s = await get(`https://127.0.0.1:${port}/bytes/${4 * MiB}`, certs, [], ['ip', 'netns', 'exec', ns.name]);
            assert.equal(s.per_stream[0].pattern_ok, true);
            const m = pmtu(await stopH3Files(srv));
            assert.equal(m.ceiling, want, `lo mtu ${mtu}`);
            assert.equal(m.peak, want, `lo mtu ${mtu}`);
        }
    });

    it('a fixed ceiling above what the link carries (4000 on a 1500 MTU): only the probes are lost, GSO stays on, the path keeps 1444', { timeout: 120_000 }, async (t) => {
        if (!canMakeNetns()) {
            t.skip('no network namespaces here (not root, or no iproute2)');
            return;
        }
        const certs = makeTestCerts();
        const ns = createNetns('tppmtu');
        ns.run('ip', ['link', 'set', 'lo', 'mtu', '1500']);
        const { srv, port } = await startH3FilesIn(ns, certs, ['--max-udp-payload', '4000']);
        const s = await get(`https://127.0.0.1:${port}/bytes/${8 * MiB}`, certs, [], ['ip', 'netns', 'exec', ns.name]);
        assert.equal(s.per_stream[0].pattern_ok, true);
        const m = pmtu(await stopH3Files(srv));
        assert.equal(m.ceiling, 4000);
        assert.equal(m.peak, 1444);
        // Each 4000-byte probe (ngtcp2 tries 3 times, a PTO or more apart, so a short download
        // may end first) is refused by the kernel (EMSGSIZE: the link's MTU is 1500) and
        // counted; it leaves alone, never at the head of a GSO train, so no ordinary packet is
        // lost with it and GSO is not turned off.
        assert.ok(m.q.udp_drops >= 1 && m.q.udp_drops <= 3, `udp_drops ${m.q.udp_drops}`);
        assert.ok(m.q.gso_batches > 50, `gso_batches ${m.q.gso_batches}`);
    });

    it("the proxy's http3 on-ramp: quic.max_udp_payload auto sends jumbo-sized datagrams on loopback, 1452 does not", { timeout: 120_000 }, async () => {
        const certs = makeTestCerts();
        const size = 4 * MiB;
        const body = patternBytes(size);
        const origin = await startHttpOrigin((_req, res) => {
            res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(size) });
            res.end(body);
        });
        for (const [setting, bigger] of [
            ['auto', true],
            [1452, false],
        ] as const) {
            const cfg = {
                runtime: { workers: 1 },
                endpoints: [
                    {
                        name: 'h3',
                        type: 'http3',
                        listen: ['127.0.0.1:0'],
                        quic: { certificate: certs.certFile, private_key: certs.keyFile, max_udp_payload: setting },
                        routes: [{ upstream: 'o' }],
                    },
                ],
                upstreams: [{ name: 'o', servers: [`127.0.0.1:${origin.port}`] }],
            };
            await withTurnpike({ config: cfg }, async (tp) => {
                const relay = await startUdpImpair({ target: { host: '127.0.0.1', port: tp.endpoint('h3').port } });
                const s = await get(`https://127.0.0.1:${relay.port}/x`, certs);
                assert.equal(s.per_stream[0].bytes, size);
                assert.equal(s.per_stream[0].pattern_ok, true);
                if (bigger) assert.equal(relay.stats.longestToClient, 8972, JSON.stringify(relay.stats));
                else assert.ok(relay.stats.longestToClient <= 1452, JSON.stringify(relay.stats));
                await relay.close();
            });
        }
    });
});
