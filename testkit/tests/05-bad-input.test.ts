/**
 * Bad input: malformed requests, oversized heads, unreachable upstreams, slow clients. Each gets the
 * right status (or a close) and none takes Turnpike down: it serves a good request afterwards and
 * exits cleanly (no sanitizer reports).
 */
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';

import {
    cleanup,
    closedPort,
    connectTunnel,
    proxyStatusParams,
    rawHttp,
    rawTcp,
    sleep,
    startHttpOrigin,
    withTurnpike,
    type Endpoint,
    type HttpOrigin,
} from '../src/index.js';
import { assertStillServes, LOOPBACK, proxyConfig } from './common.js';

const get = (origin: HttpOrigin, extraHeaders = '') =>
    `GET ${origin.url('/x')} HTTP/1.1\r\nHost: ${origin.address}\r\n${extraHeaders}\r\n`;

/**
 * Sends each request on its own connection; returns what went wrong for each (expected: 400, the
 * connection closed, nothing reached the origin), so one run reports every deviation.
 */
async function expect400(ep: Endpoint, origin: HttpOrigin, requests: string[]): Promise<string[]> {
    const failures: string[] = [];
    for (const bytes of requests) {
        const before = origin.connections;
        const r = await rawHttp(ep, bytes, { timeoutMs: 3000 });
        await sleep(50);
        const what = JSON.stringify(bytes);
        if (r.status !== 400) failures.push(`${what}: got ${JSON.stringify(r.text.slice(0, 200))} instead of 400`);
        if (!r.closed) failures.push(`${what}: connection still open 3 s after the reply`);
        if (origin.connections !== before) failures.push(`${what}: reached the origin`);
    }
    return failures;
}

describe('bad input', () => {
    afterEach(cleanup);

    it('a malformed request line gets 400 and the connection is closed', { timeout: 60_000 }, async () => {
        const origin = await startHttpOrigin();
        await withTurnpike({ config: proxyConfig({ allow_destinations: LOOPBACK }) }, async (tp) => {
            const failures = await expect400(tp.endpoint('proxy'), origin, [
                'this is not http\r\n\r\n',
                'GET\r\n\r\n',
                `GET ${origin.url('/')} HTTP/9.Z\r\n\r\n`,
                `GET ${origin.url('/')}\r\n\r\n`,
            ]);
            assert.deepEqual(failures, []);
            assert.equal(origin.connections, 0);
            await assertStillServes(tp, origin);
        });
    });

    it('bad header syntax gets 400 and never reaches the origin', { timeout: 60_000 }, async () => {
        const origin = await startHttpOrigin();
        await withTurnpike({ config: proxyConfig({ allow_destinations: LOOPBACK }) }, async (tp) => {
            const headers = ['Bad Header: yes\r\n', 'NoColonHere\r\n', 'X-Space-Before-Colon : v\r\n', '(comment): v\r\n'];
            const failures = await expect400(
                tp.endpoint('proxy'),
                origin,
                headers.map((h) => get(origin, h)),
            );
            assert.deepEqual(failures, []);
            assert.equal(origin.connections, 0, 'no byte of a bad request may reach the origin');
            await assertStillServes(tp, origin);
        });
    });

    it('a header block over limits.max_header_bytes gets 431', { timeout: 60_000 }, async () => {
        const origin = await startHttpOrigin();
        const config = proxyConfig({ allow_destinations: LOOPBACK, limits: { max_header_bytes: '4KiB' } });
        await withTurnpike({ config }, async (tp) => {
            const ep = tp.endpoint('proxy');
            const small = await rawHttp(ep, get(origin, `X-Small: ${'a'.repeat(2000)}\r\n`), { until: 'response' });
            assert.equal(small.status, 200, 'a head under the limit passes');
            const big = await rawHttp(ep, get(origin, `X-Big: ${'a'.repeat(8000)}\r\n`));
            assert.equal(big.status, 431, `got: ${JSON.stringify(big.text.slice(0, 200))}`);
            // Many small headers adding up past the limit count too.
            let many = '';
            for (let i = 0; i < 40; i++) many += `X-Part-${i}: ${'b'.repeat(150)}\r\n`;
            const summed = await rawHttp(ep, get(origin, many));
            assert.equal(summed.status, 431, `got: ${JSON.stringify(summed.text.slice(0, 200))}`);
            assert.equal(origin.requests.length, 1);
            assert.equal(origin.connections, 1, 'the refused requests must not reach the origin');
            await assertStillServes(tp, origin);
        });
    });

    it('a header block over the default 16 KiB gets 431', { timeout: 60_000 }, async () => {
        const origin = await startHttpOrigin();
        await withTurnpike({ config: proxyConfig({ allow_destinations: LOOPBACK }) }, async (tp) => {
            const r = await rawHttp(tp.endpoint('proxy'), get(origin, `X-Huge: ${'h'.repeat(20 * 1024)}\r\n`));
            assert.equal(r.status, 431, `got: ${JSON.stringify(r.text.slice(0, 200))}`);
            assert.equal(origin.connections, 0);
            await assertStillServes(tp, origin);
        });
    });

    it('more than limits.max_headers fields gets 431', { timeout: 60_000 }, async () => {
        const origin = await startHttpOrigin();
        const config = proxyConfig({ allow_destinations: LOOPBACK, limits: { max_headers: 10 } });
        await withTurnpike({ config }, async (tp) => {
            const ep = tp.endpoint('proxy');
            const headers = (n: number) => Array.from({ length: n }, (_, i) => `X-H${i}: v\r\n`).join('');
            const ok = await rawHttp(ep, get(origin, headers(5)), { until: 'response' });
            assert.equal(ok.status, 200, 'Host plus 5 fields is under 10');
            const r = await rawHttp(ep, get(origin, headers(20)));
            assert.equal(r.status, 431, `got: ${JSON.stringify(r.text.slice(0, 200))}`);
            assert.equal(origin.requests.length, 1);
            assert.equal(origin.connections, 1, 'the refused request must not reach the origin');
            await assertStillServes(tp, origin);
        });
    });

    it('CONNECT to a closed port gets 502 with Proxy-Status connection_refused', { timeout: 60_000 }, async () => {
        const port = await closedPort();
        await withTurnpike({ config: proxyConfig({ allow_destinations: LOOPBACK }) }, async (tp) => {
            const t = await connectTunnel(tp.endpoint('proxy'), `127.0.0.1:${port}`);
            assert.equal(t.status, 502);
            assert.equal(proxyStatusParams(t.headers['proxy-status']).error, 'connection_refused', t.headers['proxy-status']);
            await assertStillServes(tp);
        });
    });

    it('a name that does not resolve gets 502 with Proxy-Status dns_error', { timeout: 60_000 }, async () => {
        await withTurnpike({ config: proxyConfig({ allow_destinations: LOOPBACK }) }, async (tp) => {
            // .invalid never resolves (RFC 6761).
            const t = await connectTunnel(tp.endpoint('proxy'), 'no-such-host.invalid:80', { timeoutMs: 30_000 });
            assert.equal(t.status, 502);
            assert.equal(proxyStatusParams(t.headers['proxy-status']).error, 'dns_error', t.headers['proxy-status']);
            await assertStillServes(tp);
        });
    });

    it('a client that stalls mid-head is closed after timeouts.header_read', { timeout: 60_000 }, async () => {
        const origin = await startHttpOrigin();
        const config = proxyConfig({ allow_destinations: LOOPBACK, timeouts: { header_read: '500ms' } });
        await withTurnpike({ config }, async (tp) => {
            const ep = tp.endpoint('proxy');
            const stalled = await rawTcp(ep);
            const start = Date.now();
            await stalled.write(`GET ${origin.url('/slow')} HTTP/1.1\r\nHost: ${origin.address}\r\nX-Half: `);
            await stalled.waitForPeerClose(5000);
            const elapsed = Date.now() - start;
            assert.ok(elapsed >= 400, `closed after ${elapsed} ms: too early for a 500 ms header_read timeout`);
            assert.ok(elapsed < 3000, `closed after ${elapsed} ms: too late for a 500 ms header_read timeout`);
            stalled.destroy();

            // Trickling a byte every 100 ms does not extend the deadline: the whole head is timed.
            const trickle = await rawTcp(ep);
            const t0 = Date.now();
            const head = `GET ${origin.url('/trickle')} HTTP/1.1\r\nHost: ${origin.address}\r\nX-Slow: ${'z'.repeat(100)}`;
            for (const ch of head) {
                if (trickle.peerEnded) break;
                await trickle.write(ch).catch(() => undefined);
                await sleep(100);
            }
            assert.ok(trickle.peerEnded, 'a client trickling its head must be closed');
            const trickleElapsed = Date.now() - t0;
            assert.ok(trickleElapsed < 3000, `trickling client closed after ${trickleElapsed} ms`);
            trickle.destroy();

            assert.equal(origin.connections, 0);
            await assertStillServes(tp, origin);
        });
    });
});
