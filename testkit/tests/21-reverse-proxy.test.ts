/**
 * The http on-ramp as a reverse proxy: routes to upstream groups, round robin, Host kept, Via and
 * X-Forwarded-*, bad requests, and upstream faults (refused, reset before headers, reset mid-body,
 * an idempotent retry on another server, a POST not retried).
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { afterEach, describe, it } from 'node:test';

import {
    cleanup,
    closedPort,
    httpRequest,
    parseProxyStatus,
    rawHttp,
    rawTcp,
    track,
    waitFor,
    startHttpOrigin,
    startTcpServer,
    withTurnpike,
    type HttpOrigin,
} from '../src/index.js';

function config(upstreams: { name: string; servers: string[]; retries?: number }[], routes: object[], extra: object = {}) {
    return {
        runtime: { workers: 1, trace_hooks: true },
        endpoints: [{ name: 'web', type: 'http', listen: ['127.0.0.1:0'], routes, ...extra }],
        upstreams,
    };
}

const at = (o: { port: number }) => `127.0.0.1:${o.port}`;
const seenBy = (o: HttpOrigin) => o.requests.length;

describe('reverse proxy (http endpoint)', () => {
    afterEach(cleanup);

    it('routes by path prefix, host and method; round robin over a group; no route is 404', { timeout: 30_000 }, async () => {
        const [a1, a2, b] = [await startHttpOrigin(), await startHttpOrigin(), await startHttpOrigin()];
        const cfg = config(
            [
                { name: 'api', servers: [at(a1), at(a2)] },
                { name: 'static', servers: [at(b)] },
            ],
            [
                { path_prefix: '/api/', upstream: 'api' },
                { host: '*.static.test', upstream: 'static' },
                { methods: ['DELETE'], upstream: 'static' },
            ],
        );
        await withTurnpike({ config: cfg }, async (tp) => {
            const web = tp.endpoint('web');
            for (let i = 0; i < 4; i++) {
                const res = await httpRequest(web, { path: `/api/item/${i}?q=${i}` });
                assert.equal(res.status, 200, res.text());
                assert.equal(res.json<{ url: string }>().url, `/api/item/${i}?q=${i}`);
            }
            assert.equal(seenBy(a1), 2, 'round robin: half to each');
            assert.equal(seenBy(a2), 2);
            assert.equal((await httpRequest(web, { path: '/x', host: 'img.static.test' })).status, 200);
            assert.equal((await httpRequest(web, { path: '/x', method: 'DELETE' })).status, 200);
            assert.equal(seenBy(b), 2);
            const none = await httpRequest(web, { path: '/nothing' });
            assert.equal(none.status, 404);
            assert.equal(parseProxyStatus(none.headers['proxy-status'])[0]?.params.error, 'destination_not_found');
            const apex = await httpRequest(web, { path: '/x', host: 'static.test' });
            assert.equal(apex.status, 404, '*.static.test does not match static.test itself');
        });
    });

    it('keeps Host, adds Via both ways and X-Forwarded-* (append by default, replace on request)', { timeout: 30_000 }, async () => {
        const o = await startHttpOrigin();
        const routes = [{ upstream: 'o' }];
        await withTurnpike({ config: config([{ name: 'o', servers: [at(o)] }], routes) }, async (tp) => {
            const res = await httpRequest(tp.endpoint('web'), {
                path: '/h',
                host: 'app.example:8443',
                headers: { 'x-forwarded-for': '203.0.113.7', connection: 'keep-alive, x-drop', 'x-drop': 'hop' },
            });
            assert.equal(res.status, 200);
            assert.equal(res.headers.via, '1.1 turnpike');
            const seen = o.requests[0]!;
            assert.equal(seen.headers.host, 'app.example:8443', 'the client Host goes to the origin');
            assert.equal(seen.headers.via, '1.1 turnpike');
            assert.equal(seen.headers['x-forwarded-for'], '203.0.113.7, 127.0.0.1');
            assert.equal(seen.headers['x-forwarded-proto'], 'http');
            assert.equal(seen.headers['x-forwarded-host'], 'app.example:8443');
            assert.equal(seen.headers['x-drop'], undefined, 'a header named in Connection is hop-by-hop');
        });
        const forwarding = { x_forwarded: 'replace', forwarded: true, via_name: 'edge-1' };
        await withTurnpike({ config: config([{ name: 'o', servers: [at(o)] }], routes, { forwarding }) }, async (tp) => {
            await httpRequest(tp.endpoint('web'), { path: '/r', host: 'app.example', headers: { 'x-forwarded-for': '203.0.113.7' } });
            const seen = o.requests.at(-1)!;
            assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1', 'replace trusts nothing that came');
            assert.equal(seen.headers.forwarded, 'for=127.0.0.1;proto=http;host=app.example');
            assert.equal(seen.headers.via, '1.1 edge-1');
        });
    });

    it('serves several requests on one client connection (keep-alive both ways)', { timeout: 30_000 }, async () => {
        const o = await startHttpOrigin();
        await withTurnpike({ config: config([{ name: 'o', servers: [at(o)] }], [{ upstream: 'o' }]) }, async (tp) => {
            const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
            const ports = new Set<number>();
            for (let i = 0; i < 5; i++) {
                const res = await httpRequest(tp.endpoint('web'), { path: `/k${i}`, agent, method: i % 2 ? 'POST' : 'GET', body: i % 2 ? 'x'.repeat(1000) : undefined });
                assert.equal(res.status, 200);
                ports.add(res.localPort);
            }
            agent.destroy();
            assert.equal(ports.size, 1, 'one client connection');
            assert.equal(new Set(o.connectionPorts).size, 1, 'one upstream connection');
        });
    });

    it('the worker pool shares upstream connections between client connections; max_total caps them', { timeout: 30_000 }, async () => {
        const o = await startHttpOrigin();
        const slow = await startHttpOrigin((_req, res) => {
            setTimeout(() => res.end('slow'), 800);
        });
        const cfg = config(
            [
                { name: 'o', servers: [at(o)] },
                { name: 's', servers: [at(slow)], keepalive: { max_total: 1 } } as never,
            ],
            [{ path_prefix: '/slow', upstream: 's' }, { upstream: 'o' }],
        );
        await withTurnpike({ config: cfg }, async (tp) => {
            const web = tp.endpoint('web');
            const ports = new Set<number>();
            for (let i = 0; i < 5; i++) {
                const res = await httpRequest(web, { path: `/p${i}` }); // a new client connection each time
                assert.equal(res.status, 200);
                ports.add(res.localPort);
            }
            assert.equal(ports.size, 5, 'five client connections');
            assert.equal(new Set(o.connectionPorts).size, 1, 'one upstream connection served them all');
            const [a, b] = await Promise.all([httpRequest(web, { path: '/slow/1' }), httpRequest(web, { path: '/slow/2' })]);
            const statuses = [a.status, b.status].sort();
            assert.deepEqual(statuses, [200, 503], 'max_total 1: the second concurrent request is refused');
            const refused = a.status === 503 ? a : b;
            assert.equal(parseProxyStatus(refused.headers['proxy-status'])[0]?.params.error, 'connection_limit_reached');
        });
    });

    it('passes trailers both ways (chunked request and response)', { timeout: 30_000 }, async () => {
        const o = await startHttpOrigin((_req, res) => {
            res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-digest' });
            res.write('part one, ');
            res.addTrailers({ 'x-digest': 'sha-256=abc', 'content-length': '99' });
            res.end('part two');
        });
        await withTurnpike({ config: config([{ name: 'o', servers: [at(o)] }], [{ upstream: 'o' }]) }, async (tp) => {
            const web = tp.endpoint('web');
            const got = await new Promise<{ body: string; trailers: NodeJS.Dict<string> }>((resolve, reject) => {
                const req = http.request({ host: web.host, port: web.port, method: 'POST', path: '/t', headers: { trailer: 'x-req-sum', 'transfer-encoding': 'chunked' } });
                req.once('error', reject);
                req.once('response', (res) => {
                    let body = '';
                    res.on('data', (d: Buffer) => (body += d.toString()));
                    res.once('end', () => resolve({ body, trailers: res.trailers }));
                });
                req.write('request body');
                req.addTrailers({ 'x-req-sum': '42' });
                req.end();
            });
            assert.equal(got.body, 'part one, part two');
            assert.equal(got.trailers['x-digest'], 'sha-256=abc', 'the response trailer came through');
            assert.equal(got.trailers['content-length'], undefined, 'a framing field is not a trailer');
            const seen = o.requests.at(-1)!;
            assert.equal(seen.body.toString(), 'request body');
            assert.equal(seen.trailers['x-req-sum'], '42', 'the request trailer came through');
        });
    });

    it('limits.max_body_size: 413 for a Content-Length over it at once, and for a chunked body that grows past it', { timeout: 30_000 }, async () => {
        const o = await startHttpOrigin();
        const cfg = config([{ name: 'o', servers: [at(o)] }], [{ upstream: 'o' }], { limits: { max_body_size: '1KiB' } });
        await withTurnpike({ config: cfg }, async (tp) => {
            const web = tp.endpoint('web');
            assert.equal((await httpRequest(web, { path: '/ok', method: 'POST', body: 'x'.repeat(1024) })).status, 200);
            const big = await httpRequest(web, { path: '/big', method: 'POST', body: 'x'.repeat(2000) });
            assert.equal(big.status, 413);
            assert.match(String(big.headers['proxy-status']), /max_body_size/);
            const grown = await httpRequest(web, { path: '/grown', method: 'POST', body: 'y'.repeat(3000), chunked: true });
            assert.equal(grown.status, 413);
            assert.ok(!o.requests.some((r) => r.url === '/big' || r.url === '/grown'), 'no oversized body reached the origin complete');
        });
    });

    it('balance: hash by a header keeps a key on one server; least_conn avoids the busy one', { timeout: 30_000 }, async () => {
        const [a, b] = [await startHttpOrigin(), await startHttpOrigin()];
        const slowA = await startHttpOrigin((req, res) => {
            setTimeout(() => res.end('a'), req.url?.startsWith('/hold') ? 5000 : 0);
        });
        const fastB = await startHttpOrigin();
        const cfg = config(
            [
                { name: 'h', servers: [at(a), at(b)], balance: 'hash', hash_key: 'header:x-user' } as never,
                { name: 'l', servers: [at(slowA), at(fastB)], balance: 'least_conn' } as never,
            ],
            [{ path_prefix: '/lc', upstream: 'l' }, { path_prefix: '/hold', upstream: 'l' }, { upstream: 'h' }],
        );
        await withTurnpike({ config: cfg }, async (tp) => {
            const web = tp.endpoint('web');
            // Sixteen keys: with four, the ring (which depends on the servers' random ports) put all
            // of them on one server about one run in eight.
            const users = Array.from({ length: 16 }, (_, i) => `user${i}`);
            for (const user of users) {
                const before = [a.requests.length, b.requests.length];
                for (let i = 0; i < 4; i++) assert.equal((await httpRequest(web, { path: `/u/${user}/${i}`, headers: { 'x-user': user } })).status, 200);
                const grew = [a.requests.length - before[0]!, b.requests.length - before[1]!];
                assert.ok(grew.includes(4) && grew.includes(0), `${user}: all four on one server (${grew})`);
            }
            assert.ok(a.requests.length > 0 && b.requests.length > 0, 'the keys spread over both servers');
            const held = httpRequest(web, { path: '/hold' }); // least_conn starts with the first server: it stays busy
            await waitFor(() => slowA.requests.some((r) => r.url === '/hold'), { timeoutMs: 10_000, message: () => '/hold never reached the first server' });
            const before = fastB.requests.length;
            for (let i = 0; i < 3; i++) assert.equal((await httpRequest(web, { path: `/lc/${i}` })).status, 200);
            assert.equal(fastB.requests.length - before, 3, 'every request went to the server with none in flight');
            assert.equal((await held).status, 200);
        });
    });

    it('bad requests: no Host, two Hosts, CONNECT', { timeout: 30_000 }, async () => {
        const o = await startHttpOrigin();
        await withTurnpike({ config: config([{ name: 'o', servers: [at(o)] }], [{ upstream: 'o' }]) }, async (tp) => {
            const web = tp.endpoint('web');
            const noHost = await rawHttp(web, 'GET / HTTP/1.1\r\n\r\n');
            assert.equal(noHost.response?.status, 400);
            const twoHosts = await rawHttp(web, 'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n');
            assert.equal(twoHosts.response?.status, 400);
            const connect = await rawHttp(web, 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n');
            assert.equal(connect.response?.status, 405);
            assert.equal(o.requests.length, 0);
        });
    });

    it('upstream faults: refused, reset before headers, reset mid-body; a GET is retried elsewhere, a POST is not', { timeout: 30_000 }, async () => {
        const good = await startHttpOrigin();
        const refused = await closedPort();
        const resetter = await startTcpServer((s) => s.on('data', () => s.resetAndDestroy()));
        const midBody = await startTcpServer((s) =>
            s.once('data', () => {
                s.write('HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n' + 'x'.repeat(1000));
                setTimeout(() => s.resetAndDestroy(), 50);
            }),
        );
        const cfg = config(
            [
                { name: 'refusing', servers: [`127.0.0.1:${refused}`], retries: 0 },
                { name: 'resetting', servers: [at(resetter)], retries: 0 },
                { name: 'cut', servers: [at(midBody)], retries: 0 },
                { name: 'mixed', servers: [`127.0.0.1:${refused}`, at(good)], retries: 1 },
            ],
            [
                { path_prefix: '/refused', upstream: 'refusing' },
                { path_prefix: '/reset', upstream: 'resetting' },
                { path_prefix: '/cut', upstream: 'cut' },
                { path_prefix: '/mixed', upstream: 'mixed' },
            ],
        );
        await withTurnpike({ config: cfg }, async (tp) => {
            const web = tp.endpoint('web');
            const r1 = await httpRequest(web, { path: '/refused' });
            assert.equal(r1.status, 502);
            assert.equal(parseProxyStatus(r1.headers['proxy-status'])[0]?.params.error, 'connection_refused');
            const r2 = await httpRequest(web, { path: '/reset' });
            assert.equal(r2.status, 502, r2.text());
            assert.ok(r2.headers['proxy-status'], 'Proxy-Status on a reset before headers');
            await assert.rejects(httpRequest(web, { path: '/cut' }), 'a cut body is an aborted transfer, never a complete one');
            // Round robin starts with the refusing server: the GET goes on to the good one.
            const before = good.requests.length;
            const g = await httpRequest(web, { path: '/mixed/get' });
            assert.equal(g.status, 200, 'the idempotent GET was retried on the other server');
            assert.equal(good.requests.length, before + 1);
            await tp.waitForLog({ msg: 'retrying on another server' });
            // The next pick is the good server; the one after, the refusing one: a POST is not retried.
            assert.equal((await httpRequest(web, { path: '/mixed/get2' })).status, 200);
            const p = await httpRequest(web, { path: '/mixed/post', method: 'POST', body: 'data' });
            assert.equal(p.status, 502, 'a POST is not retried');
        });
    });

    it('records the hook order of a proxied request', { timeout: 30_000 }, async () => {
        const o = await startHttpOrigin();
        await withTurnpike({ config: config([{ name: 'o', servers: [at(o)] }], [{ upstream: 'o' }]) }, async (tp) => {
            const res = await httpRequest(tp.endpoint('web'), { path: '/order' });
            assert.equal(res.status, 200);
            assert.deepEqual(await tp.hooksFor(res.localPort), [
                'ingress.handle_connection',
                'http.handle_request',
                'egress.handle_connection',
                'egress.handle_connection_established',
                'http.handle_response',
                'ingress.handle_connection_close',
            ]);
        });
    });
});

describe('reverse proxy: timeouts and health', () => {
    afterEach(cleanup);

    it('a slow origin gets 504 http_response_timeout; a stalled request body 408', { timeout: 30_000 }, async () => {
        const silent = await startTcpServer(() => undefined); // accepts, reads, never answers
        const o = await startHttpOrigin();
        const cfg = config(
            [
                { name: 'slow', servers: [at(silent)], retries: 0 },
                { name: 'o', servers: [at(o)] },
            ],
            [{ path_prefix: '/slow', upstream: 'slow' }, { upstream: 'o' }],
            { timeouts: { response: '500ms', body_read: '500ms' } },
        );
        await withTurnpike({ config: cfg }, async (tp) => {
            const web = tp.endpoint('web');
            const t0 = Date.now();
            const r = await httpRequest(web, { path: '/slow' });
            assert.equal(r.status, 504);
            assert.equal(parseProxyStatus(r.headers['proxy-status'])[0]?.params.error, 'http_response_timeout');
            assert.ok(Date.now() - t0 >= 450, 'after timeouts.response');
            const stalled = await rawHttp(web, 'POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789', { timeoutMs: 5000 });
            assert.equal(stalled.response?.status, 408, stalled.text);
            assert.match(stalled.text, /body_read/);
            await tp.waitForLog({ msg: 'close', reason: 'body_timeout' });
        });
    });

    it('health checks take a dead server out and bring it back; passive failures count too', { timeout: 60_000 }, async () => {
        const a = await startHttpOrigin();
        let b: HttpOrigin = await startHttpOrigin();
        const bPort = b.port;
        const cfg = config(
            [{ name: 'g', servers: [at(a), `127.0.0.1:${bPort}`], retries: 0, health: { check: 'http', path: '/health', interval: '200ms', timeout: '200ms', rise: 2, fall: 2 } } as never],
            [{ upstream: 'g' }],
        );
        await withTurnpike({ config: cfg }, async (tp) => {
            const web = tp.endpoint('web');
            await b.close();
            await tp.waitForLog({ msg: 'upstream health', server: `127.0.0.1:${bPort}`, healthy: false }, 10_000);
            const before = a.requests.filter((r) => r.url.startsWith('/req')).length;
            for (let i = 0; i < 6; i++) assert.equal((await httpRequest(web, { path: `/req${i}` })).status, 200, 'no request goes to the dead server');
            assert.equal(a.requests.filter((r) => r.url.startsWith('/req')).length, before + 6);
            b = await startHttpOrigin(undefined, { port: bPort });
            await tp.waitForLog({ msg: 'upstream health', server: `127.0.0.1:${bPort}`, healthy: true }, 10_000);
            for (let i = 0; i < 4; i++) await httpRequest(web, { path: `/back${i}` });
            assert.ok(b.requests.some((r) => r.url.startsWith('/back')), 'it is back in rotation');
        });
    });
});

describe('protocol upgrades (WebSocket)', () => {
    afterEach(cleanup);

    /** An origin that accepts `Upgrade: echo-proto` with a 101 and then echoes bytes, upper-cased. */
    async function upgradeOrigin() {
        const server = http.createServer((_req, res) => {
            res.writeHead(426, { 'content-length': '0' });
            res.end();
        });
        server.on('upgrade', (_req, socket, head) => {
            socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo-proto\r\nConnection: Upgrade\r\n\r\nhello-from-origin|');
            if (head.length) socket.write(head.toString().toUpperCase());
            socket.on('data', (d: Buffer) => socket.write(d.toString().toUpperCase()));
            socket.on('end', () => socket.end()); // the client's half-close comes through: finish too
        });
        await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
        track('upgrade origin', () => {
            server.closeAllConnections();
            server.close();
        });
        return (server.address() as { port: number }).port;
    }

    it('a 101 turns the exchange into a tunnel, on the reverse proxy and the forward proxy', { timeout: 30_000 }, async () => {
        const port = await upgradeOrigin();
        const cfg = {
            runtime: { workers: 1 },
            endpoints: [
                { name: 'web', type: 'http', listen: ['127.0.0.1:0'], routes: [{ upstream: 'o' }] },
                { name: 'proxy', type: 'http_proxy', listen: ['127.0.0.1:0'], allow_destinations: ['127.0.0.0/8'] },
            ],
            upstreams: [{ name: 'o', servers: [`127.0.0.1:${port}`] }],
        };
        await withTurnpike({ config: cfg }, async (tp) => {
            for (const [ep, target] of [['web', '/ws'], ['proxy', `http://127.0.0.1:${port}/ws`]] as const) {
                const c = await rawTcp(tp.endpoint(ep));
                c.write(`GET ${target} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: Upgrade\r\nUpgrade: echo-proto\r\n\r\n`);
                const head = (await c.readUntil('hello-from-origin|')).toString('latin1');
                assert.match(head, /^HTTP\/1\.1 101 /, head);
                assert.match(head, /\r\nUpgrade: echo-proto\r\n/i);
                assert.match(head, /\r\nConnection: upgrade\r\n/i);
                c.write('ping over the tunnel');
                await c.readUntil('PING OVER THE TUNNEL');
                c.destroy();
            }
        });
    });

    it('a declined upgrade is a plain response, and the connection closes after it', { timeout: 30_000 }, async () => {
        const refuser = await startTcpServer((sock) =>
            sock.once('data', () => sock.write('HTTP/1.1 426 Upgrade Required\r\nContent-Length: 4\r\n\r\nnope')),
        );
        const cfg = {
            runtime: { workers: 1 },
            endpoints: [{ name: 'web', type: 'http', listen: ['127.0.0.1:0'], routes: [{ upstream: 'o' }] }],
            upstreams: [{ name: 'o', servers: [at(refuser)] }],
        };
        await withTurnpike({ config: cfg }, async (tp) => {
            const r = await rawHttp(tp.endpoint('web'), 'GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo-proto\r\n\r\n');
            assert.equal(r.status, 426);
            assert.equal(r.response?.body.toString(), 'nope');
            assert.ok(r.closed, 'closed after a declined upgrade');
        });
    });
});
