/** HTTP/1.1 forward proxy and L4 behaviour: requests, bodies, keep-alive, HEAD, tunnels, half-close. */
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { afterEach, describe, it } from 'node:test';

import {
    cleanup,
    connectTunnel,
    echoBody,
    proxyRequest,
    randomBytes,
    rawTcp,
    RawConnection,
    sha256,
    startHttpOrigin,
    startTcpEcho,
    startTcpServer,
    StreamHash,
    withTimeout,
    withTurnpike,
} from '../src/index.js';
import { LOOPBACK, proxyConfig, tcpConfig } from './common.js';

const allowLoopback = () => proxyConfig({ allow_destinations: LOOPBACK });

interface Echoed {
    method: string;
    url: string;
    headers: Record<string, string>;
    body: string;
    bodyLength: number;
    bodySha256: string;
}

describe('forward proxy', () => {
    afterEach(cleanup);

    it('forwards a GET to the origin in origin form, with its headers', { timeout: 60_000 }, async () => {
        const origin = await startHttpOrigin();
        await withTurnpike({ config: allowLoopback() }, async (tp) => {
            const res = await proxyRequest(tp.endpoint('proxy'), {
                url: origin.url('/hello?x=1&y=%20'),
                headers: { 'x-test': 'forty-two', accept: 'application/json' },
            });
            assert.equal(res.status, 200, res.text());
            const e = res.json<Echoed>();
            assert.equal(e.method, 'GET');
            assert.equal(e.url, '/hello?x=1&y=%20');
            assert.equal(e.headers['x-test'], 'forty-two');
            assert.equal(e.headers.host, origin.address);
            assert.equal(res.headers['content-type'], 'application/json');
            assert.equal(origin.requests.length, 1);
        });
    });

    for (const chunked of [false, true]) {
        it(`streams a 5 MiB ${chunked ? 'chunked' : 'content-length'} POST body both ways intact`, { timeout: 60_000 }, async () => {
            const origin = await startHttpOrigin(echoBody);
            const body = randomBytes(5 << 20);
            await withTurnpike({ config: allowLoopback() }, async (tp) => {
                const res = await proxyRequest(tp.endpoint('proxy'), {
                    method: 'POST',
                    url: origin.url('/upload'),
                    headers: { 'content-type': 'application/octet-stream' },
                    body,
                    chunked,
                    timeoutMs: 60_000,
                });
                assert.equal(res.status, 200);
                assert.equal(origin.requests.length, 1);
                const got = origin.requests[0]!;
                assert.equal(got.method, 'POST');
                assert.equal(got.body.length, body.length, 'bytes that reached the origin');
                assert.equal(sha256(got.body), sha256(body), 'request body hash at the origin');
                assert.equal(res.body.length, body.length, 'bytes that came back');
                assert.equal(sha256(res.body), sha256(body), 'response body hash at the client');
            });
        });
    }

    it('keeps the client connection alive across requests', { timeout: 60_000 }, async () => {
        const origin = await startHttpOrigin();
        await withTurnpike({ config: allowLoopback() }, async (tp) => {
            const c = await rawTcp(tp.endpoint('proxy'));
            for (const p of ['/one', '/two']) {
                await c.write(`GET ${origin.url(p)} HTTP/1.1\r\nHost: ${origin.address}\r\n\r\n`);
                const r = await c.readResponse({ timeoutMs: 10_000 });
                assert.equal(r.status, 200);
                assert.equal(JSON.parse(r.body.toString()).url, p);
                assert.equal(c.peerEnded, false, `Turnpike closed the connection after ${p}`);
            }
            assert.deepEqual(
                origin.requests.map((r) => r.url),
                ['/one', '/two'],
            );
            c.destroy();
        });
    });

    it('reuses a keep-alive socket from an http.Agent', { timeout: 60_000 }, async () => {
        const origin = await startHttpOrigin();
        await withTurnpike({ config: allowLoopback() }, async (tp) => {
            const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
            try {
                const a = await proxyRequest(tp.endpoint('proxy'), { url: origin.url('/a'), agent });
                const b = await proxyRequest(tp.endpoint('proxy'), { method: 'POST', url: origin.url('/b'), agent, body: 'x=1' });
                assert.equal(a.status, 200);
                assert.equal(b.status, 200);
                assert.equal(a.localPort, b.localPort, 'both requests should use one client connection');
                assert.equal(b.json<Echoed>().body, 'x=1');
            } finally {
                agent.destroy();
            }
        });
    });

    it('answers HEAD without a body, and the connection stays usable', { timeout: 60_000 }, async () => {
        const origin = await startHttpOrigin();
        await withTurnpike({ config: allowLoopback() }, async (tp) => {
            const head = await proxyRequest(tp.endpoint('proxy'), { method: 'HEAD', url: origin.url('/h') });
            assert.equal(head.status, 200);
            assert.equal(head.body.length, 0);
            assert.ok(Number(head.headers['content-length']) > 0, 'HEAD keeps the Content-Length of the would-be body');
            assert.equal(origin.requests[0]!.method, 'HEAD');

            // A proxy that waited for HEAD's "body" would hang the next response.
            const c = await rawTcp(tp.endpoint('proxy'));
            await c.write(`HEAD ${origin.url('/h2')} HTTP/1.1\r\nHost: ${origin.address}\r\n\r\n`);
            const r1 = await c.readResponse({ method: 'HEAD', timeoutMs: 10_000 });
            assert.equal(r1.status, 200);
            await c.write(`GET ${origin.url('/g2')} HTTP/1.1\r\nHost: ${origin.address}\r\n\r\n`);
            const r2 = await c.readResponse({ timeoutMs: 10_000 });
            assert.equal(r2.status, 200);
            assert.equal(JSON.parse(r2.body.toString()).url, '/g2');
            c.destroy();
        });
    });

    it('tunnels bytes both ways through CONNECT', { timeout: 60_000 }, async () => {
        const echo = await startTcpEcho();
        await withTurnpike({ config: allowLoopback() }, async (tp) => {
            const t = await connectTunnel(tp.endpoint('proxy'), echo.address);
            assert.equal(t.status, 200);
            const c = RawConnection.wrap(t.socket);
            const data = randomBytes(1 << 20);
            await c.write(data);
            const back = await c.readBytes(data.length, 30_000);
            assert.equal(sha256(back), sha256(data));
            await c.write('second');
            assert.equal((await c.readBytes(6)).toString(), 'second');
            c.destroy();
            assert.equal(echo.connections, 1);
        });
    });

    it('honours half-close through a CONNECT tunnel', { timeout: 60_000 }, async () => {
        // The origin reads until EOF, then answers with what it got and closes.
        let originSawEnd = false;
        const origin = await startTcpServer((s) => {
            const h = new StreamHash();
            s.on('data', (d: Buffer) => h.update(d));
            s.on('end', () => {
                originSawEnd = true;
                setTimeout(() => s.end(`got ${h.bytes} bytes ${h.digest()}`), 200);
            });
        });
        await withTurnpike({ config: allowLoopback() }, async (tp) => {
            const t = await connectTunnel(tp.endpoint('proxy'), origin.address);
            assert.equal(t.status, 200);
            const c = RawConnection.wrap(t.socket);
            const data = randomBytes(300_000);
            await c.end(data); // our FIN: we are done sending, still reading
            const reply = (await c.readToEnd(10_000)).toString();
            assert.ok(originSawEnd, 'the origin should see EOF after the client half-closed');
            assert.equal(reply, `got ${data.length} bytes ${sha256(data)}`);
            c.destroy();
        });
    });

    it('an L4 tcp endpoint carries 10 MiB each way intact', { timeout: 60_000 }, async () => {
        const echo = await startTcpEcho();
        await withTurnpike({ config: tcpConfig(echo.address) }, async (tp) => {
            const ep = tp.endpoint('l4');
            const data = randomBytes(10 << 20);
            const socket = net.connect({ host: ep.host, port: ep.port, allowHalfOpen: true });
            const h = new StreamHash();
            socket.on('data', (d: Buffer) => h.update(d));
            const closed = new Promise<void>((resolve, reject) => {
                socket.on('end', resolve);
                socket.on('error', reject);
            });
            socket.end(data);
            await withTimeout(closed, 60_000, () => `only ${h.bytes} of ${data.length} bytes came back`);
            socket.destroy();
            assert.equal(h.bytes, data.length);
            assert.equal(h.digest(), sha256(data));
        });
    });
});
