/**
 * Uploads over the HTTP/3 on-ramp: request bodies from turnpike-h3 (the pattern, or a file, sent
 * as the stream takes them) through an `http3` endpoint to an HTTP/1.1 origin that hashes what it
 * receives. With and without a content-length (the upstream then gets chunked), in parallel on
 * one connection, through a body hook (http-firewall), against limits.max_body_size (413, and the
 * rest of the body stopped with STOP_SENDING), and into a slow origin with Turnpike's memory
 * bounded by the stream windows instead of the upload's size.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, it } from 'node:test';

import {
    buildDir,
    cleanup,
    makeTestCerts,
    runProcess,
    sleep,
    startUploadOrigin,
    toolBinary,
    track,
    withTurnpike,
    type TestCerts,
} from '../src/index.js';
import { patternSha256 } from './h3-helpers.js';

const TOOL = toolBinary('turnpike-h3');
const MiB = 1024 * 1024;
const mib = (n: number) => `${(n / MiB).toFixed(1)} MiB`;

function quic(certs: TestCerts) {
    return { certificate: certs.certFile, private_key: certs.keyFile };
}

function h3Config(certs: TestCerts, originPort: number, extra: Record<string, unknown> = {}, top: Record<string, unknown> = {}) {
    return {
        runtime: { workers: 1 },
        endpoints: [{ name: 'h3', type: 'http3', listen: ['127.0.0.1:0'], quic: quic(certs), routes: [{ upstream: 'o' }], ...extra }],
        upstreams: [{ name: 'o', servers: [`127.0.0.1:${originPort}`] }],
        ...top,
    };
}

function tempDir(): string {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tp-h3up-'));
    const remove = () => fs.rmSync(dir, { recursive: true, force: true });
    track(`dir ${dir}`, remove, remove);
    return dir;
}

interface StreamResult {
    status: number;
    bytes: number;
    complete: boolean;
    sha256: string;
    sent?: number;
    body_complete?: boolean;
    stop_sending?: boolean;
    reset_code?: number;
}

/** Runs turnpike-h3 against the endpoint; returns its JSON summary. */
async function upload(port: number, certs: TestCerts, urlPath: string, args: string[], timeoutMs = 180_000) {
    const r = await runProcess(
        TOOL,
        ['get', `https://127.0.0.1:${port}${urlPath}`, '--ca', certs.caFile, '--timeout-ms', String(timeoutMs - 10_000), ...args],
        timeoutMs,
    );
    assert.equal(r.proc.sanitizerReport(), null, `turnpike-h3 sanitizer report:\n${r.stderr}`);
    const summary = JSON.parse(r.stdout.trim().split('\n').pop() || '{}') as {
        ok: boolean;
        error: string;
        per_stream: StreamResult[];
    };
    return { ...r, summary };
}

describe('uploads over the HTTP/3 on-ramp', () => {
    afterEach(cleanup);

    it('64 MiB uploads arrive intact, with a content-length and without (then chunked upstream)', { timeout: 400_000 }, async () => {
        const certs = makeTestCerts();
        const origin = await startUploadOrigin();
        const size = 64 * MiB;
        await withTurnpike({ config: h3Config(certs, origin.port) }, async (tp) => {
            const port = tp.endpoint('h3').port;
            const out = path.join(tempDir(), 'answer.json');
            const r1 = await upload(port, certs, '/up/cl', ['--body-bytes', String(size), '-o', out]);
            assert.equal(r1.code, 0, JSON.stringify(r1.summary) + tp.stderrTail(30));
            const s1 = r1.summary.per_stream[0]!;
            assert.deepEqual({ status: s1.status, sent: s1.sent, body_complete: s1.body_complete }, { status: 200, sent: size, body_complete: true });
            const u1 = origin.uploads[0]!;
            assert.equal(u1.method, 'POST');
            assert.equal(u1.url, '/up/cl');
            assert.equal(u1.headers['content-length'], String(size));
            assert.equal(u1.headers['transfer-encoding'], undefined);
            assert.deepEqual({ complete: u1.complete, bytes: u1.bytes, patternOk: u1.patternOk }, { complete: true, bytes: size, patternOk: true });
            assert.equal(u1.sha256, patternSha256(size));
            assert.deepEqual(JSON.parse(fs.readFileSync(out, 'utf8')), { bytes: size, sha256: patternSha256(size), patternOk: true });

            const r2 = await upload(port, certs, '/up/stream', ['--body-bytes', String(size), '--no-content-length', '-X', 'PUT']);
            assert.equal(r2.code, 0, JSON.stringify(r2.summary) + tp.stderrTail(30));
            assert.equal(r2.summary.per_stream[0]!.status, 200);
            const u2 = origin.uploads[1]!;
            assert.equal(u2.method, 'PUT');
            assert.equal(u2.headers['content-length'], undefined);
            assert.equal(u2.headers['transfer-encoding'], 'chunked', 'a body without a length goes chunked to HTTP/1.1');
            assert.deepEqual({ complete: u2.complete, bytes: u2.bytes, patternOk: u2.patternOk }, { complete: true, bytes: size, patternOk: true });
            assert.equal(origin.uploads.length, 2);
        });
    });

    it('a file of random bytes, and six parallel uploads on one connection, arrive intact', { timeout: 300_000 }, async () => {
        const certs = makeTestCerts();
        const origin = await startUploadOrigin();
        const file = path.join(tempDir(), 'random.bin');
        const data = crypto.randomBytes(5 * MiB + 12345);
        fs.writeFileSync(file, data);
        const want = crypto.createHash('sha256').update(data).digest('hex');
        await withTurnpike({ config: h3Config(certs, origin.port) }, async (tp) => {
            const port = tp.endpoint('h3').port;
            const r = await upload(port, certs, '/file', ['--body-file', file]);
            assert.equal(r.code, 0, JSON.stringify(r.summary) + tp.stderrTail(30));
            assert.equal(origin.uploads[0]!.sha256, want);
            assert.equal(origin.uploads[0]!.bytes, data.length);

            for (const framing of [[], ['--no-content-length']]) {
                const before = origin.uploads.length;
                const size = 6 * MiB + 7;
                const rp = await upload(port, certs, '/parallel', ['--body-bytes', String(size), '-n', '6', ...framing]);
                assert.equal(rp.code, 0, JSON.stringify(rp.summary) + tp.stderrTail(30));
                assert.equal(rp.summary.per_stream.length, 6);
                for (const s of rp.summary.per_stream) assert.deepEqual({ status: s.status, sent: s.sent }, { status: 200, sent: size });
                const got = origin.uploads.slice(before);
                assert.equal(got.length, 6, `${framing.join(' ')}: the origin saw ${got.length} uploads`);
                for (const u of got) {
                    assert.deepEqual({ complete: u.complete, bytes: u.bytes, sha256: u.sha256 }, { complete: true, bytes: size, sha256: patternSha256(size) });
                    assert.equal(u.headers['transfer-encoding'], framing.length ? 'chunked' : undefined);
                }
            }
            // Six streams of one QUIC connection: one ingress connection carried them all.
            const both = await tp.waitForLog((l) => l.msg === 'close' && l.endpoint === 'h3' && Number(l.requests) === 6, 10_000);
            assert.ok(Number(both.bytes_from_client) >= 6 * (6 * MiB + 7), JSON.stringify(both));
        });
    });

    it('a request body hook (http-firewall) blocks a matching upload with 403 and passes a clean one', { timeout: 120_000 }, async () => {
        const certs = makeTestCerts();
        const origin = await startUploadOrigin();
        const dir = tempDir();
        const evil = path.join(dir, 'evil.bin');
        // The pattern straddles a 64 KiB chunk of the tool's sends.
        fs.writeFileSync(evil, Buffer.concat([Buffer.alloc(65_533, 'a'), Buffer.from('EVILWORD'), Buffer.alloc(3 * MiB, 'b')]));
        const config = h3Config(certs, origin.port, {}, { app: { patterns: ['EVILWORD'] } });
        await withTurnpike({ binary: path.join(buildDir(), 'examples', 'http-firewall'), config }, async (tp) => {
            const port = tp.endpoint('h3').port;
            for (const framing of [[], ['--no-content-length']]) {
                const out = path.join(dir, 'blocked.txt');
                const r = await upload(port, certs, '/form', ['--body-file', evil, '-o', out, ...framing]);
                const s = r.summary.per_stream[0]!;
                assert.equal(s.status, 403, JSON.stringify(r.summary) + tp.stderrTail(30));
                assert.equal(s.complete, true, 'the 403 is a complete response');
                assert.match(fs.readFileSync(out, 'utf8'), /^403 Forbidden: the body holds a blocked pattern/);
                assert.equal(s.stop_sending, true, 'the rest of the upload is refused with STOP_SENDING');
                await tp.waitForLog({ msg: 'error response', status: 403, error: 'http_request_denied' });
            }
            assert.equal(origin.uploads.filter((u) => u.complete).length, 0, 'no blocked upload reached the origin complete');

            const clean = 2 * MiB + 3;
            const ok = await upload(port, certs, '/form', ['--body-bytes', String(clean)]);
            assert.equal(ok.code, 0, JSON.stringify(ok.summary) + tp.stderrTail(30));
            assert.equal(ok.summary.per_stream[0]!.status, 200);
            const [u] = await origin.waitForUploads(1);
            assert.deepEqual({ bytes: u!.bytes, sha256: u!.sha256 }, { bytes: clean, sha256: patternSha256(clean) });
        });
    });

    it('limits.max_body_size answers 413: at the head for a content-length, mid-stream without', { timeout: 120_000 }, async () => {
        const certs = makeTestCerts();
        const origin = await startUploadOrigin();
        const size = 24 * MiB;
        await withTurnpike({ config: h3Config(certs, origin.port, { limits: { max_body_size: '1MiB' } }) }, async (tp) => {
            const port = tp.endpoint('h3').port;
            const dir = tempDir();
            const out1 = path.join(dir, '413.txt');
            const r1 = await upload(port, certs, '/big', ['--body-bytes', String(size), '-o', out1]);
            const s1 = r1.summary.per_stream[0]!;
            assert.equal(s1.status, 413, JSON.stringify(r1.summary) + tp.stderrTail(30));
            assert.equal(s1.complete, true);
            assert.match(fs.readFileSync(out1, 'utf8'), /^413 Content Too Large: request body over limits.max_body_size/);
            assert.equal(s1.stop_sending, true, 'STOP_SENDING');
            assert.ok((s1.sent ?? 0) < size, `the client was stopped, yet sent all ${s1.sent} bytes`);
            assert.equal(origin.uploads.length, 0, 'a declared length over the limit never reaches the origin');

            const r2 = await upload(port, certs, '/big', ['--body-bytes', String(size), '--no-content-length']);
            const s2 = r2.summary.per_stream[0]!;
            assert.equal(s2.status, 413, JSON.stringify(r2.summary) + tp.stderrTail(30));
            assert.equal(s2.stop_sending, true, 'STOP_SENDING');
            assert.ok((s2.sent ?? 0) < size, `the client was stopped, yet sent all ${s2.sent} bytes`);
            await sleep(200);
            assert.equal(origin.uploads.filter((u) => u.complete).length, 0, 'the origin never saw the streamed body complete');
            assert.ok(origin.bytesReceived <= 1 * MiB, `the origin got ${origin.bytesReceived} body bytes, more than the limit`);

            // The same size within a larger limit is not refused (the limit is what refused).
            const ok = await upload(port, certs, '/small', ['--body-bytes', String(MiB)]);
            assert.equal(ok.summary.per_stream[0]!.status, 200, JSON.stringify(ok.summary));
        });
    });

    it('a slow origin: a 160 MiB upload waits in the stream windows, not in Turnpike\'s memory', { timeout: 400_000 }, async (t) => {
        const certs = makeTestCerts();
        // Reads nothing for 3 s, then about 16 MiB/s: the client is far faster.
        const origin = await startUploadOrigin({ pauseMs: 3000, chunkDelayMs: 4 });
        const size = 160 * MiB;
        // ASan keeps freed memory in a quarantine (256 MiB by default): RSS would show the
        // allocation churn of 160 MiB going through, not what is held. Keep it small.
        const asan = [process.env.ASAN_OPTIONS, 'quarantine_size_mb=1', 'thread_local_quarantine_size_kb=64'].filter(Boolean).join(':');
        await withTurnpike({ config: h3Config(certs, origin.port), env: { ASAN_OPTIONS: asan } }, async (tp) => {
            const port = tp.endpoint('h3').port;
            const baseline = tp.rss();
            const samples: number[] = [];
            const sampler = setInterval(() => {
                if (tp.running) samples.push(tp.rss());
            }, 100);
            let r;
            try {
                r = await upload(port, certs, '/slow', ['--body-bytes', String(size)], 380_000);
            } finally {
                clearInterval(sampler);
            }
            assert.equal(r.code, 0, JSON.stringify(r.summary) + tp.stderrTail(30));
            const [u] = await origin.waitForUploads(1);
            assert.deepEqual({ bytes: u!.bytes, patternOk: u!.patternOk }, { bytes: size, patternOk: true });
            const peak = Math.max(...samples);
            t.diagnostic(`RSS ${mib(baseline)} at start, ${mib(peak)} at most, for ${mib(size)} through a slow origin`);
            // What may be held: the stream's receive window (auto-tuned up to 16 MiB), the
            // connection's (24 MiB), the upstream queue's high watermark and the slabs in flight.
            assert.ok(peak - baseline < 48 * MiB, `RSS grew from ${mib(baseline)} to ${mib(peak)} for a ${mib(size)} upload`);
        });
    });
});
