/**
 * http.handle_request and http.handle_response through the http-lab test app: direct responses
 * (at once and pending), blocks, path and header rewrites, choosing the upstream, response
 * rewrites, and the recorded hook order of a direct response. On both HTTP on-ramps.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import path from 'node:path';
import { afterEach, describe, it } from 'node:test';

import { buildDir, cleanup, httpRequest, parseProxyStatus, proxyRequest, startHttpOrigin, withTurnpike } from '../src/index.js';

const lab = () => path.join(buildDir(), 'tests', 'apps', 'http-lab');

describe('HTTP request and response hooks', () => {
    afterEach(cleanup);

    async function withLab(fn: Parameters<typeof withTurnpike>[1], origins: { a: number; b: number }) {
        const config = {
            runtime: { workers: 1, trace_hooks: true },
            endpoints: [
                { name: 'web', type: 'http', listen: ['127.0.0.1:0'], routes: [{ upstream: 'a' }] },
                { name: 'proxy', type: 'http_proxy', listen: ['127.0.0.1:0'], allow_destinations: ['127.0.0.0/8'] },
            ],
            upstreams: [
                { name: 'a', servers: [`127.0.0.1:${origins.a}`] },
                { name: 'b', servers: [`127.0.0.1:${origins.b}`] },
            ],
        };
        await withTurnpike({ binary: lab(), config }, fn);
    }

    it('answers directly, at once and after a pending decision, and keeps the connection', { timeout: 30_000 }, async () => {
        const a = await startHttpOrigin();
        const b = await startHttpOrigin();
        await withLab(async (tp) => {
            const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
            const hello = await httpRequest(tp.endpoint('web'), { path: '/hello', host: 'api.test', agent });
            assert.equal(hello.status, 200);
            assert.equal(hello.headers['content-type'], 'application/json');
            assert.equal(hello.headers['x-lab'], 'direct');
            assert.deepEqual(hello.json(), { hello: 'api.test' });
            const slow = await httpRequest(tp.endpoint('web'), { path: '/slow', agent, method: 'POST', body: 'y'.repeat(100_000) });
            assert.equal(slow.status, 200);
            assert.equal(slow.text(), 'slow\n');
            const again = await httpRequest(tp.endpoint('web'), { path: '/hello', agent });
            assert.equal(again.status, 200, 'the body of the answered POST was read and dropped; the next request parsed');
            assert.equal(hello.localPort, again.localPort, 'one connection');
            agent.destroy();
            assert.equal(a.requests.length + b.requests.length, 0, 'no upstream was asked');
            const head = await httpRequest(tp.endpoint('web'), { path: '/hello', method: 'HEAD' });
            assert.equal(head.status, 200);
            assert.equal(head.body.length, 0, 'HEAD: no body');
        }, { a: a.port, b: b.port });
    });

    it('blocks with a status and Proxy-Status; rewrites path and headers; picks the upstream', { timeout: 30_000 }, async () => {
        const a = await startHttpOrigin();
        const b = await startHttpOrigin();
        await withLab(async (tp) => {
            const web = tp.endpoint('web');
            const no = await httpRequest(web, { path: '/forbidden' });
            assert.equal(no.status, 451);
            const ps = parseProxyStatus(no.headers['proxy-status']);
            assert.equal(ps[0]?.params.error, 'http_request_denied');
            assert.match(no.headers['proxy-status'] as string, /blocked by http-lab/);

            const moved = await httpRequest(web, { path: '/old/thing?x=1', headers: { 'x-secret': 's3', 'x-lab': 'from-client' } });
            assert.equal(moved.status, 200);
            const seen = a.requests.at(-1)!;
            assert.equal(seen.url, '/new/thing?x=1');
            assert.equal(seen.headers['x-secret'], undefined);
            assert.equal(seen.headers['x-lab'], '1', 'set replaces what the client sent');
            assert.equal(moved.headers['x-lab-status'], '200');

            const toB = await httpRequest(web, { path: '/pick', headers: { 'x-upstream': 'b' } });
            assert.equal(toB.status, 200);
            assert.equal(b.requests.at(-1)?.url, '/pick');
            const bad = await httpRequest(web, { path: '/pick', headers: { 'x-upstream': 'nope' } });
            assert.equal(bad.status, 400);
        }, { a: a.port, b: b.port });
    });

    it('rewrites the upstream response status and headers', { timeout: 30_000 }, async () => {
        const a = await startHttpOrigin((req, res) => {
            res.writeHead(req.url === '/missing' ? 404 : 200, { 'content-type': 'text/plain' });
            res.end('origin\n');
        });
        const b = await startHttpOrigin();
        await withLab(async (tp) => {
            const res = await httpRequest(tp.endpoint('web'), { path: '/missing' });
            assert.equal(res.status, 410);
            assert.equal(res.statusText, 'Gone');
            assert.equal(res.headers['x-lab-status'], '404');
            assert.equal(res.text(), 'origin\n');
        }, { a: a.port, b: b.port });
    });

    it('works on the forward proxy too (absolute-form requests)', { timeout: 30_000 }, async () => {
        const a = await startHttpOrigin();
        const b = await startHttpOrigin();
        await withLab(async (tp) => {
            const direct = await proxyRequest(tp.endpoint('proxy'), { url: 'http://anywhere.test/hello' });
            assert.equal(direct.status, 200);
            assert.deepEqual(direct.json(), { hello: 'anywhere.test' });
            const fwd = await proxyRequest(tp.endpoint('proxy'), { url: `http://127.0.0.1:${a.port}/old/p`, headers: { 'x-secret': '1' } });
            assert.equal(fwd.status, 200);
            assert.equal(a.requests.at(-1)?.url, '/new/p');
            assert.equal(a.requests.at(-1)?.headers['x-secret'], undefined);
            assert.equal(fwd.headers['x-lab-status'], '200');
        }, { a: a.port, b: b.port });
    });

    it('records the hook order of a direct response', { timeout: 30_000 }, async () => {
        const a = await startHttpOrigin();
        const b = await startHttpOrigin();
        await withLab(async (tp) => {
            const res = await httpRequest(tp.endpoint('web'), { path: '/hello' });
            assert.equal(res.status, 200);
            assert.deepEqual(await tp.hooksFor(res.localPort), [
                'ingress.handle_connection',
                'http.handle_request',
                'ingress.handle_connection_close',
            ]);
        }, { a: a.port, b: b.port });
    });
});
