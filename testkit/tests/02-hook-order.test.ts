/** The order in which hooks fire, from Turnpike's trace log (runtime.trace_hooks: true). */
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';

import { cleanup, connectTunnel, rawTcp, RawConnection, startTcpEcho, withTurnpike, type Turnpike } from '../src/index.js';
import { CONNECT_ORDER, LOOPBACK, proxyConfig, tcpConfig } from './common.js';

describe('hook order', () => {
    afterEach(cleanup);

    it('a CONNECT tunnel passes the hooks in order', { timeout: 60_000 }, async () => {
        const echo = await startTcpEcho();
        await withTurnpike({ config: proxyConfig({ allow_destinations: LOOPBACK }) }, async (tp) => {
            const t = await connectTunnel(tp.endpoint('proxy'), echo.address);
            assert.equal(t.status, 200);
            const c = RawConnection.wrap(t.socket);
            await c.write('ping');
            assert.equal((await c.readBytes(4)).toString(), 'ping');
            await c.end();
            await c.waitForPeerClose();
            c.destroy();
            assert.deepEqual(await tp.hooksFor(t.localPort), CONNECT_ORDER);
            const trace = await tp.connectionFor(t.localPort);
            assert.equal(trace.close.endpoint, 'proxy');
            assert.equal(trace.peer, `127.0.0.1:${t.localPort}`);
            // 4 bytes echoed plus the 200 response head went to the client.
            assert.ok(Number(trace.close.bytes_to_client) >= 4, JSON.stringify(trace.close));
            assert.ok(Number(trace.close.bytes_from_client) >= 4, JSON.stringify(trace.close));
        });
    });

    it('a plain L4 tcp connection passes the hooks in order', { timeout: 60_000 }, async () => {
        const echo = await startTcpEcho();
        await withTurnpike({ config: tcpConfig(echo.address) }, async (tp) => {
            const c = await rawTcp(tp.endpoint('l4'));
            await c.write('hello');
            assert.equal((await c.readBytes(5)).toString(), 'hello');
            await c.end();
            await c.waitForPeerClose();
            c.destroy();
            assert.deepEqual(await tp.hooksFor(c.localPort), [
                'ingress.handle_connection',
                'egress.handle_connection',
                'egress.handle_connection_established',
                'ingress.handle_connection_close',
            ]);
            const trace = await tp.connectionFor(c.localPort);
            assert.equal(trace.close.endpoint, 'l4');
            assert.equal(trace.close.bytes_from_client, 5);
            assert.equal(trace.close.bytes_to_client, 5);
            assert.equal(typeof trace.close.duration_us, 'number');
        });
    });

    it('each connection has its own trace', { timeout: 60_000 }, async () => {
        const echo = await startTcpEcho();
        await withTurnpike({ config: tcpConfig(echo.address) }, async (tp) => {
            const a = await rawTcp(tp.endpoint('l4'));
            const b = await rawTcp(tp.endpoint('l4'));
            await b.write('b');
            await b.readBytes(1);
            b.destroy();
            await a.write('a');
            await a.readBytes(1);
            a.destroy();
            const ta = await tp.connectionFor(a.localPort);
            const tb = await tp.connectionFor(b.localPort);
            assert.notEqual(ta.conn, tb.conn);
            assert.equal(ta.hooks[0], 'ingress.handle_connection');
            assert.equal(tb.hooks.at(-1), 'ingress.handle_connection_close');
            assert.equal(ta.hooks.length, 4, ta.hooks.join(' -> '));
            assert.equal(tb.hooks.length, 4, tb.hooks.join(' -> '));
        });
    });

    it('logs one JSON object per line: ready with the real ports, close per connection', { timeout: 60_000 }, async () => {
        const echo = await startTcpEcho();
        let stopped: Turnpike | undefined;
        await withTurnpike({ config: tcpConfig(echo.address) }, async (tp) => {
            stopped = tp;
            const ready = tp.findLog({ msg: 'ready' })!;
            assert.equal(ready.level, 'info');
            assert.equal(ready.pid, tp.pid);
            const ep = tp.endpoint('l4');
            assert.equal(ep.type, 'tcp');
            assert.deepEqual(ep.listen, [`127.0.0.1:${ep.port}`]);
            assert.notEqual(ep.port, 0);
            const c = await rawTcp(ep);
            await c.write('x');
            await c.readBytes(1);
            c.destroy();
            const close = (await tp.connectionFor(c.localPort)).close;
            assert.equal(close.endpoint, 'l4');
            assert.equal(close.peer, `127.0.0.1:${c.localPort}`);
            for (const key of ['conn', 'reason', 'bytes_from_client', 'bytes_to_client', 'duration_us']) {
                assert.ok(key in close, `close line lacks ${key}: ${JSON.stringify(close)}`);
            }
        });
        // Stopped by now, so this covers draining and shutdown too.
        assert.deepEqual(stopped!.otherStderrLines, [], 'every stderr line is a JSON object');
    });

    it('logs no hook lines when runtime.trace_hooks is off', { timeout: 60_000 }, async () => {
        const echo = await startTcpEcho();
        await withTurnpike({ config: tcpConfig(echo.address, {}, { runtime: { trace_hooks: false } }) }, async (tp) => {
            const c = await rawTcp(tp.endpoint('l4'));
            await c.write('x');
            await c.readBytes(1);
            c.destroy();
            await tp.waitForLog({ msg: 'close' });
            assert.equal(tp.logs.filter((l) => l.msg === 'hook').length, 0);
            await assert.rejects(tp.hooksFor(c.localPort), /trace_hooks/);
        });
    });
});
