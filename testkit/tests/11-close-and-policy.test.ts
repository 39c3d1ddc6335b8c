/** An error answer's connection closes as soon as the client does; hook redirects meet the policy on L4 too. */
import assert from 'node:assert/strict';
import path from 'node:path';
import { afterEach, describe, it } from 'node:test';

import { buildDir, cleanup, rawTcp, startTcpEcho, withTurnpike } from '../src/index.js';
import { LOOPBACK, proxyConfig } from './common.js';

describe('lingering close after an error answer', () => {
    afterEach(cleanup);

    it('a 400 connection is closed as soon as the client closes, not at the linger deadline', { timeout: 30_000 }, async () => {
        await withTurnpike({ config: proxyConfig({ allow_destinations: LOOPBACK }) }, async (tp) => {
            const c = await rawTcp(tp.endpoint('proxy'));
            await c.write('GARBAGE\r\n\r\n');
            const res = await c.readResponse();
            assert.equal(res.status, 400);
            c.destroy();
            const close = await tp.waitForLog((l) => l.msg === 'close' && l.peer === `127.0.0.1:${c.localPort}`, 5000);
            assert.equal(close.reason, 'protocol_error');
            assert.ok(Number(close.duration_us) < 1_000_000, `closed after ${close.duration_us} us (the linger deadline is 2 s)`);
        });
    });
});

describe('destination policy and hook redirects on an L4 endpoint', () => {
    afterEach(cleanup);

    const lab = () => path.join(buildDir(), 'tests', 'apps', 'hook-lab');

    it('a redirect to loopback is refused without allow_destinations, allowed with it', { timeout: 30_000 }, async () => {
        const echo = await startTcpEcho();
        for (const allow of [false, true]) {
            const l4: Record<string, unknown> = {
                name: 'l4',
                type: 'tcp',
                listen: ['127.0.0.1:0'],
                upstream: '127.0.0.1:1',
                app: { egress_redirect: `127.0.0.1:${echo.port}` },
            };
            if (allow) l4.allow_destinations = LOOPBACK;
            const config = { runtime: { workers: 1, trace_hooks: true }, endpoints: [l4], app: { banner: 'policy' } };
            await withTurnpike({ binary: lab(), config }, async (tp) => {
                const c = await rawTcp(tp.endpoint('l4'));
                await c.write('ping');
                if (allow) {
                    assert.equal((await c.readBytes(4)).toString(), 'ping');
                    c.destroy();
                } else {
                    await c.waitForPeerClose(5000);
                    await tp.waitForLog((l) => l.msg === 'egress failed' && l.error === 'destination_ip_prohibited', 5000);
                }
            });
        }
        assert.equal(echo.sockets.length, 1, 'only the allowed run reached the echo server');
    });
});
