/** Upstream keep-alive reuse between requests of one client connection, and per-endpoint limits. */
import assert from 'node:assert/strict';
import net from 'node:net';
import { afterEach, describe, it } from 'node:test';

import { cleanup, rawTcp, startTcpServer, withTurnpike } from '../src/index.js';
import { LOOPBACK, proxyConfig } from './common.js';

/** An origin that answers each request with HTTP/1.1 keep-alive framing, then (optionally) drops the
 * connection silently, as an origin whose idle timeout fires between two requests does. */
async function startOrigin(dropAfterEach: boolean) {
    const connections: number[] = [];
    let served = 0;
    const server = await startTcpServer((socket: net.Socket) => {
        connections.push(served);
        let buf = '';
        socket.on('data', (d) => {
            buf += d.toString('latin1');
            while (buf.includes('\r\n\r\n')) {
                buf = buf.slice(buf.indexOf('\r\n\r\n') + 4);
                served++;
                const body = `answer ${served}`;
                socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
                if (dropAfterEach) setTimeout(() => socket.destroy(), 20);
            }
        });
    });
    return { server, connections, served: () => served };
}

describe('upstream keep-alive reuse', () => {
    afterEach(cleanup);

    it('reuses the upstream connection for the next request to the same origin', { timeout: 30_000 }, async () => {
        const origin = await startOrigin(false);
        await withTurnpike({ config: proxyConfig({ allow_destinations: LOOPBACK }) }, async (tp) => {
            const c = await rawTcp(tp.endpoint('proxy'));
            for (let i = 1; i <= 3; i++) {
                await c.write(`GET http://127.0.0.1:${origin.server.port}/${i} HTTP/1.1\r\nHost: x\r\n\r\n`);
                const res = await c.readResponse();
                assert.equal(res.status, 200);
                assert.equal(res.body.toString(), `answer ${i}`);
            }
            assert.equal(origin.connections.length, 1, 'one upstream connection for three requests');
            c.destroy();
        });
    });

    it('retries a body-less request on a fresh connection when the kept one died while idle', { timeout: 30_000 }, async () => {
        const origin = await startOrigin(true);
        await withTurnpike({ config: proxyConfig({ allow_destinations: LOOPBACK }) }, async (tp) => {
            const c = await rawTcp(tp.endpoint('proxy'));
            for (let i = 1; i <= 3; i++) {
                await c.write(`GET http://127.0.0.1:${origin.server.port}/${i} HTTP/1.1\r\nHost: x\r\n\r\n`);
                const res = await c.readResponse();
                assert.equal(res.status, 200, `request ${i}: ${res.body.toString()}`);
                assert.equal(res.body.toString(), `answer ${i}`);
                await new Promise((r) => setTimeout(r, 100)); // the origin drops the connection meanwhile
            }
            assert.equal(origin.served(), 3, 'each request reached the origin exactly once');
            assert.equal(origin.connections.length, 3);
            c.destroy();
        });
    });
});

describe('limits.max_connections', () => {
    afterEach(cleanup);

    it('closes connections over the per-worker limit at accept and logs why', { timeout: 30_000 }, async () => {
        const config = proxyConfig({ allow_destinations: LOOPBACK, limits: { max_connections: 2 } });
        await withTurnpike({ config }, async (tp) => {
            const a = await rawTcp(tp.endpoint('proxy'));
            const b = await rawTcp(tp.endpoint('proxy'));
            await tp.waitForLog((l) => l.msg === 'hook' && l.hook === 'ingress.handle_connection' && l.peer === `127.0.0.1:${b.localPort}`, 5000);
            const c = await rawTcp(tp.endpoint('proxy'));
            await c.waitForPeerClose(5000);
            await tp.waitForLog((l) => l.msg === 'connection refused', 5000);
            a.destroy();
            await tp.waitForLog((l) => l.msg === 'close' && l.peer === `127.0.0.1:${a.localPort}`, 5000);
            const d = await rawTcp(tp.endpoint('proxy')); // room again
            await d.write('GET http://127.0.0.1:1/ HTTP/1.1\r\nHost: x\r\n\r\n');
            const res = await d.readResponse();
            assert.equal(res.status, 502, 'served once a slot is free');
            b.destroy();
            d.destroy();
        });
    });
});
