/**
 * The testkit's own tests, part 2: everything it does with Turnpike, against the real `turnpike`
 * binary of $TURNPIKE_BUILD (default <repo>/build/asan): starting and stopping it, the ready line and
 * endpoints, logs, hook traces, RSS, exit checks and crash reports, the kill-on-exit guarantee, and
 * the HTTP clients (proxyRequest, connectTunnel, rawHttp) through a real proxy endpoint.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterEach, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import {
    appBinary,
    cleanup,
    closedPort,
    connectTunnel,
    echoBody,
    proxyRequest,
    proxyStatusParams,
    randomBytes,
    rawHttp,
    rawTcp,
    RawConnection,
    sha256,
    startHttpOrigin,
    startTcpEcho,
    startTurnpike,
    track,
    waitFor,
    withTurnpike,
} from '../src/index.js';
import { LOOPBACK, proxyConfig, tcpConfig } from './common.js';

function isAlive(pid: number): boolean {
    try {
        process.kill(pid, 0);
    } catch {
        return false;
    }
    // A zombie (exited, not yet reaped) counts as gone.
    try {
        return !/^State:\s+Z/m.test(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    } catch {
        return false;
    }
}

/** Whether the binary was built with AddressSanitizer (then a crash comes with a report). */
function hasAsan(binary: string): boolean {
    return fs.readFileSync(binary).includes('__asan_init');
}

/** Blocks this thread (and so the event loop) for `ms`. */
function blockEventLoop(ms: number): void {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * A TCP origin in its own process that greets every connection with `greeting`, then echoes. Being
 * another process, it answers while this one is blocked.
 */
async function startGreetingOrigin(greeting: string): Promise<{ address: string }> {
    const script = `
        const net = require('net');
        const server = net.createServer((s) => { s.on('error', () => {}); s.write(${JSON.stringify(greeting)}); s.pipe(s); });
        server.listen(0, '127.0.0.1', () => process.stdout.write(server.address().port + '\\n'));
    `;
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    track('greeting origin', () => child.kill('SIGKILL'), () => child.kill('SIGKILL'));
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    await waitFor(() => out.includes('\n'), { timeoutMs: 10_000, message: 'the greeting origin did not start' });
    return { address: `127.0.0.1:${Number(out.trim())}` };
}

describe('process handle (real turnpike)', () => {
    afterEach(cleanup);

    it('starts, finds endpoints, traces a connection, reads RSS and stops cleanly', { timeout: 60_000 }, async () => {
        const echo = await startTcpEcho();
        const config = tcpConfig(echo.address);
        await withTurnpike({ config }, async (tp) => {
            assert.equal(tp.binary, appBinary('turnpike'));
            assert.match(tp.configText, /trace_hooks: true/);
            const ep = tp.endpoint('l4');
            assert.equal(ep, tp.endpoint());
            assert.equal(ep.type, 'tcp');
            assert.equal(ep.host, '127.0.0.1');
            assert.ok(ep.port > 0);
            assert.equal(ep.address, `127.0.0.1:${ep.port}`);
            assert.deepEqual(tp.endpoints, [ep]);
            assert.throws(() => tp.endpoint('nope'), /no endpoint 'nope'.*l4/);

            const c = await rawTcp(ep);
            await c.write('x');
            assert.equal((await c.readBytes(1)).toString(), 'x');
            const port = c.localPort;
            await c.end();
            await c.waitForPeerClose();
            c.destroy();
            assert.deepEqual(await tp.hooksFor(port), [
                'ingress.handle_connection',
                'egress.handle_connection',
                'egress.handle_connection_established',
                'ingress.handle_connection_close',
            ]);
            const trace = await tp.connectionFor({ localPort: port });
            assert.equal(trace.peer, `127.0.0.1:${port}`);
            assert.equal(trace.close.reason, 'done');
            assert.equal(trace.close.bytes_from_client, 1);
            assert.equal(trace.close.conn, trace.conn);
            await assert.rejects(tp.connectionFor(1, 200), /no connection from client port 1/);

            const rss = tp.rss();
            assert.ok(rss > 1 << 20, `RSS ${rss}`);
            assert.ok(tp.rssPeak() >= rss);
            assert.ok(tp.running);
            assert.equal(tp.exitStatus, null);
        });
    });

    it('waitForLog takes predicates and partial objects and fails with the stderr tail; a drain exits 0', { timeout: 60_000 }, async () => {
        const tp = await startTurnpike({ config: proxyConfig() });
        const ready = await tp.waitForLog((l) => l.msg === 'ready');
        assert.equal(ready.pid, tp.pid);
        assert.equal(tp.findLog({ msg: 'ready', pid: tp.pid }), ready);
        assert.equal(tp.findLog({ msg: 'ready', pid: -1 }), undefined);
        assert.equal(tp.logsWithMsg('ready').length, 1);
        await assert.rejects(tp.waitForLog({ msg: 'never' }, 100), /timed out after 100 ms[\s\S]*"msg":"ready"/);
        // A line logged later is waited for.
        const draining = tp.waitForLog({ msg: 'draining', signal: 'SIGTERM' });
        tp.signal('SIGTERM');
        await draining;
        assert.deepEqual(await tp.exited, { code: 0, signal: null });
        assert.ok(tp.findLog({ msg: 'stopped' }));
        assert.equal(tp.signalsSent, 1);
        assert.equal(tp.running, false);
        await assert.rejects(tp.waitForLog({ msg: 'never' }), /exited \(status 0\)/);
        await tp.assertCleanExit();
        assert.deepEqual(await tp.stop(), { code: 0, signal: null }, 'stop() after exit is a no-op');
        assert.throws(() => tp.rss(), /exited/);
        assert.throws(() => tp.signal('SIGTERM'), /already exited/);
        assert.deepEqual(tp.otherStderrLines, []);
    });

    it('assertCleanExit fails a Turnpike that did not exit 0', { timeout: 60_000 }, async () => {
        const tp = await startTurnpike({ config: proxyConfig() });
        tp.kill('SIGKILL');
        assert.deepEqual(await tp.exited, { code: null, signal: 'SIGKILL' });
        await assert.rejects(tp.assertCleanExit(), /did not exit cleanly \(signal SIGKILL\)/);
    });

    it('withTurnpike blames a crash and shows the sanitizer report', { timeout: 60_000 }, async () => {
        const echo = await startTcpEcho();
        const binary = appBinary('turnpike');
        await assert.rejects(
            withTurnpike({ config: tcpConfig(echo.address) }, async (tp) => {
                const c = await rawTcp(tp.endpoint());
                await c.write('x');
                await c.readBytes(1);
                process.kill(tp.pid, 'SIGSEGV'); // not through the handle: a crash of its own
                await c.readBytes(1, 5000); // the connection dies with the process
            }),
            (err: Error) => {
                assert.match(err.message, /connection closed/);
                assert.match(err.message, /Turnpike exited during the test \((status 1|signal SIGSEGV)\)/);
                if (hasAsan(binary)) assert.match(err.message, /sanitizer report:[\s\S]*AddressSanitizer: SEGV/);
                return true;
            },
        );
    });

    for (const how of ['exit', 'SIGTERM', 'SIGINT'] as const) {
        it(`kills every Turnpike it started when the test process ends (${how})`, { timeout: 60_000 }, async () => {
            const index = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'src', 'index.js');
            const config = proxyConfig();
            const script = `
                const tk = await import(${JSON.stringify(index)});
                const tp = await tk.startTurnpike({ config: ${JSON.stringify(config)} });
                process.stdout.write(tp.pid + '\\n');
                if (${JSON.stringify(how)} === 'exit') setTimeout(() => process.exit(0), 500);
                setInterval(() => {}, 1000);
            `;
            const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
            const untrack = track('test child', () => child.kill('SIGKILL'));
            let out = '';
            child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
            await waitFor(() => out.includes('\n'), { timeoutMs: 30_000, message: 'the child did not start Turnpike' });
            const pid = Number(out.trim());
            assert.ok(isAlive(pid), 'Turnpike runs');
            assert.match(fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8'), /turnpike/);
            if (how !== 'exit') child.kill(how);
            await new Promise((resolve) => child.once('exit', resolve));
            untrack();
            await waitFor(() => !isAlive(pid), { timeoutMs: 5000, message: `Turnpike pid ${pid} outlived the test process` });
        });
    }

    it('startTurnpike rejects with the stderr tail when Turnpike exits before ready', { timeout: 60_000 }, async () => {
        // A configuration error: exit status 2, with the file and line.
        await assert.rejects(
            startTurnpike({ config: 'runtime:\n  workers: 100000\n' }),
            /did not become ready: Turnpike exited \(status 2\)[\s\S]*turnpike\.yaml:2/,
        );
        // A listen address in use: exit status 1.
        const taken = net.createServer();
        await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
        track('taken port', () => new Promise((resolve) => taken.close(resolve)));
        const port = (taken.address() as net.AddressInfo).port;
        await assert.rejects(
            startTurnpike({ config: proxyConfig({ listen: [`127.0.0.1:${port}`] }) }),
            new RegExp(`did not become ready: Turnpike exited \\(status 1\\)[\\s\\S]*127\\.0\\.0\\.1:${port}`),
        );
        await assert.rejects(startTurnpike({ binary: '/nonexistent/turnpike', config: {} }), /binary not found/);
    });

    it('cleanup() stops a running Turnpike', { timeout: 60_000 }, async () => {
        const tp = await startTurnpike({ config: proxyConfig() });
        await cleanup();
        assert.equal(tp.running, false);
        assert.deepEqual(tp.exitStatus, { code: 0, signal: null });
        assert.ok(!isAlive(tp.pid));
    });
});

describe('HTTP clients (through a real turnpike)', () => {
    afterEach(cleanup);

    const config = () => proxyConfig({ allow_destinations: LOOPBACK });

    it('proxyRequest sends absolute-form requests and reads the response', { timeout: 60_000 }, async () => {
        const origin = await startHttpOrigin();
        await withTurnpike({ config: config() }, async (tp) => {
            const res = await proxyRequest(tp.endpoint('proxy'), { url: origin.url('/a?b=1'), headers: { 'x-test': 'yes' } });
            assert.equal(res.status, 200);
            const echoed = res.json<{ method: string; url: string; headers: Record<string, string> }>();
            assert.equal(echoed.method, 'GET');
            assert.equal(echoed.url, '/a?b=1');
            assert.equal(echoed.headers['x-test'], 'yes');
            assert.equal(echoed.headers.host, origin.address);
            assert.ok(res.localPort > 0);
            assert.equal(origin.requests.length, 1);
            assert.equal(origin.connections, 1);
            // The response's localPort is the client side of the connection Turnpike logged.
            assert.equal((await tp.connectionFor(res.localPort)).close.requests, 1);
        });
    });

    it('proxyRequest streams content-length and chunked bodies', { timeout: 60_000 }, async () => {
        const origin = await startHttpOrigin(echoBody);
        await withTurnpike({ config: config() }, async (tp) => {
            const body = randomBytes(1_000_003);
            for (const chunked of [false, true]) {
                const res = await proxyRequest(tp.endpoint('proxy'), { method: 'POST', url: origin.url('/echo'), body, chunked });
                assert.equal(res.status, 200);
                assert.equal(sha256(res.body), sha256(body));
                const got = origin.requests.at(-1)!;
                assert.equal(got.headers['transfer-encoding'], chunked ? 'chunked' : undefined);
                assert.equal(got.headers['content-length'], chunked ? undefined : String(body.length));
                assert.equal(sha256(got.body), sha256(body));
            }
        });
    });

    it('connectTunnel keeps bytes that came with the response head, and reads refusals with their body', { timeout: 60_000 }, async () => {
        const origin = await startGreetingOrigin('EARLY');
        await withTurnpike({ config: config() }, async (tp) => {
            // Hold this process while Turnpike connects, so that the 200 and the origin's greeting
            // are both waiting when connectTunnel reads: the greeting then comes with the head and
            // must be put back for the tunnel's reader. (Retried: the timing is the kernel's.)
            let sawEarly = false;
            for (let attempt = 0; attempt < 5 && !sawEarly; attempt++) {
                const from = tp.logs.length;
                const hold = tp
                    .waitForLog({ msg: 'hook', hook: 'egress.handle_connection' }, { from, timeoutMs: 10_000 })
                    .then(() => blockEventLoop(300));
                const t = await connectTunnel(tp.endpoint('proxy'), origin.address);
                sawEarly = t.socket.readableLength > 0;
                await hold;
                assert.equal(t.status, 200);
                const conn = RawConnection.wrap(t.socket);
                assert.equal((await conn.readBytes(5)).toString(), 'EARLY');
                await conn.write('ping');
                assert.equal((await conn.readUntil('ping')).toString(), 'ping');
                conn.destroy();
            }
            assert.ok(sawEarly, 'the greeting never arrived together with the response head');

            const refused = await connectTunnel(tp.endpoint('proxy'), `127.0.0.1:${await closedPort()}`);
            assert.equal(refused.status, 502);
            assert.ok(refused.body.length > 0);
            assert.equal(refused.body.length, Number(refused.headers['content-length']));
            assert.match(refused.body.toString(), /refused/);
            assert.equal(proxyStatusParams(refused.headers['proxy-status']).error, 'connection_refused');
            assert.ok(refused.socket.destroyed);
        });
    });

    it('rawHttp reports the raw reply and whether Turnpike closed', { timeout: 60_000 }, async () => {
        const origin = await startHttpOrigin();
        await withTurnpike({ config: config() }, async (tp) => {
            const ep = tp.endpoint('proxy');
            const bad = await rawHttp(ep, 'BAD REQUEST\r\n\r\n');
            assert.equal(bad.status, 400);
            assert.equal(bad.closed, true);
            assert.match(bad.text, /^HTTP\/1.1 400 Bad Request\r\n/);
            assert.ok(bad.localPort > 0);

            const get = `GET ${origin.url('/x')} HTTP/1.1\r\nHost: ${origin.address}\r\n\r\n`;
            const good = await rawHttp(ep, get, { until: 'response' });
            assert.equal(good.status, 200);
            assert.equal((JSON.parse(good.response!.body.toString()) as { url: string }).url, '/x');
            assert.equal(good.closed, false, 'keep-alive: Turnpike keeps the connection open');

            const open = await rawHttp(ep, get, { timeoutMs: 300 });
            assert.equal(open.status, 200);
            assert.equal(open.closed, false);
            assert.ok(open.elapsedMs >= 290, `gave up after ${open.elapsedMs} ms`);
        });
    });
});
