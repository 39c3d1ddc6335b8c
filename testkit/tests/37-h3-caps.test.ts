/**
 * Caps a peer can push against on the HTTP/3 on-ramp: a request header section larger than the
 * SETTINGS_MAX_FIELD_SECTION_SIZE the endpoint announces (limits.max_header_bytes + 32 per
 * limits.max_headers) is answered 431 by the H3 driver without keeping its fields; one within it
 * but over limits.max_header_bytes is answered 431 by the exchange, with Proxy-Status. Either way
 * only that stream is refused: the connection serves the next requests. And quic.max_streams
 * bounds the requests a client has in flight on one connection: more wait for MAX_STREAMS.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, it } from 'node:test';

import { cleanup, makeTestCerts, runProcess, sleep, startHttpOrigin, toolBinary, track, withTurnpike } from '../src/index.js';

const TOOL = toolBinary('turnpike-h3');

describe('peer-growable caps on the HTTP/3 on-ramp', () => {
    afterEach(cleanup);

    it('an oversized header section gets 431 and the connection goes on serving', { timeout: 120_000 }, async () => {
        const certs = makeTestCerts();
        const origin = await startHttpOrigin();
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tp-h3caps-'));
        track(`dir ${dir}`, () => fs.rmSync(dir, { recursive: true, force: true }));
        const cfg = {
            runtime: { workers: 1 },
            endpoints: [{
                name: 'h3', type: 'http3', listen: ['127.0.0.1:0'],
                quic: { certificate: certs.certFile, private_key: certs.keyFile },
                limits: { max_header_bytes: '16KiB', max_headers: 100 },
                routes: [{ upstream: 'o' }],
            }],
            upstreams: [{ name: 'o', servers: [`127.0.0.1:${origin.port}`] }],
        };
        // Announced: 16384 + 32 * 100 = 19584 bytes of field section.
        await withTurnpike({ config: cfg }, async (tp) => {
            const port = tp.endpoint('h3').port;
            const run = async (pad: number) => {
                const out = path.join(dir, `first-${pad}.txt`);
                const r = await runProcess(TOOL, [
                    'get', `https://127.0.0.1:${port}/after-${pad}`, '--ca', certs.caFile, '--timeout-ms', '30000',
                    '-n', '3', '--sequential', '--big-header-first', String(pad), '-o', out,
                ], 60_000);
                assert.equal(r.proc.sanitizerReport(), null, r.stderr);
                const summary = JSON.parse(r.stdout.trim().split('\n').pop() || '{}');
                return { summary, body: fs.existsSync(out) ? fs.readFileSync(out, 'utf8') : '' };
            };

            // Over the announced section size: the driver answers, the exchange never sees it.
            const big = await run(24_000);
            assert.deepEqual(big.summary.per_stream.map((s: { status: number }) => s.status), [431, 200, 200], JSON.stringify(big.summary));
            assert.equal(big.summary.per_stream[0].complete, true);
            assert.equal(origin.requests.filter((q) => q.url === '/after-24000').length, 2, 'the two requests after it were served');
            assert.ok(!origin.requests.some((q) => q.headers['x-pad']), 'the oversized request never reached the origin');

            // Within the section size, over limits.max_header_bytes: the exchange's 431.
            const mid = await run(17_000);
            assert.deepEqual(mid.summary.per_stream.map((s: { status: number }) => s.status), [431, 200, 200], JSON.stringify(mid.summary));
            assert.match(mid.body, /^431 Request Header Fields Too Large: request head over limits.max_header_bytes or max_headers/);
            await tp.waitForLog({ msg: 'error response', status: 431, error: 'http_request_error' });
            assert.equal(origin.requests.filter((q) => q.url === '/after-17000').length, 2);

            // Just under every limit: served.
            const fits = await run(15_000);
            assert.deepEqual(fits.summary.per_stream.map((s: { status: number }) => s.status), [200, 200, 200], JSON.stringify(fits.summary));
            const padded = origin.requests.filter((q) => q.headers['x-pad']);
            assert.equal(padded.length, 1);
            assert.equal(String(padded[0]!.headers['x-pad']).length, 15_000);
        });
    });

    it('quic.max_streams bounds the requests in flight on one connection; the rest wait and are served', { timeout: 120_000 }, async () => {
        const certs = makeTestCerts();
        let inFlight = 0;
        let most = 0;
        // Each request is held 150 ms at the origin: with 40 at once, the cap shows.
        const origin = await startHttpOrigin(async (_req, res) => {
            inFlight++;
            most = Math.max(most, inFlight);
            await sleep(150);
            inFlight--;
            res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 3 });
            res.end('ok\n');
        });
        const cfg = {
            runtime: { workers: 1 },
            endpoints: [{
                name: 'h3', type: 'http3', listen: ['127.0.0.1:0'],
                quic: { certificate: certs.certFile, private_key: certs.keyFile, max_streams: 5 },
                routes: [{ upstream: 'o' }],
            }],
            upstreams: [{ name: 'o', servers: [`127.0.0.1:${origin.port}`], keepalive: { max_idle: 64 } }],
        };
        await withTurnpike({ config: cfg }, async (tp) => {
            const port = tp.endpoint('h3').port;
            const r = await runProcess(TOOL, ['get', `https://127.0.0.1:${port}/held`, '--ca', certs.caFile, '--timeout-ms', '60000', '-n', '40'], 90_000);
            assert.equal(r.proc.sanitizerReport(), null, r.stderr);
            const summary = JSON.parse(r.stdout.trim().split('\n').pop() || '{}');
            assert.equal(r.code, 0, JSON.stringify(summary) + tp.stderrTail(20));
            assert.equal(summary.per_stream.filter((x: { status: number }) => x.status === 200).length, 40);
            assert.equal(origin.requests.length, 40);
            assert.ok(most <= 5, `${most} requests of one connection were at the origin at once; max_streams is 5`);
            assert.ok(most >= 2, `the requests did run in parallel (at most ${most} at once)`);
        });
    });
});
