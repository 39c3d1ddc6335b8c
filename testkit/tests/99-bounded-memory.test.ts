/**
 * Bounded memory under backpressure: an origin pushes 1 GiB through a CONNECT tunnel while the
 * client stops reading. Turnpike must stop reading from the origin instead of buffering, stay
 * under 64 MiB RSS, and deliver every byte once the client reads again. Runs last (slow under ASan).
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import path from 'node:path';
import { afterEach, describe, it } from 'node:test';

import {
    buildDir,
    cleanup,
    connectTunnel,
    patternBytes,
    PatternVerifier,
    sleep,
    startTcpSource,
    track,
    withTimeout,
    withTurnpike,
} from '../src/index.js';
import { LOOPBACK, proxyConfig } from './common.js';

const MiB = 1 << 20;
const TOTAL = 1024 * MiB;
const RSS_LIMIT = 64 * MiB;
const PAUSE_MS = 5000;

const mib = (n: number) => `${(n / MiB).toFixed(1)} MiB`;

describe('bounded memory', () => {
    afterEach(cleanup);

    it('a paused client of a 1 GiB download keeps Turnpike under 64 MiB, then gets every byte', { timeout: 300_000 }, async () => {
        const source = await startTcpSource({ bytes: TOTAL });
        await withTurnpike({ config: proxyConfig({ allow_destinations: LOOPBACK }) }, async (tp) => {
            const baseline = tp.rss();
            const t = await connectTunnel(tp.endpoint('proxy'), source.address);
            assert.equal(t.status, 200);
            const socket = t.socket;
            socket.pause(); // the client stops reading: the kernel buffers fill, then Turnpike's must not grow

            const paused: number[] = [];
            const pauseEnd = Date.now() + PAUSE_MS;
            while (Date.now() < pauseEnd) {
                paused.push(tp.rss());
                await sleep(100);
            }
            const sentWhilePaused = source.sent;
            const maxPaused = Math.max(...paused);
            assert.ok(
                maxPaused < RSS_LIMIT,
                `RSS while the client was paused reached ${mib(maxPaused)} (limit ${mib(RSS_LIMIT)}, at start ${mib(baseline)})`,
            );
            assert.ok(
                sentWhilePaused < 128 * MiB,
                `the origin could push ${mib(sentWhilePaused)} while the client read nothing: no backpressure`,
            );

            // Read again: everything must arrive, in order, intact.
            const verifier = new PatternVerifier();
            const during: number[] = [];
            const sampler = setInterval(() => {
                if (tp.running) during.push(tp.rss());
            }, 200);
            const ended = new Promise<void>((resolve, reject) => {
                socket.on('data', (d: Buffer) => {
                    if (!verifier.update(d)) reject(new Error(`byte ${verifier.mismatchAt} is wrong`));
                });
                socket.once('end', resolve);
                socket.once('close', () => reject(new Error(`tunnel closed after ${verifier.bytes} of ${TOTAL} bytes`)));
            });
            socket.resume();
            try {
                await withTimeout(ended, 240_000, () => `only ${mib(verifier.bytes)} of ${mib(TOTAL)} arrived in time`);
            } finally {
                clearInterval(sampler);
            }
            socket.destroy();
            assert.ok(verifier.ok, `mismatch at byte ${verifier.mismatchAt}`);
            assert.equal(verifier.bytes, TOTAL);
            const maxDuring = Math.max(0, ...during);
            assert.ok(maxDuring < RSS_LIMIT, `RSS while streaming reached ${mib(maxDuring)} (limit ${mib(RSS_LIMIT)})`);
            const trace = await tp.connectionFor(t.localPort, 10_000);
            assert.ok(Number(trace.close.bytes_to_client) >= TOTAL, `close line: ${JSON.stringify(trace.close)}`);
        });
    });

    it('a 1 GiB upload through a scanning body hook (http-firewall) keeps Turnpike under 64 MiB', { timeout: 400_000 }, async () => {
        // An origin that reads the upload as it streams (checking every byte), after a first pause
        // in which the body hook's side must stop reading the client instead of buffering.
        const verifier = new PatternVerifier();
        let reading = false;
        const server = http.createServer((req, res) => {
            const start = () => {
                reading = true;
                req.on('data', (d: Buffer) => verifier.update(d));
                req.on('end', () => res.end('got it'));
                req.resume();
            };
            req.pause();
            setTimeout(start, 3000);
        });
        await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
        track('upload origin', () => server.close());
        const port = (server.address() as { port: number }).port;
        const config = {
            runtime: { workers: 1, trace_hooks: true },
            endpoints: [{ name: 'web', type: 'http', listen: ['127.0.0.1:0'], routes: [{ upstream: 'o' }] }],
            upstreams: [{ name: 'o', servers: [`127.0.0.1:${port}`] }],
            app: { patterns: ['NEVER-IN-THE-PATTERN'] },
        };
        await withTurnpike({ binary: path.join(buildDir(), 'examples', 'http-firewall'), config }, async (tp) => {
            const samples: number[] = [];
            const sampler = setInterval(() => {
                if (tp.running) samples.push(tp.rss());
            }, 100);
            const web = tp.endpoint('web');
            const piece = 256 * 1024;
            const status = await new Promise<number>((resolve, reject) => {
                const req = http.request({ host: web.host, port: web.port, method: 'POST', path: '/upload', headers: { 'content-length': TOTAL } });
                req.once('error', reject);
                req.once('response', (res) => {
                    res.resume();
                    res.once('end', () => resolve(res.statusCode ?? 0));
                });
                let sent = 0;
                const pump = () => {
                    while (sent < TOTAL) {
                        const chunk = patternBytes(piece, sent);
                        sent += piece;
                        if (!req.write(chunk)) {
                            req.once('drain', pump);
                            return;
                        }
                    }
                    req.end();
                };
                pump();
            })
                .catch((err: Error) => {
                    throw new Error(`${err.message}; origin read ${mib(verifier.bytes)}; log tail: ${tp.stderr.split('\n').slice(-12).join(' | ')}`);
                })
                .finally(() => clearInterval(sampler));
            assert.ok(reading, 'the origin read');
            assert.equal(status, 200);
            assert.ok(verifier.ok, `mismatch at byte ${verifier.mismatchAt}`);
            assert.equal(verifier.bytes, TOTAL);
            const max = Math.max(...samples);
            assert.ok(max < RSS_LIMIT, `RSS during the upload reached ${mib(max)} (limit ${mib(RSS_LIMIT)})`);
        });
    });
});
