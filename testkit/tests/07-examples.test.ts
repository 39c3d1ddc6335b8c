/** The example apps: egress-firewall (pre-shared key unlocks private ranges) and next-hop (Proxy-Status). */
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';

import {
    cleanup,
    connectTunnel,
    proxyStatusParams,
    RawConnection,
    sleep,
    startTcpEcho,
    withTurnpike,
    type TcpServer,
    type TunnelResult,
} from '../src/index.js';
import { LOOPBACK, proxyConfig } from './common.js';

async function assertTunnelEchoes(t: TunnelResult): Promise<void> {
    const c = RawConnection.wrap(t.socket);
    await c.write('through the tunnel');
    assert.equal((await c.readBytes(18)).toString(), 'through the tunnel');
    c.destroy();
}

describe('example: egress-firewall', () => {
    afterEach(cleanup);

    const config = () => ({
        ...proxyConfig({ allow_destinations: LOOPBACK }),
        app: { psk: 'secret', private_cidrs: LOOPBACK },
    });

    async function refused(echo: TcpServer, t: TunnelResult, what: string): Promise<void> {
        assert.equal(t.status, 403, what);
        assert.equal(proxyStatusParams(t.headers['proxy-status']).error, 'destination_ip_prohibited', `${what}: ${t.headers['proxy-status']}`);
        await sleep(100);
        assert.equal(echo.connections, 0, `${what}: the private origin must not see a connection`);
    }

    it('refuses a private destination without the key', { timeout: 60_000 }, async () => {
        const echo = await startTcpEcho();
        await withTurnpike({ app: 'egress-firewall', config: config() }, async (tp) => {
            await refused(echo, await connectTunnel(tp.endpoint('proxy'), echo.address), 'no key');
        });
    });

    it('refuses a private destination with a wrong key', { timeout: 60_000 }, async () => {
        const echo = await startTcpEcho();
        await withTurnpike({ app: 'egress-firewall', config: config() }, async (tp) => {
            const ep = tp.endpoint('proxy');
            for (const auth of ['Preshared wrong', 'Preshared secre', 'Preshared secret2', 'Preshared ', 'Basic c2VjcmV0', 'secret']) {
                await refused(echo, await connectTunnel(ep, echo.address, { headers: { 'Proxy-Authorization': auth } }), auth);
            }
        });
    });

    it('opens a working tunnel with the right key', { timeout: 60_000 }, async () => {
        const echo = await startTcpEcho();
        await withTurnpike({ app: 'egress-firewall', config: config() }, async (tp) => {
            const t = await connectTunnel(tp.endpoint('proxy'), echo.address, {
                headers: { 'Proxy-Authorization': 'Preshared secret' },
            });
            assert.equal(t.status, 200);
            await assertTunnelEchoes(t);
            assert.equal(echo.connections, 1);
            // The key unlocks its own connection only: a new one without it is refused again.
            const again = await connectTunnel(tp.endpoint('proxy'), echo.address);
            assert.equal(again.status, 403, 'a later connection without the key');
            assert.equal(proxyStatusParams(again.headers['proxy-status']).error, 'destination_ip_prohibited');
            await sleep(100);
            assert.equal(echo.connections, 1);
        });
    });

    it('lets destinations outside private_cidrs through without a key', { timeout: 60_000 }, async () => {
        const echo = await startTcpEcho(); // on 127.0.0.1
        const cfg = { ...proxyConfig({ allow_destinations: LOOPBACK }), app: { psk: 'secret', private_cidrs: ['127.0.0.2/32'] } };
        await withTurnpike({ app: 'egress-firewall', config: cfg }, async (tp) => {
            const t = await connectTunnel(tp.endpoint('proxy'), echo.address);
            assert.equal(t.status, 200);
            await assertTunnelEchoes(t);
        });
    });
});

describe('example: next-hop', () => {
    afterEach(cleanup);

    it('names the origin address it connected to in Proxy-Status', { timeout: 60_000 }, async () => {
        const echo = await startTcpEcho();
        const other = await startTcpEcho();
        await withTurnpike({ app: 'next-hop', config: proxyConfig({ allow_destinations: LOOPBACK }) }, async (tp) => {
            for (const origin of [echo, other]) {
                const t = await connectTunnel(tp.endpoint('proxy'), origin.address);
                assert.equal(t.status, 200);
                const params = proxyStatusParams(t.headers['proxy-status']);
                assert.equal(params['next-hop'], `127.0.0.1:${origin.port}`, `Proxy-Status: ${t.headers['proxy-status']}`);
                await assertTunnelEchoes(t);
            }
        });
    });
});
