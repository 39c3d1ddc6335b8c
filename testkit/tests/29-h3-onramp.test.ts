/**
 * The HTTP/3 on-ramps: requests over QUIC go through the same exchange as HTTP/1.1 (routes, groups,
 * hooks, Proxy-Status answers) to HTTP/1.1 origins; CONNECT over HTTP/3 tunnels to TCP. The client
 * is Turnpike's own tools/turnpike-h3 (the quic-go interop test drives h3-files; this one drives
 * the proxy), and every byte of a download is checked.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, it } from 'node:test';

import {
    cleanup,
    closedPort,
    httpRequest,
    makeTestCerts,
    patternBytes,
    runProcess,
    sleep,
    startHttpOrigin,
    startTcpEcho,
    toolBinary,
    track,
    withTurnpike,
    type TestCerts,
} from '../src/index.js';

const TOOL = toolBinary('turnpike-h3');
const MiB = 1024 * 1024;
const at = (o: { port: number }) => `127.0.0.1:${o.port}`;

function quic(certs: TestCerts) {
    return { certificate: certs.certFile, private_key: certs.keyFile };
}

function tempFile(name: string): string {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tp-h3on-'));
    const remove = () => fs.rmSync(dir, { recursive: true, force: true });
    track(`dir ${dir}`, remove, remove);
    return path.join(dir, name);
}

async function get(url: string, certs: TestCerts, extra: string[] = []) {
    const r = await runProcess(TOOL, ['get', url, '--ca', certs.caFile, '--timeout-ms', '20000', ...extra], 60_000);
    assert.equal(r.proc.sanitizerReport(), null, `turnpike-h3 sanitizer report:\n${r.stderr}`);
    const summary = JSON.parse(r.stdout.trim().split('\n').pop() || '{}');
    return { ...r, summary };
}

async function freeUdpPort(): Promise<number> {
    const s = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', () => resolve()));
    const port = s.address().port;
    await new Promise<void>((resolve) => s.close(() => resolve()));
    return port;
}

describe('HTTP/3 on-ramps (http3, http3_proxy)', () => {
    afterEach(cleanup);

    it('an http endpoint announces its http3 twin with Alt-Svc; both serve the same routes', { timeout: 60_000 }, async () => {
        const certs = makeTestCerts();
        const o = await startHttpOrigin();
        const udp = await freeUdpPort();
        const altSvc = `h3=":${udp}"; ma=3600`;
        const cfg = {
            runtime: { workers: 1 },
            endpoints: [
                { name: 'web', type: 'http', listen: ['127.0.0.1:0'], routes: [{ path_prefix: '/app', upstream: 'o' }], alt_svc: altSvc },
                { name: 'h3', type: 'http3', listen: [`127.0.0.1:${udp}`], quic: quic(certs), routes: [{ path_prefix: '/app', upstream: 'o' }] },
            ],
            upstreams: [{ name: 'o', servers: [at(o)] }],
        };
        await withTurnpike({ config: cfg }, async (tp) => {
            const res = await httpRequest(tp.endpoint('web'), { path: '/app/x' });
            assert.equal(res.status, 200);
            assert.equal(res.headers['alt-svc'], altSvc);
            const none = await httpRequest(tp.endpoint('web'), { path: '/other' });
            assert.equal(none.status, 404);
            assert.equal(none.headers['alt-svc'], altSvc, 'Turnpike\'s own answers announce it too');
            assert.equal(tp.endpoint('h3').port, udp);
            const r = await get(`https://127.0.0.1:${udp}/app/y`, certs);
            assert.equal(r.code, 0, JSON.stringify(r.summary) + tp.stderrTail(40));
            assert.equal(r.summary.per_stream[0].status, 200);
            assert.deepEqual(o.requests.map((q) => q.url), ['/app/x', '/app/y']);
        });
    });

    it('an http3 endpoint routes requests to an HTTP/1.1 origin with Host, Via and X-Forwarded-Proto https', { timeout: 60_000 }, async () => {
        const certs = makeTestCerts();
        const api = await startHttpOrigin();
        const other = await startHttpOrigin();
        const cfg = {
            runtime: { workers: 1 },
            endpoints: [{
                name: 'h3', type: 'http3', listen: ['127.0.0.1:0'], quic: quic(certs),
                routes: [{ path_prefix: '/api/', upstream: 'api' }, { upstream: 'other' }],
            }],
            upstreams: [{ name: 'api', servers: [at(api)] }, { name: 'other', servers: [at(other)] }],
        };
        await withTurnpike({ config: cfg }, async (tp) => {
            const ep = tp.endpoint('h3');
            assert.equal(ep.type, 'http3');
            const out = tempFile('api.json');
            const r = await get(`https://127.0.0.1:${ep.port}/api/item?q=1`, certs, ['-o', out]);
            assert.equal(r.code, 0, JSON.stringify(r.summary) + tp.stderrTail(40));
            assert.equal(r.summary.per_stream[0].status, 200);
            const seen = JSON.parse(fs.readFileSync(out, 'utf8'));
            assert.equal(seen.method, 'GET');
            assert.equal(seen.url, '/api/item?q=1');
            assert.equal(seen.headers.host, `127.0.0.1:${ep.port}`, ':authority becomes Host');
            assert.equal(seen.headers['x-forwarded-proto'], 'https');
            assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1');
            assert.equal(seen.headers.via, '1.1 turnpike');
            assert.equal(api.requests.length, 1);
            const r2 = await get(`https://127.0.0.1:${ep.port}/elsewhere`, certs);
            assert.equal(r2.summary.per_stream[0].status, 200);
            assert.equal(other.requests.length, 1, 'the second route');
        });
    });

    it('eight parallel 4 MiB downloads (with and without a Content-Length) arrive intact', { timeout: 120_000 }, async () => {
        const certs = makeTestCerts();
        const size = 4 * MiB;
        const body = patternBytes(size);
        const origin = await startHttpOrigin((req, res) => {
            if (req.url.startsWith('/chunked')) {
                res.writeHead(200, { 'content-type': 'application/octet-stream' });
                for (let off = 0; off < size; off += 256 * 1024) res.write(body.subarray(off, off + 256 * 1024));
                res.end();
                return;
            }
            res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(size) });
            res.end(body);
        });
        const cfg = {
            runtime: { workers: 1 },
            endpoints: [{ name: 'h3', type: 'http3', listen: ['127.0.0.1:0'], quic: quic(certs), routes: [{ upstream: 'o' }] }],
            upstreams: [{ name: 'o', servers: [at(origin)], keepalive: { max_idle: 16 } }],
        };
        await withTurnpike({ config: cfg }, async (tp) => {
            const port = tp.endpoint('h3').port;
            for (const p of ['/fixed', '/chunked']) {
                const r = await get(`https://127.0.0.1:${port}${p}`, certs, ['-n', '8', '--verify-pattern']);
                assert.equal(r.code, 0, JSON.stringify(r.summary) + tp.stderrTail(40));
                assert.equal(r.summary.streams, 8);
                for (const s of r.summary.per_stream) {
                    assert.deepEqual(
                        { status: s.status, bytes: s.bytes, complete: s.complete, pattern: s.pattern_ok },
                        { status: 200, bytes: size, complete: true, pattern: true },
                        `${p}: ${JSON.stringify(s)}`,
                    );
                    if (p === '/fixed') assert.equal(s.content_length, size);
                }
            }
            assert.equal(origin.requests.length, 16);
        });
    });

    it('Turnpike answers HTTP/3 requests itself with Proxy-Status errors: no route, a refused origin, CONNECT on a server', { timeout: 60_000 }, async () => {
        const certs = makeTestCerts();
        const dead = await closedPort();
        const cfg = {
            runtime: { workers: 1 },
            endpoints: [{
                name: 'h3', type: 'http3', listen: ['127.0.0.1:0'], quic: quic(certs),
                routes: [{ path_prefix: '/dead', upstream: 'dead' }],
            }],
            upstreams: [{ name: 'dead', servers: [`127.0.0.1:${dead}`] }],
        };
        await withTurnpike({ config: cfg }, async (tp) => {
            const port = tp.endpoint('h3').port;
            const none = tempFile('none.txt');
            const r = await get(`https://127.0.0.1:${port}/nothing`, certs, ['-o', none]);
            assert.equal(r.summary.per_stream[0].status, 404);
            assert.equal(r.summary.per_stream[0].complete, true);
            assert.match(fs.readFileSync(none, 'utf8'), /^404 Not Found: no route for this request/);
            const refused = tempFile('refused.txt');
            const r2 = await get(`https://127.0.0.1:${port}/dead`, certs, ['-o', refused]);
            assert.equal(r2.summary.per_stream[0].status, 502);
            assert.match(fs.readFileSync(refused, 'utf8'), /^502 Bad Gateway/);
            await tp.waitForLog({ msg: 'error response', status: 502 });
            await tp.waitForLog({ msg: 'error response', status: 404, error: 'destination_not_found' });
        });
    });

    it('an http3_proxy endpoint tunnels CONNECT over HTTP/3 to a TCP echo, 3 MiB both ways', { timeout: 120_000 }, async () => {
        const certs = makeTestCerts();
        const echo = await startTcpEcho();
        const cfg = {
            runtime: { workers: 1, trace_hooks: true },
            endpoints: [{
                name: 'masque', type: 'http3_proxy', listen: ['127.0.0.1:0'], quic: quic(certs),
                allow_destinations: '127.0.0.0/8',
            }],
        };
        await withTurnpike({ config: cfg }, async (tp) => {
            const port = tp.endpoint('masque').port;
            const payload = patternBytes(3 * MiB);
            const child = spawn(TOOL, ['connect', `127.0.0.1:${port}`, `127.0.0.1:${echo.port}`, '--ca', certs.caFile], {
                stdio: ['pipe', 'pipe', 'pipe'],
            });
            track(`turnpike-h3 connect pid ${child.pid}`, () => child.kill('SIGKILL'), () => child.kill('SIGKILL'));
            const out: Buffer[] = [];
            let stderr = '';
            child.stdout.on('data', (d: Buffer) => out.push(d));
            child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
            const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
            child.stdin.end(payload);
            const code = await Promise.race([exited, sleep(100_000).then(() => 'timeout' as const)]);
            assert.equal(code, 0, `turnpike-h3 connect: ${code}\n${stderr}\n${tp.stderrTail(40)}`);
            const got = Buffer.concat(out);
            assert.equal(got.length, payload.length);
            assert.ok(got.equals(payload), 'the echoed bytes differ');
            // The hooks of a CONNECT over HTTP/3 fire as over HTTP/1.1, under the flow's id.
            const connect = await tp.waitForLog({ msg: 'hook', hook: 'http.handle_proxy_connect_request' });
            const flow = connect.conn as number;
            const hooks = tp.logs.filter((l) => l.msg === 'hook' && l.conn === flow).map((l) => l.hook);
            assert.deepEqual(hooks.slice(0, 4), [
                'http.handle_proxy_connect_request',
                'egress.handle_connection',
                'egress.handle_connection_established',
                'http.handle_proxy_connect_response',
            ]);
            assert.ok(tp.logs.some((l) => l.msg === 'hook' && l.hook === 'ingress.handle_connection' && l.conn !== flow),
                'the ingress hook runs once, for the QUIC connection');
        });
    });

    it('CONNECT to a loopback target is refused by the destination policy with 403', { timeout: 60_000 }, async () => {
        const certs = makeTestCerts();
        const echo = await startTcpEcho();
        const cfg = {
            runtime: { workers: 1 },
            endpoints: [{ name: 'masque', type: 'http3_proxy', listen: ['127.0.0.1:0'], quic: quic(certs) }],
        };
        await withTurnpike({ config: cfg }, async (tp) => {
            const port = tp.endpoint('masque').port;
            const r = await runProcess(TOOL, ['connect', `127.0.0.1:${port}`, `127.0.0.1:${echo.port}`, '--ca', certs.caFile, '--timeout-ms', '20000'], 60_000);
            assert.notEqual(r.code, 0);
            assert.match(r.stderr, /403/);
            await tp.waitForLog({ msg: 'error response', status: 403 });
        });
    });

    it('the config refuses an http3 endpoint without a certificate, and routes on an http3_proxy', { timeout: 30_000 }, async () => {
        const { checkConfig } = await import('../src/index.js');
        const no = await checkConfig({ endpoints: [{ name: 'h3', type: 'http3', listen: ['127.0.0.1:0'] }] });
        assert.notEqual(no.code, 0);
        assert.match(no.stderr, /quic\.certificate/);
        const certs = makeTestCerts();
        const routes = await checkConfig({
            endpoints: [{ name: 'p', type: 'http3_proxy', listen: ['127.0.0.1:0'], quic: quic(certs), routes: [{ upstream: 'x' }] }],
            upstreams: [{ name: 'x', servers: ['127.0.0.1:1'] }],
        });
        assert.notEqual(routes.code, 0);
        assert.match(routes.stderr, /routes/);
    });
});
