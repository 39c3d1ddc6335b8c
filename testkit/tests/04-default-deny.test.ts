/** Special destinations (here loopback) are refused unless allow_destinations lists them. */
import assert from 'node:assert/strict';
import dns from 'node:dns/promises';
import { afterEach, describe, it } from 'node:test';

import {
    cleanup,
    connectTunnel,
    proxyRequest,
    proxyStatusParams,
    sleep,
    startHttpOrigin,
    withTurnpike,
    type HttpOrigin,
    type Turnpike,
} from '../src/index.js';
import { proxyConfig } from './common.js';

async function assertRefused(tp: Turnpike, origin: HttpOrigin, authority: string): Promise<void> {
    const t = await connectTunnel(tp.endpoint('proxy'), authority);
    assert.equal(t.status, 403, `CONNECT ${authority}`);
    assert.equal(
        proxyStatusParams(t.headers['proxy-status']).error,
        'destination_ip_prohibited',
        `Proxy-Status of CONNECT ${authority}: ${t.headers['proxy-status']}`,
    );

    const res = await proxyRequest(tp.endpoint('proxy'), { url: `http://${authority}/secret` });
    assert.equal(res.status, 403, `GET http://${authority}/secret`);
    assert.equal(
        proxyStatusParams(res.headers['proxy-status']).error,
        'destination_ip_prohibited',
        `Proxy-Status of GET http://${authority}/: ${res.headers['proxy-status']}`,
    );

    await sleep(200); // a late connection attempt would show up by now
    assert.equal(origin.connections, 0, 'the origin must never see a connection');
    assert.equal(origin.requests.length, 0);
}

describe('default deny of special destinations', () => {
    afterEach(cleanup);

    it('refuses CONNECT and GET to loopback without allow_destinations', { timeout: 60_000 }, async () => {
        const origin = await startHttpOrigin();
        await withTurnpike({ config: proxyConfig() }, async (tp) => {
            await assertRefused(tp, origin, origin.address);
        });
    });

    it('refuses loopback when allow_destinations lists other ranges only', { timeout: 60_000 }, async () => {
        const origin = await startHttpOrigin();
        await withTurnpike({ config: proxyConfig({ allow_destinations: ['10.0.0.0/8', '192.168.0.0/16'] }) }, async (tp) => {
            await assertRefused(tp, origin, origin.address);
        });
    });

    it('checks the resolved address of a name, not the name', { timeout: 60_000 }, async (t) => {
        // The name must resolve on this machine (a bare chroot may lack /etc/hosts).
        const resolved = await dns.lookup('localhost').catch(() => null);
        if (!resolved) {
            t.skip('localhost does not resolve on this machine (no /etc/hosts entry)');
            return;
        }
        const origin = await startHttpOrigin();
        await withTurnpike({ config: proxyConfig() }, async (tp) => {
            await assertRefused(tp, origin, `localhost:${origin.port}`);
        });
    });

    it('lets the same request through once loopback is allowed', { timeout: 60_000 }, async () => {
        const origin = await startHttpOrigin();
        await withTurnpike({ config: proxyConfig({ allow_destinations: ['127.0.0.1/32'] }) }, async (tp) => {
            const res = await proxyRequest(tp.endpoint('proxy'), { url: origin.url('/ok') });
            assert.equal(res.status, 200);
            assert.equal(origin.requests.length, 1);
        });
    });
});
