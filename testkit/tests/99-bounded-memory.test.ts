/**
 * Bounded memory under backpressure: an origin pushes 1 GiB through a CONNECT tunnel while the
 * client stops reading. Turnpike must stop reading from the origin instead of buffering, stay
 * under 64 MiB RSS, and deliver every byte once the client reads again. Runs last (slow under ASan).
 */
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';

import {
    cleanup,
    connectTunnel,
    PatternVerifier,
    sleep,
    startTcpSource,
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
});
