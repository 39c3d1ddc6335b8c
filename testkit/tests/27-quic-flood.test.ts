/**
 * An Initial flood from spoofed sources against Turnpike's HTTP/3 server (examples/h3-files), in
 * two network namespaces the test makes: the attacker and a real client share one, linked by a
 * veth pair to the server's. tests/apps/quic-flood makes real client Initials (each its own DCID
 * and ClientHello) and sends them through a raw socket, every copy from another address of
 * 10.201.0.0/16; the server routes that range back to the attacker's side, where the answers die.
 * The server's memory (VmRSS) is sampled throughout, and a real client must connect meanwhile.
 * Also: a server whose route to its client disappears keeps running (sends that fail at once are
 * dropped, not retried for ever).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { afterEach, describe, it, type TestContext } from 'node:test';

import {
    buildDir,
    canMakeNetns,
    cleanup,
    createNetns,
    makeTestCerts,
    runProcess,
    sleep,
    startProcess,
    toolBinary,
    type Netns,
    type TestCerts,
} from '../src/index.js';
import { H3_FILES, MiB, patternSha256 } from './h3-helpers.js';

const FLOOD = `${buildDir()}/tests/apps/quic-flood`;
const TOOL = toolBinary('turnpike-h3');
const SERVER_IP = '10.200.0.1';
const CLIENT_IP = '10.200.0.2';

interface Lab {
    cli: Netns;
    srv: Netns;
    certs: TestCerts;
}

function makeLab(t: TestContext): Lab | null {
    if (!canMakeNetns()) {
        t.skip('needs root and iproute2 (network namespaces)');
        return null;
    }
    const cli = createNetns('tpqc');
    const srv = createNetns('tpqs');
    cli.run('ip', ['link', 'add', 'c0', 'type', 'veth', 'peer', 'name', 's0', 'netns', srv.name]);
    cli.run('ip', ['addr', 'add', `${CLIENT_IP}/24`, 'dev', 'c0']);
    cli.run('ip', ['link', 'set', 'c0', 'up']);
    srv.run('ip', ['addr', 'add', `${SERVER_IP}/24`, 'dev', 's0']);
    srv.run('ip', ['link', 'set', 's0', 'up']);
    // Answers to the spoofed sources go back over the veth and die on the other side.
    srv.run('ip', ['route', 'add', '10.201.0.0/16', 'via', CLIENT_IP]);
    srv.run('sysctl', ['-q', '-w', 'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.s0.rp_filter=0']);
    const certs = makeTestCerts({ ipAddresses: [SERVER_IP] });
    return { cli, srv, certs };
}

async function startServer(lab: Lab, extra: string[]) {
    // Under ASan freed memory waits in a quarantine (256 MiB by default) before reuse, so RSS
    // would measure the allocation churn, not what the server holds: keep the quarantine small.
    const asan = [process.env.ASAN_OPTIONS, 'quarantine_size_mb=1', 'thread_local_quarantine_size_kb=64'].filter(Boolean).join(':');
    const srv = startProcess(
        'ip',
        ['netns', 'exec', lab.srv.name, H3_FILES, '--listen', `${SERVER_IP}:4433`, '--cert', lab.certs.certFile, '--key', lab.certs.keyFile, ...extra],
        { ASAN_OPTIONS: asan },
    );
    await srv.waitForJson((l) => l.msg === 'ready', 20_000);
    return srv;
}

function rssKiB(pid: number): number {
    const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
}

/** Samples the RSS of `pid` every 50 ms until stop() is called; returns the peak. */
function sampleRss(pid: number): { stop: () => number } {
    let peak = rssKiB(pid);
    const timer = setInterval(() => {
        try {
            peak = Math.max(peak, rssKiB(pid));
        } catch {
            /* exited */
        }
    }, 50);
    return {
        stop() {
            clearInterval(timer);
            return peak;
        },
    };
}

async function realClient(lab: Lab, size: number) {
    const r = await runProcess('ip', ['netns', 'exec', lab.cli.name, TOOL, 'get', `https://${SERVER_IP}:4433/bytes/${size}`, '--ca', lab.certs.caFile, '--sni', SERVER_IP, '--timeout-ms', '30000'], 60_000);
    return { ...r, summary: JSON.parse(r.stdout.trim().split('\n').pop() || '{}') };
}

function flood(lab: Lab, count: number, repeat: number, pps: number) {
    return runProcess('ip', ['netns', 'exec', lab.cli.name, FLOOD, '--target', `${SERVER_IP}:4433`, '--sources', '10.201.0.0', '--count', String(count), '--repeat', String(repeat), '--pps', String(pps), '--sni', SERVER_IP], 120_000);
}

async function lastStats(srv: ReturnType<typeof startProcess>) {
    await srv.stop();
    await srv.assertCleanExit();
    const last = srv.jsonLines().filter((l) => l.msg === 'stats').pop();
    assert.ok(last, srv.tail());
    return last.stats as Record<string, number>;
}

describe('Initial flood from spoofed sources (quic-flood against h3-files, network namespaces)', () => {
    afterEach(cleanup);

    it('Retry always: 30 000 spoofed Initials make no state, memory stays flat, a real client still connects', { timeout: 180_000 }, async (t) => {
        const lab = makeLab(t);
        if (!lab) return;
        const srv = await startServer(lab, ['--retry', 'always']);
        const warm = await realClient(lab, 64 * 1024); // the first connection's allocations
        assert.equal(warm.code, 0, warm.stdout);
        const base = rssKiB(srv.pid);
        const rss = sampleRss(srv.pid);
        const attack = flood(lab, 3000, 10, 20_000);
        await sleep(300);
        const during = await realClient(lab, MiB);
        const f = await attack;
        const peak = rss.stop();
        assert.equal(f.code, 0, f.stdout + f.stderr);
        assert.equal(JSON.parse(f.stdout).sent, 30_000);
        assert.equal(during.code, 0, `the real client failed during the flood: ${during.stdout}`);
        assert.equal(during.summary.per_stream[0].sha256, patternSha256(MiB));
        const q = await lastStats(srv);
        assert.equal(q.accepted_initials, 2, 'only the real client made connections');
        assert.ok(q.retries_sent >= 25_000, `retries ${q.retries_sent}: the flood did not arrive`);
        assert.equal(q.connections, 0);
        // No per-packet state: the peak stays within a few MiB of the baseline (ASan build).
        assert.ok(peak - base < 12 * 1024, `RSS grew ${peak - base} KiB under the flood (base ${base} KiB)`);
        console.log(`# retry always: RSS base ${base} KiB, peak ${peak} KiB; retries ${q.retries_sent}`);
    });

    it('Retry above 64 open handshakes: the flood holds at most ~64 connections, they time out, a real client still connects', { timeout: 180_000 }, async (t) => {
        const lab = makeLab(t);
        if (!lab) return;
        const srv = await startServer(lab, ['--retry', 'load', '--retry-threshold', '64', '--max-connections', '1000']);
        const warm = await realClient(lab, 64 * 1024);
        assert.equal(warm.code, 0, warm.stdout);
        const base = rssKiB(srv.pid);
        const rss = sampleRss(srv.pid);
        const attack = flood(lab, 3000, 5, 20_000);
        await sleep(300);
        const during = await realClient(lab, MiB);
        const f = await attack;
        const peak = rss.stop();
        assert.equal(f.code, 0, f.stdout + f.stderr);
        assert.equal(during.code, 0, `the real client failed during the flood: ${during.stdout}`);
        // The handshake timeout (10 s) frees what the flood made.
        await sleep(12_000);
        const after = rssKiB(srv.pid);
        const q = await lastStats(srv);
        const bogus = q.accepted_initials - 2;
        assert.ok(bogus >= 60 && bogus <= 80, `the flood made ${bogus} connections (threshold 64)`);
        assert.ok(q.retries_sent > 10_000, `retries ${q.retries_sent}`);
        assert.equal(q.close_handshake_timeout, bogus, 'every bogus connection ended by the handshake timeout');
        assert.equal(q.connections, 0, 'nothing left in memory');
        // 64 half-open connections (TLS sessions, ngtcp2 state) under ASan: bounded, whatever
        // the flood's size.
        assert.ok(peak - base < 48 * 1024, `RSS grew ${peak - base} KiB under the flood (base ${base} KiB)`);
        console.log(`# retry under load: RSS base ${base} KiB, peak ${peak} KiB, after ${after} KiB; ${bogus} bogus connections`);
    });

    it('a route that disappears mid-transfer: failed sends are dropped and counted, the server stays responsive', { timeout: 120_000 }, async (t) => {
        const lab = makeLab(t);
        if (!lab) return;
        const srv = await startServer(lab, ['--retry', 'never']);
        realClient(lab, 1024 * MiB).catch(() => undefined); // cleanup() stops it
        await sleep(500);
        // No route to the client any more: every send fails at once with ENETUNREACH.
        lab.srv.run('ip', ['addr', 'flush', 'dev', 's0']);
        lab.srv.run('ip', ['addr', 'add', `${SERVER_IP}/32`, 'dev', 's0']);
        await sleep(1000);
        const started = Date.now();
        const q = await lastStats(srv);
        assert.ok(Date.now() - started < 5000, 'the server took long to stop: it was busy');
        assert.ok(q.udp_drops > 0, `no drop counted: ${JSON.stringify(q)}`);
    });
});
