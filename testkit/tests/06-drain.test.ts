/** SIGTERM: stop accepting, let open connections finish (up to drain_timeout), exit 0. */
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';

import {
    cleanup,
    connectTunnel,
    makeTestCerts,
    RawConnection,
    runProcess,
    startHttpOrigin,
    toolBinary,
    sleep,
    startTcpEcho,
    startTurnpike,
    withTimeout,
    type Endpoint,
    type Turnpike,
} from '../src/index.js';
import { LOOPBACK, proxyConfig } from './common.js';

async function roundTrip(c: RawConnection, text: string): Promise<void> {
    await c.write(text);
    assert.equal((await c.readBytes(Buffer.byteLength(text), 5000)).toString(), text);
}

/** Closes the tunnel that kept the drain going; Turnpike must then exit 0. */
async function closeLastAndExit(c: RawConnection, tp: Turnpike): Promise<void> {
    await c.end();
    await c.waitForPeerClose(5000);
    c.destroy();
    const exit = await withTimeout(tp.exited, 10_000, 'Turnpike did not exit after the last connection closed');
    assert.deepEqual(exit, { code: 0, signal: null });
}

/** Resolves with a description of how a new connection attempt was turned away; throws if it got a tunnel. */
async function newConnectionIsRefused(ep: Endpoint, authority: string): Promise<string> {
    try {
        const t = await connectTunnel(ep, authority, { timeoutMs: 2000 });
        t.socket.destroy();
        assert.ok(t.status < 200 || t.status >= 300, `a new CONNECT during drain got ${t.status}`);
        return `answered ${t.status}`;
    } catch (err) {
        if (err instanceof assert.AssertionError) throw err;
        return (err as Error).message; // refused, reset, closed or never answered: not accepted
    }
}

describe('SIGTERM drain', () => {
    afterEach(cleanup);

    it('keeps an open tunnel working until the client closes, refuses new connections, then exits 0', { timeout: 60_000 }, async () => {
        const echo = await startTcpEcho();
        const tp = await startTurnpike({
            config: proxyConfig({ allow_destinations: LOOPBACK }, { runtime: { drain_timeout: '30s' } }),
        });
        const ep = tp.endpoint('proxy');
        const t = await connectTunnel(ep, echo.address);
        assert.equal(t.status, 200);
        const c = RawConnection.wrap(t.socket);
        await roundTrip(c, 'before');

        tp.signal('SIGTERM');
        await tp.waitForLog({ msg: 'draining' });

        const how = await newConnectionIsRefused(ep, echo.address);
        assert.equal(echo.connections, 1, `only the first tunnel reached the origin (new attempt: ${how})`);

        for (let i = 0; i < 5; i++) {
            await roundTrip(c, `during drain ${i}`);
            await sleep(200);
        }
        assert.ok(tp.running, 'Turnpike must wait for the open tunnel');

        await closeLastAndExit(c, tp);
        assert.ok(tp.findLog({ msg: 'stopped' }), 'a "stopped" log line');
        await tp.assertCleanExit();
    });

    it('an http3 endpoint refuses new QUIC connections once draining (CONNECTION_REFUSED), while an open tunnel keeps the drain going', { timeout: 60_000 }, async () => {
        const certs = makeTestCerts();
        const echo = await startTcpEcho();
        const origin = await startHttpOrigin();
        const config = proxyConfig({ allow_destinations: LOOPBACK }, { runtime: { drain_timeout: '30s' } }) as { endpoints: object[] };
        config.endpoints.push({
            name: 'h3',
            type: 'http3',
            listen: ['127.0.0.1:0'],
            quic: { certificate: certs.certFile, private_key: certs.keyFile },
            routes: [{ upstream: 'o' }],
        });
        const tp = await startTurnpike({ config: { ...config, upstreams: [{ name: 'o', servers: [`127.0.0.1:${origin.port}`] }] } });
        const url = `https://127.0.0.1:${tp.endpoint('h3').port}/x`;
        const get = () => runProcess(toolBinary('turnpike-h3'), ['get', url, '--ca', certs.caFile, '--sni', 'localhost', '--timeout-ms', '5000'], 30_000);
        const before = await get();
        assert.equal(before.code, 0, before.stdout + before.stderr);
        assert.equal(origin.requests.length, 1);
        const t = await connectTunnel(tp.endpoint('proxy'), echo.address);
        assert.equal(t.status, 200);
        const c = RawConnection.wrap(t.socket);
        await roundTrip(c, 'open');

        tp.signal('SIGTERM');
        await tp.waitForLog({ msg: 'draining' });
        const during = await get();
        const summary = JSON.parse(during.stdout.trim().split('\n').pop() || '{}');
        assert.equal(during.code, 1, `a new HTTP/3 connection during the drain was served: ${during.stdout}`);
        assert.equal(summary.ok, false);
        assert.match(String(summary.error), /by the peer, transport error 0x2\b/, during.stdout); // CONNECTION_REFUSED
        assert.equal(origin.requests.length, 1, 'the refused request reached the origin');
        await roundTrip(c, 'still open');
        assert.ok(tp.running, 'Turnpike must wait for the open tunnel');
        await closeLastAndExit(c, tp);
        await tp.assertCleanExit();
    });

    it('closes a tunnel left open at drain_timeout and exits 0', { timeout: 60_000 }, async () => {
        const echo = await startTcpEcho();
        const tp = await startTurnpike({
            config: proxyConfig({ allow_destinations: LOOPBACK }, { runtime: { drain_timeout: '1s' } }),
        });
        const t = await connectTunnel(tp.endpoint('proxy'), echo.address);
        assert.equal(t.status, 200);
        const c = RawConnection.wrap(t.socket);
        await roundTrip(c, 'open');

        const start = Date.now();
        tp.signal('SIGTERM');
        const exit = await withTimeout(tp.exited, 15_000, 'Turnpike did not exit within 15 s of a 1 s drain');
        const elapsed = Date.now() - start;
        assert.deepEqual(exit, { code: 0, signal: null });
        assert.ok(elapsed >= 900, `exited after ${elapsed} ms, before the 1 s drain_timeout`);
        assert.ok(elapsed < 5000, `exited after ${elapsed} ms, long after the 1 s drain_timeout`);
        await c.waitForPeerClose(2000);
        assert.ok(tp.findLog({ msg: 'stopped' }), 'a "stopped" log line');
        await tp.assertCleanExit();
    });

    it('exits 0 at once when idle', { timeout: 30_000 }, async () => {
        const tp = await startTurnpike({ config: proxyConfig({}, { runtime: { drain_timeout: '30s' } }) });
        const start = Date.now();
        tp.signal('SIGTERM');
        const exit = await withTimeout(tp.exited, 10_000, 'an idle Turnpike did not exit on SIGTERM');
        assert.deepEqual(exit, { code: 0, signal: null });
        assert.ok(Date.now() - start < 5000);
        await tp.assertCleanExit();
    });
});
