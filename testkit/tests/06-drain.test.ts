/** SIGTERM: stop accepting, let open connections finish (up to drain_timeout), exit 0. */
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';

import {
    cleanup,
    connectTunnel,
    RawConnection,
    sleep,
    startTcpEcho,
    startTurnpike,
    withTimeout,
    type Endpoint,
} from '../src/index.js';
import { LOOPBACK, proxyConfig } from './common.js';

async function roundTrip(c: RawConnection, text: string): Promise<void> {
    await c.write(text);
    assert.equal((await c.readBytes(Buffer.byteLength(text), 5000)).toString(), text);
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

        await c.end();
        await c.waitForPeerClose(5000);
        c.destroy();
        const exit = await withTimeout(tp.exited, 10_000, 'Turnpike did not exit after the last connection closed');
        assert.deepEqual(exit, { code: 0, signal: null });
        assert.ok(tp.findLog({ msg: 'stopped' }), 'a "stopped" log line');
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
