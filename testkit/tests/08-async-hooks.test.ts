/**
 * The hook model beyond the examples, through the hook-lab test app (tests/apps/hook-lab): decisions
 * that complete later (tp_pending_new / tp_pending_complete on a libuv timer), decision timeouts and
 * late completions, typed extensions of all three kinds, egress redirects, the CONNECT response hook,
 * the close hook's statistics, and global versus per-endpoint app settings.
 *
 * hook-lab logs its own JSON lines ({"msg":"app","event":...}) next to Turnpike's; the tests read
 * both. Every test also checks hook-lab's "stop" line: every extension it saw created was freed, and
 * every pending handle it made was completed exactly once.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { afterEach, describe, it } from 'node:test';

import {
    buildDir,
    cleanup,
    closedPort,
    connectTunnel,
    peerPort,
    proxyStatusParams,
    RawConnection,
    rawTcp,
    sleep,
    startTcpEcho,
    withTurnpike,
    type Endpoint,
    type LogLine,
    type TunnelResult,
    type Turnpike,
} from '../src/index.js';
import { assertStillServes, CONNECT_ORDER, LOOPBACK } from './common.js';

const HOOK_LAB = () => path.join(buildDir(), 'tests', 'apps', 'hook-lab');

type Obj = Record<string, unknown>;


/** An http_proxy endpoint on 127.0.0.1:0 that may reach loopback, with hook-lab settings `app`. */
function endpoint(name: string, app: Obj = {}, extra: Obj = {}): Obj {
    return { name, type: 'http_proxy', listen: ['127.0.0.1:0'], allow_destinations: LOOPBACK, app, ...extra };
}

/** A hook-lab config: one worker (unless told), hook tracing on, a banner. */
function labConfig(endpoints: Obj[], options: { workers?: number; banner?: string } = {}): Obj {
    return {
        runtime: { workers: options.workers ?? 1, trace_hooks: true },
        endpoints,
        app: { banner: options.banner ?? 'lab' },
    };
}

/**
 * Runs `fn` with hook-lab (stopped afterwards with the clean-exit and sanitizer checks), then checks
 * the app's stop line: extensions and pending handles all accounted for.
 */
async function withLab(config: Obj, fn: (tp: Turnpike) => Promise<void>): Promise<LogLine> {
    let ran: Turnpike | undefined;
    await withTurnpike({ binary: HOOK_LAB(), config }, async (tp) => {
        ran = tp;
        await fn(tp);
    });
    const stop = ran!.findLog({ msg: 'app', event: 'stop' });
    assert.ok(stop, `hook-lab logged no stop line:\n${ran!.stderrTail(20)}`);
    for (const kind of ['endpoint_ext', 'conn_ext', 'request_ext']) {
        assert.equal(stop[`${kind}_free`], stop[`${kind}_init`], `${kind}: every init has its free: ${JSON.stringify(stop)}`);
    }
    assert.equal(stop.pending_completed, stop.pending_started, `every pending handle completed once: ${JSON.stringify(stop)}`);
    return stop;
}

/** hook-lab's lines with this event (and, when given, for this connection). */
function appEvents(tp: Turnpike, event: string, conn?: number): LogLine[] {
    return tp.logs.filter((l) => l.msg === 'app' && l.event === event && (conn === undefined || l.conn === conn));
}

/** Turnpike's id of the connection whose client used local port `port` (from its first hook line). */
async function connId(tp: Turnpike, port: number): Promise<number> {
    const line = await tp.waitForLog((l) => l.msg === 'hook' && peerPort(l.peer) === port);
    return Number(line.conn);
}

/** The fields of hook-lab's X-Hook-Lab response header. */
function labHeader(value: string | undefined): { conn: number; endpointConns: number; request: number; status: number; upstream: string; banner: string } {
    const m = /^conn=(\d+) endpoint-conns=(\d+) request=(\d+) status=(\d+) upstream=(\S+) banner=(.*)$/.exec(value ?? '');
    assert.ok(m, `X-Hook-Lab header missing or malformed: ${JSON.stringify(value)}`);
    return { conn: Number(m[1]), endpointConns: Number(m[2]), request: Number(m[3]), status: Number(m[4]), upstream: m[5]!, banner: m[6]! };
}

/** Sends a line through a tunnel to an echo origin and reads it back. */
async function assertEchoes(t: TunnelResult, text = 'through the tunnel'): Promise<void> {
    const c = RawConnection.wrap(t.socket);
    await c.write(text);
    assert.equal((await c.readBytes(text.length)).toString(), text);
    await c.end();
    await c.waitForPeerClose();
    c.destroy();
}

/** Times a CONNECT. */
async function timedConnect(ep: Endpoint, authority: string): Promise<{ t: TunnelResult; ms: number }> {
    const start = performance.now();
    const t = await connectTunnel(ep, authority);
    return { t, ms: performance.now() - start };
}

/** Seconds between two Turnpike log lines (their `ts`). */
const between = (a: LogLine, b: LogLine) => Number(b.ts) - Number(a.ts);

describe('async hooks (hook-lab)', () => {
    afterEach(cleanup);

    it('an ingress decision pending 300 ms, then allowed: the CONNECT works, 300 ms late', { timeout: 60_000 }, async () => {
        const echo = await startTcpEcho();
        await withLab(labConfig([endpoint('proxy', { ingress_delay: '300ms' })]), async (tp) => {
            const { t, ms } = await timedConnect(tp.endpoint('proxy'), echo.address);
            assert.equal(t.status, 200, `${t.status} ${t.body}`);
            assert.ok(ms >= 280, `the CONNECT was answered after ${ms.toFixed(0)} ms, before the ingress decision`);
            await assertEchoes(t);

            const conn = await connId(tp, t.localPort);
            assert.deepEqual(await tp.hooksFor(t.localPort), CONNECT_ORDER);
            // Turnpike did not act on the CONNECT before the decision: its hook came 300 ms later.
            const hookLine = (hook: string) => tp.findLog({ msg: 'hook', conn, hook })!;
            const waited = between(hookLine('ingress.handle_connection'), hookLine('http.handle_proxy_connect_request'));
            assert.ok(waited >= 0.28, `connect request hook ${waited}s after the ingress hook`);
            assert.deepEqual(
                appEvents(tp, 'pending', conn).map((l) => [l.hook, l.delay_ms]),
                [['ingress.handle_connection', 300]],
            );
            assert.deepEqual(
                appEvents(tp, 'completed', conn).map((l) => [l.hook, l.rc, l.verdict]),
                [['ingress.handle_connection', 0, 'allow']],
            );
            assert.equal(appEvents(tp, 'late_completion').length, 0);
        });
    });

    it('an ingress decision pending, then blocked: the connection is closed without a response', { timeout: 60_000 }, async () => {
        const echo = await startTcpEcho();
        await withLab(labConfig([endpoint('proxy', { ingress_delay: '300ms', ingress_verdict: 'block' })]), async (tp) => {
            const start = performance.now();
            const c = await rawTcp(tp.endpoint('proxy'));
            await c.write(`CONNECT ${echo.address} HTTP/1.1\r\nHost: ${echo.address}\r\n\r\n`);
            await c.waitForPeerClose();
            const ms = performance.now() - start;
            assert.equal(c.buffered, 0, `the client got bytes: ${JSON.stringify(c.peek().toString('latin1'))}`);
            assert.ok(ms >= 280, `closed after ${ms.toFixed(0)} ms, before the decision`);
            c.destroy();

            const trace = await tp.connectionFor(c.localPort);
            assert.equal(trace.close.reason, 'blocked');
            assert.equal(trace.close.bytes_to_client, 0);
            assert.deepEqual(trace.hooks, ['ingress.handle_connection', 'ingress.handle_connection_close']);
            const [appClose] = appEvents(tp, 'close', trace.conn);
            assert.equal(appClose?.reason, 'blocked');
            assert.deepEqual(appEvents(tp, 'completed', trace.conn).map((l) => [l.rc, l.verdict]), [[0, 'block']]);
            await sleep(50);
            assert.equal(echo.connections, 0, 'a blocked connection must not reach the origin');
        });
    });

    it("'never': decisions time out (503 for a CONNECT, a close at ingress); the late completions get TP_ERR_CLOSED", { timeout: 60_000 }, async () => {
        const echo = await startTcpEcho();
        const timeouts = { decision: '300ms' };
        const config = labConfig([
            endpoint('connect-never', { connect_verdict: 'never', connect_delay: '1s' }, { timeouts }),
            endpoint('ingress-never', { ingress_verdict: 'never', ingress_delay: '1s' }, { timeouts }),
            endpoint('egress-never', { egress_verdict: 'never', egress_delay: '1s' }, { timeouts }),
            // The endpoint's decision timeout stays 5 s: the app's own tp_pending_new() timeout rules.
            endpoint('own-timeout', { connect_verdict: 'never', connect_delay: '1s', pending_timeout: '200ms' }),
            endpoint('plain'),
        ]);
        await withLab(config, async (tp) => {
            // The CONNECT request hook never decides: after timeouts.decision, 503.
            const { t, ms } = await timedConnect(tp.endpoint('connect-never'), echo.address);
            assert.equal(t.status, 503, `${t.status} ${t.body}`);
            const ps = proxyStatusParams(t.headers['proxy-status']);
            assert.equal(ps.error, 'proxy_internal_error', `Proxy-Status: ${t.headers['proxy-status']}`);
            assert.match(String(ps.details), /timed out/);
            assert.ok(ms >= 280 && ms < 1000, `answered after ${ms.toFixed(0)} ms (decision timeout 300 ms, app delay 1 s)`);
            // The response hook still ran for the error answer.
            assert.equal(labHeader(t.headers['x-hook-lab']).status, 503);
            const conn = await connId(tp, t.localPort);
            assert.deepEqual(await tp.hooksFor(t.localPort), [
                'ingress.handle_connection',
                'http.handle_proxy_connect_request',
                'http.handle_proxy_connect_response',
                'ingress.handle_connection_close',
            ]);

            // The ingress hook never decides: the connection is closed after timeouts.decision.
            const c = await rawTcp(tp.endpoint('ingress-never'));
            const closedAfter = await c.waitForPeerClose(3000);
            assert.ok(closedAfter >= 250 && closedAfter < 1000, `closed after ${closedAfter} ms`);
            assert.equal(c.buffered, 0);
            c.destroy();
            const trace = await tp.connectionFor(c.localPort);
            assert.equal(trace.close.reason, 'blocked');

            // The egress hook never decides: 503 too, and no upstream connection.
            const e = await connectTunnel(tp.endpoint('egress-never'), echo.address);
            assert.equal(e.status, 503, `${e.status} ${e.body}`);
            assert.equal(proxyStatusParams(e.headers['proxy-status']).error, 'proxy_internal_error');
            const egressConn = await connId(tp, e.localPort);
            assert.deepEqual(await tp.hooksFor(e.localPort), [
                'ingress.handle_connection',
                'http.handle_proxy_connect_request',
                'egress.handle_connection',
                'http.handle_proxy_connect_response',
                'ingress.handle_connection_close',
            ]);

            // A timeout passed to tp_pending_new() wins over the endpoint's.
            const own = await timedConnect(tp.endpoint('own-timeout'), echo.address);
            assert.equal(own.t.status, 503, `${own.t.status} ${own.t.body}`);
            assert.equal(proxyStatusParams(own.t.headers['proxy-status']).error, 'proxy_internal_error');
            assert.ok(own.ms >= 180 && own.ms < 1000, `answered after ${own.ms.toFixed(0)} ms (pending timeout 200 ms)`);
            const ownConn = await connId(tp, own.t.localPort);

            // About a second in, the app's timers complete the handles: too late, TP_ERR_CLOSED (-9).
            for (const [id, hook] of [
                [conn, 'http.handle_proxy_connect_request'],
                [trace.conn, 'ingress.handle_connection'],
                [egressConn, 'egress.handle_connection'],
                [ownConn, 'http.handle_proxy_connect_request'],
            ] as const) {
                const late = await tp.waitForLog({ msg: 'app', event: 'late_completion', conn: id }, 5000);
                assert.equal(late.rc, -9, hook);
                assert.equal(late.hook, hook);
            }
            assert.equal(appEvents(tp, 'completed').length, 0, 'no completion was applied');
            assert.equal(echo.connections, 0);

            // Nothing broke: Turnpike serves on.
            await assertStillServes(tp, undefined, 'plain');
            const ok = await connectTunnel(tp.endpoint('plain'), echo.address);
            assert.equal(ok.status, 200);
            await assertEchoes(ok);
        });
    });

    it('a client that resets while the ingress decision is pending: the late completion gets TP_ERR_CLOSED, Turnpike serves on', { timeout: 60_000 }, async () => {
        const echo = await startTcpEcho();
        const config = labConfig([
            endpoint('proxy', { ingress_delay: '500ms' }),
            { name: 'l4', type: 'tcp', listen: ['127.0.0.1:0'], upstream: echo.address, allow_destinations: LOOPBACK, app: { ingress_delay: '500ms' } },
            endpoint('plain'),
        ]);
        await withLab(config, async (tp) => {
            for (const name of ['proxy', 'l4']) {
                const c = await rawTcp(tp.endpoint(name));
                const conn = await connId(tp, c.localPort);
                await tp.waitForLog({ msg: 'app', event: 'pending', conn });
                c.socket.resetAndDestroy();
                // Turnpike notices at once and closes; the app's timer completes later, too late.
                const close = await tp.waitForLog({ msg: 'close', conn }, 5000);
                assert.equal(close.reason, 'client_reset', `${name}: ${JSON.stringify(close)}`);
                assert.equal(close.bytes_to_client, 0);
                const done = await tp.waitForLog((l) => l.msg === 'app' && (l.event === 'completed' || l.event === 'late_completion') && l.conn === conn, 5000);
                assert.equal(done.event, 'late_completion', `${name}: the completion after the client left: ${JSON.stringify(done)}`);
                assert.equal(done.rc, -9);
                assert.ok(tp.logs.indexOf(close) < tp.logs.indexOf(done), `${name}: closed only when the app completed`);
                assert.deepEqual((await tp.connectionFor(c.localPort)).hooks, ['ingress.handle_connection', 'ingress.handle_connection_close']);
            }
            await sleep(50);
            assert.equal(echo.connections, 0, 'nothing went upstream for clients that were gone');
            assert.ok(tp.running);
            await assertStillServes(tp, undefined, 'plain');
            const ok = await connectTunnel(tp.endpoint('proxy'), echo.address);
            assert.equal(ok.status, 200);
            await assertEchoes(ok);
        });
    });

    it('a client that resets while its CONNECT decision is pending: no upstream connection, TP_ERR_CLOSED', { timeout: 60_000 }, async () => {
        const echo = await startTcpEcho();
        const config = labConfig([endpoint('proxy', { connect_delay: '500ms' })]);
        await withLab(config, async (tp) => {
            const c = await rawTcp(tp.endpoint('proxy'));
            await c.write(`CONNECT ${echo.address} HTTP/1.1\r\nHost: ${echo.address}\r\n\r\n`);
            const conn = await connId(tp, c.localPort);
            await tp.waitForLog({ msg: 'app', event: 'pending', conn, hook: 'http.handle_proxy_connect_request' });
            c.socket.resetAndDestroy();
            const done = await tp.waitForLog((l) => l.msg === 'app' && (l.event === 'completed' || l.event === 'late_completion') && l.conn === conn, 5000);
            assert.equal(done.event, 'late_completion', `the completion after the client left: ${JSON.stringify(done)}`);
            assert.equal((await tp.waitForLog({ msg: 'close', conn })).reason, 'client_reset');
            await sleep(100);
            assert.equal(echo.connections, 0, 'Turnpike connected upstream for a client that was gone');
        });
    });

    // While the ingress decision is pending, the client's first bytes are kept and reading goes on
    // (into the same slab), so a reset after them is still noticed.
    it('a client that sends its first bytes, then resets, while the ingress decision is pending: TP_ERR_CLOSED, nothing upstream', {
        timeout: 60_000,
    }, async () => {
        const echo = await startTcpEcho();
        const config = labConfig([
            endpoint('proxy', { ingress_delay: '500ms' }),
            { name: 'l4', type: 'tcp', listen: ['127.0.0.1:0'], upstream: echo.address, allow_destinations: LOOPBACK, app: { ingress_delay: '500ms' } },
        ]);
        await withLab(config, async (tp) => {
            const failures: string[] = [];
            for (const [name, bytes] of [
                ['proxy', `CONNECT ${echo.address} HTTP/1.1\r\nHost: ${echo.address}\r\n\r\n`],
                ['l4', 'hello'],
            ] as const) {
                const c = await rawTcp(tp.endpoint(name));
                const conn = await connId(tp, c.localPort);
                await c.write(bytes);
                await tp.waitForLog({ msg: 'app', event: 'pending', conn });
                await sleep(100); // the bytes are in Turnpike's hands
                c.socket.resetAndDestroy();
                const done = await tp.waitForLog((l) => l.msg === 'app' && (l.event === 'completed' || l.event === 'late_completion') && l.conn === conn, 5000);
                await tp.waitForLog({ msg: 'close', conn });
                if (done.event !== 'late_completion') failures.push(`${name}: the completion after the client left: ${JSON.stringify(done)}`);
            }
            await sleep(100);
            if (echo.connections !== 0) failures.push(`the origin got ${echo.connections} connection(s) from clients that were gone`);
            assert.deepEqual(failures, []);
        });
    });

    it('bytes a client sends while the ingress decision is pending are kept, and so is its half-close', { timeout: 60_000 }, async () => {
        const echo = await startTcpEcho();
        const config = labConfig([
            endpoint('proxy', { ingress_delay: '300ms' }),
            { name: 'l4', type: 'tcp', listen: ['127.0.0.1:0'], upstream: echo.address, allow_destinations: LOOPBACK, app: { ingress_delay: '300ms' } },
        ]);
        await withLab(config, async (tp) => {
            // L4: the bytes and the FIN both come before the decision.
            const l4 = await rawTcp(tp.endpoint('l4'));
            await l4.end('hello');
            assert.equal((await l4.readToEnd(5000)).toString(), 'hello');
            const l4Close = (await tp.connectionFor(l4.localPort)).close;
            assert.equal(l4Close.reason, 'done');
            assert.equal(l4Close.bytes_to_upstream, 5);

            // HTTP: a CONNECT and the first tunnel bytes, in one write, before the decision.
            const c = await rawTcp(tp.endpoint('proxy'));
            await c.write(`CONNECT ${echo.address} HTTP/1.1\r\nHost: ${echo.address}\r\n\r\nping`);
            assert.match((await c.readUntil('\r\n\r\n')).toString(), /^HTTP\/1.1 200 /);
            assert.equal((await c.readBytes(4)).toString(), 'ping');
            await c.end();
            await c.waitForPeerClose();
            c.destroy();
            assert.deepEqual(await tp.hooksFor(c.localPort), CONNECT_ORDER);
            assert.equal((await tp.connectionFor(c.localPort)).close.bytes_to_upstream, 4);
        });
    });

    it("a CONNECT blocked with 451 (at once, or pending) gets the app's header from handle_proxy_connect_response", { timeout: 60_000 }, async () => {
        const echo = await startTcpEcho();
        const config = labConfig(
            [
                endpoint('now', { connect_verdict: 'block', connect_block_status: 451 }),
                endpoint('later', { connect_verdict: 'block', connect_block_status: 451, connect_delay: '200ms' }),
            ],
            { banner: 'legal says no' },
        );
        await withLab(config, async (tp) => {
            for (const name of ['now', 'later']) {
                const { t, ms } = await timedConnect(tp.endpoint(name), echo.address);
                assert.equal(t.status, 451, `${name}: ${t.status} ${t.body}`);
                assert.equal(proxyStatusParams(t.headers['proxy-status']).error, 'http_request_denied', `${name}: ${t.headers['proxy-status']}`);
                const h = labHeader(t.headers['x-hook-lab']);
                const conn = await connId(tp, t.localPort);
                assert.deepEqual(h, { conn, endpointConns: 1, request: 1, status: 451, upstream: '-', banner: 'legal says no' }, name);
                if (name === 'later') assert.ok(ms >= 180, `later: answered after ${ms.toFixed(0)} ms`);
                const trace = await tp.connectionFor(t.localPort);
                assert.deepEqual(trace.hooks, [
                    'ingress.handle_connection',
                    'http.handle_proxy_connect_request',
                    'http.handle_proxy_connect_response',
                    'ingress.handle_connection_close',
                ]);
                assert.equal(trace.close.reason, 'blocked', name);
                assert.equal(appEvents(tp, 'pending', conn).length, name === 'later' ? 1 : 0, name);
            }
            await sleep(50);
            assert.equal(echo.connections, 0);
        });
    });

    it('egress redirect: a CONNECT to a closed port reaches the live origin the app names; the policy judges the new address', { timeout: 60_000 }, async () => {
        const echo = await startTcpEcho();
        const closed = await closedPort();
        const config = labConfig([
            endpoint('redirect', { egress_redirect: echo.address, egress_delay: '100ms' }),
            endpoint('policed', { egress_redirect: echo.address }, { allow_destinations: [] }),
        ]);
        await withLab(config, async (tp) => {
            const t = await connectTunnel(tp.endpoint('redirect'), `127.0.0.1:${closed}`);
            assert.equal(t.status, 200, `${t.status} ${t.body}`);
            assert.equal(labHeader(t.headers['x-hook-lab']).upstream, echo.address);
            await assertEchoes(t);
            assert.equal(echo.connections, 1);
            const conn = await connId(tp, t.localPort);
            assert.deepEqual(
                appEvents(tp, 'redirect', conn).map((l) => [l.from, l.to]),
                [[`127.0.0.1:${closed}`, echo.address]],
            );
            assert.deepEqual(appEvents(tp, 'completed', conn).map((l) => [l.hook, l.rc, l.verdict]), [['egress.handle_connection', 0, 'redirect']]);
            // The order Turnpike traced, and the order the app itself saw, are a CONNECT's.
            assert.deepEqual(await tp.hooksFor(t.localPort), CONNECT_ORDER);
            const [appClose] = appEvents(tp, 'close', conn);
            assert.deepEqual(appClose?.hooks, CONNECT_ORDER);

            // Loopback is not allowed on 'policed': redirecting there is refused like asking for it.
            const refused = await connectTunnel(tp.endpoint('policed'), `127.0.0.1:${closed}`);
            assert.equal(refused.status, 403, `${refused.status} ${refused.body}`);
            assert.equal(proxyStatusParams(refused.headers['proxy-status']).error, 'destination_ip_prohibited');
            assert.equal(labHeader(refused.headers['x-hook-lab']).upstream, '-');
            await sleep(50);
            assert.equal(echo.connections, 1, 'the policy let a redirect through');
        });
    });

    it('extensions: the endpoint counts its connections, the close hook gets exact byte counts', { timeout: 60_000 }, async () => {
        const echo = await startTcpEcho();
        const stop = await withLab(labConfig([endpoint('proxy')], { banner: 'counting' }), async (tp) => {
            // First connection, byte by byte, so that every count is known.
            const c = await rawTcp(tp.endpoint('proxy'));
            const request = `CONNECT ${echo.address} HTTP/1.1\r\nHost: ${echo.address}\r\n\r\n`;
            await c.write(request);
            const head = (await c.readUntil('\r\n\r\n')).toString('latin1');
            assert.match(head, /^HTTP\/1.1 200 /);
            const h1 = labHeader(/^x-hook-lab: (.*)\r$/im.exec(head)?.[1]);
            const payload = 'x'.repeat(1000);
            await c.write(payload);
            assert.equal((await c.readBytes(payload.length)).toString(), payload);

            // Second connection, while the first is still open.
            const t = await connectTunnel(tp.endpoint('proxy'), echo.address);
            assert.equal(t.status, 200);
            const h2 = labHeader(t.headers['x-hook-lab']);
            await assertEchoes(t);
            await c.end();
            await c.waitForPeerClose();
            c.destroy();

            const conn1 = await connId(tp, c.localPort);
            const conn2 = await connId(tp, t.localPort);
            assert.deepEqual(h1, { conn: conn1, endpointConns: 1, request: 1, status: 200, upstream: echo.address, banner: 'counting' });
            assert.deepEqual(h2, { conn: conn2, endpointConns: 2, request: 1, status: 200, upstream: echo.address, banner: 'counting' });

            const turnpikeClose = (await tp.connectionFor(c.localPort)).close;
            const [appClose] = appEvents(tp, 'close', conn1);
            assert.ok(appClose, 'no close event from the app');
            const expected = {
                reason: 'done',
                bytes_from_client: Buffer.byteLength(request) + payload.length,
                bytes_to_client: Buffer.byteLength(head, 'latin1') + payload.length,
                bytes_from_upstream: payload.length,
                bytes_to_upstream: payload.length,
                requests: 1,
                endpoint_conns: 1,
            };
            for (const [key, value] of Object.entries(expected)) {
                assert.equal(appClose[key], value, `app close event ${key}: ${JSON.stringify(appClose)}`);
                if (key !== 'endpoint_conns') assert.equal(turnpikeClose[key], value, `Turnpike's close line ${key}`);
            }
            assert.equal(appClose.duration_us, turnpikeClose.duration_us);
            assert.deepEqual(appClose.hooks, CONNECT_ORDER);
            // The endpoint extension also counts open connections: the second closed while the
            // first was open; the first closed alone.
            await tp.connectionFor(t.localPort);
            assert.equal(appEvents(tp, 'close', conn2)[0]?.endpoint_open, 2);
            assert.equal(appClose.endpoint_open, 1);
        });
        // One worker, one endpoint: one endpoint extension; two connections, two requests.
        assert.deepEqual(
            [stop.endpoint_ext_init, stop.conn_ext_init, stop.request_ext_init, stop.pending_started],
            [1, 2, 2, 0],
        );
    });

    it('one endpoint extension per worker and endpoint, each freed', { timeout: 60_000 }, async () => {
        const stop = await withLab(labConfig([endpoint('a'), endpoint('b')], { workers: 3 }), async (tp) => {
            assert.equal(tp.findLog({ msg: 'ready' })!.workers, 3);
        });
        assert.equal(stop.endpoint_ext_init, 6);
        assert.equal(stop.endpoint_ext_free, 6);
    });

    it('per-endpoint settings: two endpoints with different ingress delays behave differently; the global banner is shared', { timeout: 60_000 }, async () => {
        const echo = await startTcpEcho();
        const config = labConfig([endpoint('slow', { ingress_delay: '400ms' }), endpoint('fast')], { banner: 'shared' });
        await withLab(config, async (tp) => {
            const slow = await timedConnect(tp.endpoint('slow'), echo.address);
            const fast = await timedConnect(tp.endpoint('fast'), echo.address);
            assert.equal(slow.t.status, 200);
            assert.equal(fast.t.status, 200);
            assert.ok(slow.ms >= 380, `slow endpoint answered after ${slow.ms.toFixed(0)} ms`);
            assert.ok(fast.ms < 250, `fast endpoint answered after ${fast.ms.toFixed(0)} ms`);
            assert.equal(labHeader(slow.t.headers['x-hook-lab']).banner, 'shared');
            assert.equal(labHeader(fast.t.headers['x-hook-lab']).banner, 'shared');
            // Each endpoint has its own extension: both saw one connection.
            assert.equal(labHeader(slow.t.headers['x-hook-lab']).endpointConns, 1);
            assert.equal(labHeader(fast.t.headers['x-hook-lab']).endpointConns, 1);
            await assertEchoes(slow.t);
            await assertEchoes(fast.t);
            const slowConn = await connId(tp, slow.t.localPort);
            const fastConn = await connId(tp, fast.t.localPort);
            assert.deepEqual(appEvents(tp, 'pending', slowConn).map((l) => [l.hook, l.delay_ms]), [['ingress.handle_connection', 400]]);
            assert.deepEqual(appEvents(tp, 'pending', fastConn), []);
        });
    });
});
