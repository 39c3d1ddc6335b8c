/** Tunnel timeouts: each expiry closes the connection with its own reason in the close line. */
import assert from 'node:assert/strict';
import net from 'node:net';
import { afterEach, describe, it } from 'node:test';

import { canMakeNetns, cleanup, createNetns, rawTcp, sleep, startTcpServer, withTurnpike } from '../src/index.js';
import { tcpConfig } from './common.js';

/** An upstream that sends a byte every `everyMs` (silent when 0) and reads what it gets. */
async function ticker(everyMs: number) {
    return startTcpServer((s: net.Socket) => {
        s.on('data', () => undefined);
        if (everyMs) {
            const t = setInterval(() => s.writable && s.write('u'), everyMs);
            s.on('close', () => clearInterval(t));
        }
    });
}

/** Opens an L4 connection, sends a byte every `everyMs` (never when 0) and returns its close line. */
async function closeReason(timeouts: Record<string, string>, upstreamEvery: number, clientEvery: number) {
    const up = await ticker(upstreamEvery);
    let line: Record<string, unknown> = {};
    let lifetime = 0;
    await withTurnpike({ config: tcpConfig(`127.0.0.1:${up.port}`, { timeouts }) }, async (tp) => {
        const c = await rawTcp(tp.endpoint('l4'));
        const started = Date.now();
        const t = clientEvery ? setInterval(() => !c.closed && c.socket.write('c'), clientEvery) : undefined;
        await c.waitForPeerClose(10_000);
        lifetime = Date.now() - started;
        if (t) clearInterval(t);
        line = await tp.waitForLog((l) => l.msg === 'close' && l.peer === `127.0.0.1:${c.localPort}`, 5000);
        c.destroy();
    });
    return { reason: line.reason, lifetime };
}

describe('tunnel timeouts', () => {
    afterEach(cleanup);

    it('idle (both ways): nothing moves', { timeout: 30_000 }, async () => {
        const r = await closeReason({ idle: '300ms' }, 0, 0);
        assert.equal(r.reason, 'idle_timeout');
        assert.ok(r.lifetime >= 250 && r.lifetime < 3000, `closed after ${r.lifetime} ms`);
    });

    it('tunnel_idle_client: the upstream talks, the client is silent', { timeout: 30_000 }, async () => {
        const r = await closeReason({ idle: '10s', tunnel_idle_client: '400ms' }, 50, 0);
        assert.equal(r.reason, 'client_idle_timeout');
        assert.ok(r.lifetime >= 350 && r.lifetime < 3000, `closed after ${r.lifetime} ms`);
    });

    it('tunnel_idle_upstream: the client talks, the upstream is silent', { timeout: 30_000 }, async () => {
        const r = await closeReason({ idle: '10s', tunnel_idle_upstream: '400ms' }, 0, 50);
        assert.equal(r.reason, 'upstream_idle_timeout');
        assert.ok(r.lifetime >= 350 && r.lifetime < 3000, `closed after ${r.lifetime} ms`);
    });

    it('max_lifetime: busy both ways, closed all the same', { timeout: 30_000 }, async () => {
        const r = await closeReason({ idle: '10s', tunnel_idle_client: '5s', max_lifetime: '600ms' }, 50, 50);
        assert.equal(r.reason, 'lifetime_exceeded');
        assert.ok(r.lifetime >= 500 && r.lifetime < 3000, `closed after ${r.lifetime} ms`);
    });

    it('timeouts.drain: an endpoint closes its open tunnels before the runtime deadline', { timeout: 30_000 }, async () => {
        const up = await ticker(50);
        await withTurnpike(
            { config: tcpConfig(`127.0.0.1:${up.port}`, { timeouts: { drain: '400ms' } }, { runtime: { drain_timeout: '20s' } }) },
            async (tp) => {
                const c = await rawTcp(tp.endpoint('l4'));
                await c.readBytes(1, 5000);
                const t0 = Date.now();
                tp.signal('SIGTERM');
                await c.waitForPeerClose(10_000);
                const waited = Date.now() - t0;
                assert.ok(waited >= 300 && waited < 5000, `closed ${waited} ms after SIGTERM`);
                const line = await tp.waitForLog((l) => l.msg === 'close' && l.peer === `127.0.0.1:${c.localPort}`, 5000);
                assert.equal(line.reason, 'shutdown');
                const exit = await tp.exited;
                assert.equal(exit.code, 0);
            },
        );
    });

    it('connect: an upstream that never answers gets 504 connection_timeout, reason connect_timeout', { timeout: 30_000 }, async (t) => {
        if (!canMakeNetns()) {
            t.skip('needs root and iproute2 to make a network namespace');
            return;
        }
        const ns = createNetns('tpto');
        ns.addBlackhole6(); // fd00::dead black-holes
        const config = {
            runtime: { workers: 1 },
            endpoints: [{ name: 'proxy', type: 'http_proxy', listen: ['127.0.0.1:0'], allow_destinations: ['fd00::/8'], timeouts: { connect: '400ms' } }],
        };
        await withTurnpike({ config, netns: ns.name }, async (tp) => {
            const out = ns.run('curl', ['-s', '-i', '-x', `http://${tp.endpoint('proxy').address}`, '-g', 'http://[fd00::dead]:80/']);
            assert.match(out, /^HTTP\/1\.1 504 /, out);
            assert.match(out, /Proxy-Status: turnpike; error=connection_timeout/, out);
            const line = await tp.waitForLog({ msg: 'close' }, 5000);
            assert.equal(line.reason, 'connect_timeout');
        });
        await sleep(0);
    });
});
