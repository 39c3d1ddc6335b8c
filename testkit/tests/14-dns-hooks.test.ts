/** egress.dns_resolve_override and egress.handle_upstream_ips, through the hook-lab test app. */
import assert from 'node:assert/strict';
import path from 'node:path';
import { afterEach, describe, it } from 'node:test';

import { buildDir, cleanup, connectTunnel, parseProxyStatus, startTcpEcho, withTurnpike } from '../src/index.js';

const lab = () => path.join(buildDir(), 'tests', 'apps', 'hook-lab');

function config(app: Record<string, unknown>) {
    return {
        runtime: { workers: 1, trace_hooks: true },
        endpoints: [{ name: 'proxy', type: 'http_proxy', listen: ['127.0.0.1:0'], allow_destinations: ['127.0.0.0/8'], app }],
        app: { banner: 'dns' },
    };
}

describe('DNS hooks', () => {
    afterEach(cleanup);

    it('dns_resolve_override answers a name itself; the hook order shows it before the egress hook', { timeout: 30_000 }, async () => {
        const echo = await startTcpEcho();
        await withTurnpike({ binary: lab(), config: config({ dns_name: 'lab.test', dns_answer: ['127.0.0.1:0'] }) }, async (tp) => {
            const t = await connectTunnel(tp.endpoint('proxy'), `lab.test:${echo.port}`);
            assert.equal(t.status, 200);
            t.socket.write('hello');
            const got = await new Promise<string>((r) => t.socket.once('data', (d: Buffer) => r(d.toString())));
            assert.equal(got, 'hello');
            t.socket.destroy();
            const hooks = await tp.hooksFor(t.localPort);
            assert.deepEqual(hooks, [
                'ingress.handle_connection',
                'http.handle_proxy_connect_request',
                'egress.dns_resolve_override',
                'egress.handle_upstream_ips',
                'egress.handle_connection',
                'egress.handle_connection_established',
                'http.handle_proxy_connect_response',
                'ingress.handle_connection_close',
            ]);
            const est = await tp.waitForLog({ msg: 'hook', hook: 'egress.handle_connection_established' });
            assert.equal(est.upstream, `127.0.0.1:${echo.port}`);
        });
    });

    it('dns_resolve_override may refuse: 502 with Proxy-Status dns_error and the details', { timeout: 30_000 }, async () => {
        await withTurnpike({ binary: lab(), config: config({ dns_name: 'lab.test', dns_refuse: true }) }, async (tp) => {
            const t = await connectTunnel(tp.endpoint('proxy'), 'lab.test:443');
            assert.equal(t.status, 502);
            const ps = parseProxyStatus(t.headers['proxy-status']);
            assert.equal(ps[0]?.params.error, 'dns_error', t.headers['proxy-status']);
            assert.match(t.headers['proxy-status'] ?? '', /refused by hook-lab/);
        });
    });

    it('handle_upstream_ips reorders the addresses; a refused first one falls over to the next at once', { timeout: 30_000 }, async () => {
        const echo = await startTcpEcho(); // on 127.0.0.1 only: 127.0.0.2 refuses
        const app = { dns_name: 'two.test', dns_answer: ['127.0.0.1:0', '127.0.0.2:0'], reverse_ips: true };
        await withTurnpike({ binary: lab(), config: config(app) }, async (tp) => {
            const t0 = Date.now();
            const t = await connectTunnel(tp.endpoint('proxy'), `two.test:${echo.port}`);
            assert.equal(t.status, 200);
            assert.ok(Date.now() - t0 < 200, 'a refusal starts the next attempt without the attempt delay');
            t.socket.destroy();
            const tried = await tp.waitForLog({ msg: 'hook', hook: 'egress.handle_connection' });
            assert.equal(tried.upstream, `127.0.0.2:${echo.port}`, 'reversed: 127.0.0.2 first');
            const est = await tp.waitForLog({ msg: 'hook', hook: 'egress.handle_connection_established' });
            assert.equal(est.upstream, `127.0.0.1:${echo.port}`);
        });
    });

    it('tcp_connect_override hands over a socket the app connected itself', { timeout: 30_000 }, async () => {
        const echo = await startTcpEcho();
        await withTurnpike({ binary: lab(), config: config({ connect_override: true }) }, async (tp) => {
            const t = await connectTunnel(tp.endpoint('proxy'), `127.0.0.1:${echo.port}`);
            assert.equal(t.status, 200);
            t.socket.write('over');
            const got = await new Promise<string>((r) => t.socket.once('data', (d: Buffer) => r(d.toString())));
            assert.equal(got, 'over');
            t.socket.destroy();
            await tp.waitForLog({ msg: 'app', event: 'connect_override', addr: `127.0.0.1:${echo.port}` });
            const est = await tp.waitForLog({ msg: 'hook', hook: 'egress.handle_connection_established' });
            assert.equal(est.upstream, `127.0.0.1:${echo.port}`);
        });
    });
});
