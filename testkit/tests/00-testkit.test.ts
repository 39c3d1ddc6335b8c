/**
 * The testkit's own tests: its YAML emitter, parsers and pattern checks, its clients against a tiny
 * forward proxy written in Node, and its process handle against a fake Turnpike. These need no
 * Turnpike build.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { afterEach, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import {
    cleanup,
    connectTunnel,
    echoBody,
    openResources,
    parseProxyStatus,
    parseResponse,
    PatternVerifier,
    patternBytes,
    proxyRequest,
    randomBytes,
    rawHttp,
    rawTcp,
    RawConnection,
    sha256,
    startHttpOrigin,
    startTcpEcho,
    startTcpServer,
    startTcpSink,
    startTcpSource,
    startTurnpike,
    StreamHash,
    toYaml,
    track,
    waitFor,
    withTurnpike,
} from '../src/index.js';

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

describe('toYaml', () => {
    it('writes a config in block style with plain scalars where safe', () => {
        const yaml = toYaml({
            runtime: { workers: 1, drain_timeout: '30s', trace_hooks: true },
            endpoints: [
                {
                    name: 'proxy',
                    type: 'http_proxy',
                    listen: ['127.0.0.1:0', '[::1]:0'],
                    allow_destinations: ['127.0.0.0/8'],
                    timeouts: { header_read: '500ms' },
                    limits: { max_header_bytes: '16KiB', max_headers: 100 },
                    app: {},
                    skipped: undefined,
                },
            ],
            app: { psk: 'secret', private_cidrs: [] },
        });
        assert.equal(
            yaml,
            [
                'runtime:',
                '  workers: 1',
                '  drain_timeout: 30s',
                '  trace_hooks: true',
                'endpoints:',
                '  - name: proxy',
                '    type: http_proxy',
                '    listen:',
                '      - 127.0.0.1:0',
                '      - "[::1]:0"',
                '    allow_destinations:',
                '      - 127.0.0.0/8',
                '    timeouts:',
                '      header_read: 500ms',
                '    limits:',
                '      max_header_bytes: 16KiB',
                '      max_headers: 100',
                '    app: {}',
                'app:',
                '  psk: secret',
                '  private_cidrs: []',
                '',
            ].join('\n'),
        );
    });

    it('quotes strings that YAML would read as something else', () => {
        const cases: Array<[string, string]> = [
            ['true', '"true"'],
            ['no', '"no"'],
            ['Off', '"Off"'],
            ['null', '"null"'],
            ['~', '"~"'],
            ['', '""'],
            ['123', '"123"'],
            ['-1', '"-1"'],
            ['1.5', '"1.5"'],
            ['1e3', '"1e3"'],
            ['0x1F', '"0x1F"'],
            ['1:30', '"1:30"'],
            ['.inf', '".inf"'],
            ['a b', '"a b"'],
            ['a: b', '"a: b"'],
            ['#x', '"#x"'],
            ['x #y', '"x #y"'],
            ['- x', '"- x"'],
            ['key:', '"key:"'],
            ['*alias', '"*alias"'],
            ['&anchor', '"&anchor"'],
            ['!tag', '"!tag"'],
            ['{a}', '"{a}"'],
            ['say "hi"', '"say \\"hi\\""'],
            ['line\nbreak', '"line\\nbreak"'],
            ['tab\there', '"tab\\there"'],
            ['del\u007f', '"del\\u007f"'],
            ['bom\ufeff', '"bom\\ufeff"'],
            ['ünïcödé', '"ünïcödé"'],
            ['127.0.0.1', '127.0.0.1'],
            ['10.0.0.0/8', '10.0.0.0/8'],
            ['64KiB', '64KiB'],
            ['Preshared', 'Preshared'],
        ];
        for (const [input, expected] of cases) {
            assert.equal(toYaml({ k: input }), `k: ${expected}\n`, `string ${JSON.stringify(input)}`);
        }
    });

    it('writes other scalars, nested sequences and quoted keys', () => {
        assert.equal(toYaml({ a: null, b: false, c: -2.5, d: 10n }), 'a: null\nb: false\nc: -2.5\nd: 10\n');
        // 'y' is a YAML 1.1 boolean, so even as a key it is quoted.
        assert.equal(toYaml([[1, 2], [{ x: 1, y: [] }]]), '- - 1\n  - 2\n- - x: 1\n    "y": []\n');
        assert.equal(toYaml({ 'a key': 1, '1': 2 }), '"1": 2\n"a key": 1\n');
        assert.equal(toYaml('plain'), 'plain\n');
        assert.equal(toYaml([null, undefined]), '- null\n- null\n');
    });

    it('refuses values a config cannot hold', () => {
        assert.throws(() => toYaml({ n: NaN }), /NaN/);
        assert.throws(() => toYaml({ f: () => 1 }), /\$\.f is a Function/);
        assert.throws(() => toYaml({ d: new Date(0) }), /Date/);
        const cyclic: Record<string, unknown> = {};
        cyclic.self = cyclic;
        assert.throws(() => toYaml(cyclic), /cycle/);
    });
});

describe('parsers', () => {
    it('parseProxyStatus reads tokens, strings, numbers, booleans and lists', () => {
        assert.deepEqual(parseProxyStatus('turnpike; error=destination_ip_prohibited'), [
            { proxy: 'turnpike', params: { error: 'destination_ip_prohibited' } },
        ]);
        assert.deepEqual(parseProxyStatus('turnpike; next-hop="127.0.0.1:8080"'), [
            { proxy: 'turnpike', params: { 'next-hop': '127.0.0.1:8080' } },
        ]);
        assert.deepEqual(parseProxyStatus(['a;error=dns_error;rcode="NXDOMAIN"', '"b";received-status=503;x;y=?0']), [
            { proxy: 'a', params: { error: 'dns_error', rcode: 'NXDOMAIN' } },
            { proxy: 'b', params: { 'received-status': 503, x: true, y: false } },
        ]);
        assert.deepEqual(parseProxyStatus(undefined), []);
        assert.throws(() => parseProxyStatus('turnpike; error="unterminated'), /unterminated/);
        assert.throws(() => parseProxyStatus('turnpike ; error=x'), /expected ','/); // RFC 8941: no space before ';'
    });

    it('parseResponse frames bodies by length, chunks, method and close', () => {
        const cl = Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\nx-a: 2\r\n\r\nhelloEXTRA');
        const r = parseResponse(cl)!;
        assert.equal(r.status, 200);
        assert.equal(r.statusText, 'OK');
        assert.equal(r.headers['x-a'], '1, 2');
        assert.equal(r.body.toString(), 'hello');
        assert.equal(r.length, cl.length - 5);
        assert.equal(parseResponse(cl.subarray(0, cl.length - 9)), null);

        const chunked = Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nT: v\r\n\r\n');
        assert.equal(parseResponse(chunked)!.body.toString(), 'abcde');
        assert.equal(parseResponse(chunked)!.length, chunked.length);
        assert.equal(parseResponse(chunked.subarray(0, chunked.length - 1)), null);

        const head = Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n');
        assert.equal(parseResponse(head, { method: 'HEAD' })!.body.length, 0);
        assert.equal(parseResponse(head), null);

        const tunnel = Buffer.from('HTTP/1.1 200 Connection established\r\n\r\nearly');
        assert.equal(parseResponse(tunnel, { method: 'CONNECT' })!.length, tunnel.length - 5);

        const byClose = Buffer.from('HTTP/1.0 400 Bad Request\r\n\r\nbad');
        assert.equal(parseResponse(byClose), null);
        assert.equal(parseResponse(byClose, { eof: true })!.body.toString(), 'bad');
        assert.throws(() => parseResponse(Buffer.from('garbage\r\n\r\n')), /status line/);
    });

    it('PatternVerifier accepts the pattern in any chunking and pins the first wrong byte', () => {
        const data = patternBytes(3_000_000);
        const v = new PatternVerifier();
        for (let i = 0; i < data.length; ) {
            const n = 1 + ((i * 7919) % 300_000);
            v.update(data.subarray(i, i + n));
            i += n;
        }
        assert.ok(v.ok);
        assert.equal(v.bytes, data.length);

        const dropped = Buffer.concat([data.subarray(0, 1_234_567), data.subarray(1_234_568, 2_000_000)]);
        const w = new PatternVerifier();
        w.update(dropped);
        assert.equal(w.ok, false);
        assert.equal(w.mismatchAt, 1_234_567);

        const later = new PatternVerifier(1000);
        assert.ok(later.update(patternBytes(5000, 1000)));
    });
});

/** A minimal HTTP forward proxy (absolute-form requests and CONNECT) to exercise the clients. */
async function startFakeProxy(options: { earlyBytes?: string } = {}): Promise<{ host: string; port: number; close(): void }> {
    const server = http.createServer((req, res) => {
        const url = new URL(req.url!);
        const up = http.request(
            { host: url.hostname, port: url.port, path: url.pathname + url.search, method: req.method, headers: req.headers },
            (upRes) => {
                res.writeHead(upRes.statusCode!, upRes.headers);
                upRes.pipe(res);
            },
        );
        req.pipe(up);
    });
    server.on('connect', (req: http.IncomingMessage, client: net.Socket, head: Buffer) => {
        const [host, port] = req.url!.split(':');
        if (port === '1') {
            client.end('HTTP/1.1 502 Bad Gateway\r\nProxy-Status: fake; error=connection_refused\r\nContent-Length: 4\r\n\r\nnope');
            return;
        }
        const up = net.connect(Number(port), host, () => {
            client.write('HTTP/1.1 200 Connection established\r\n\r\n' + (options.earlyBytes ?? ''));
            if (head.length) up.write(head);
            up.pipe(client);
            client.pipe(up);
        });
        up.on('error', () => client.destroy());
        client.on('error', () => up.destroy());
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const close = () => {
        server.close();
        server.closeAllConnections();
    };
    track('fake proxy', close);
    return { host: '127.0.0.1', port: (server.address() as net.AddressInfo).port, close };
}

describe('clients and origins (against a Node proxy)', () => {
    afterEach(cleanup);

    it('proxyRequest sends absolute-form requests and reads the response', async () => {
        const proxy = await startFakeProxy();
        const origin = await startHttpOrigin();
        const res = await proxyRequest(proxy, { url: origin.url('/a?b=1'), headers: { 'x-test': 'yes' } });
        assert.equal(res.status, 200);
        const echoed = res.json<{ method: string; url: string; headers: Record<string, string> }>();
        assert.equal(echoed.method, 'GET');
        assert.equal(echoed.url, '/a?b=1');
        assert.equal(echoed.headers['x-test'], 'yes');
        assert.equal(echoed.headers.host, origin.address);
        assert.ok(res.localPort > 0);
        assert.equal(origin.requests.length, 1);
        assert.equal(origin.connections, 1);
    });

    it('proxyRequest streams content-length and chunked bodies', async () => {
        const proxy = await startFakeProxy();
        const origin = await startHttpOrigin(echoBody);
        const body = randomBytes(1_000_003);
        for (const chunked of [false, true]) {
            const res = await proxyRequest(proxy, { method: 'POST', url: origin.url('/echo'), body, chunked });
            assert.equal(res.status, 200);
            assert.equal(sha256(res.body), sha256(body));
            const got = origin.requests.at(-1)!;
            assert.equal(got.headers['transfer-encoding'], chunked ? 'chunked' : undefined);
            assert.equal(sha256(got.body), sha256(body));
        }
    });

    it('connectTunnel returns the tunnel with early bytes preserved, and refusals with their body', async () => {
        const proxy = await startFakeProxy({ earlyBytes: 'EARLY' });
        const echo = await startTcpEcho();
        const t = await connectTunnel(proxy, echo.address);
        assert.equal(t.status, 200);
        const conn = RawConnection.wrap(t.socket);
        assert.equal((await conn.readBytes(5)).toString(), 'EARLY');
        await conn.write('ping');
        assert.equal((await conn.readUntil('ping')).toString(), 'ping');
        conn.destroy();

        const refused = await connectTunnel(proxy, '127.0.0.1:1');
        assert.equal(refused.status, 502);
        assert.equal(refused.body.toString(), 'nope');
        assert.deepEqual(parseProxyStatus(refused.headers['proxy-status'])[0]!.params, { error: 'connection_refused' });
    });

    it('rawHttp reports the raw reply and whether the peer closed', async () => {
        const server = await startTcpServer((s) => {
            s.once('data', (d) => {
                if (d.toString().startsWith('BAD')) s.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
                else s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'); // keeps the connection open
            });
        });
        const bad = await rawHttp(server, 'BAD REQUEST\r\n\r\n');
        assert.equal(bad.status, 400);
        assert.equal(bad.closed, true);
        assert.match(bad.text, /^HTTP\/1.1 400 Bad Request\r\n/);

        const good = await rawHttp(server, 'GET / HTTP/1.1\r\n\r\n', { until: 'response' });
        assert.equal(good.status, 200);
        assert.equal(good.response!.body.toString(), 'ok');
        assert.equal(good.closed, false);

        const open = await rawHttp(server, 'GET / HTTP/1.1\r\n\r\n', { timeoutMs: 300 });
        assert.equal(open.closed, false);
        assert.ok(open.elapsedMs >= 290);
    });

    it('RawConnection reads by count, pattern and to the end; half-close keeps reading', async () => {
        const server = await startTcpServer((s) => {
            let got = 0;
            s.on('data', (d) => (got += d.length));
            s.on('end', () => s.end(`hello\r\nworld: ${got}`));
        });
        const c = await rawTcp(server);
        await c.end('12345');
        assert.equal((await c.readUntil(/\r\n/)).toString(), 'hello\r\n');
        assert.equal((await c.readBytes(3)).toString(), 'wor');
        assert.equal((await c.readToEnd()).toString(), 'ld: 5');
        await assert.rejects(c.readBytes(1, 100), /closed/);
    });

    it('sink, source and echo move big data intact', async () => {
        const sink = await startTcpSink();
        const data = randomBytes(3 << 20);
        const c = await rawTcp(sink);
        await c.end(data);
        await sink.waitForBytes(data.length);
        assert.equal(sink.sha256(), sha256(data));
        await c.waitForPeerClose();
        assert.equal(sink.ended, 1);

        const source = await startTcpSource({ bytes: 5_000_000 });
        const s = net.connect(source.port, source.host);
        const v = new PatternVerifier();
        s.on('data', (d: Buffer) => v.update(d));
        await new Promise((resolve) => s.on('end', resolve));
        assert.ok(v.ok, `mismatch at ${v.mismatchAt}`);
        assert.equal(v.bytes, 5_000_000);
        assert.equal(source.sent, 5_000_000);
        s.destroy();

        const echo = await startTcpEcho();
        const e = net.connect(echo.port, echo.host);
        const h = new StreamHash();
        e.on('data', (d: Buffer) => h.update(d));
        e.end(data);
        await new Promise((resolve) => e.on('close', resolve));
        assert.equal(h.bytes, data.length);
        assert.equal(h.digest(), sha256(data));
    });

    it('cleanup() closes everything the testkit started', async () => {
        const origin = await startHttpOrigin();
        await startTcpEcho();
        const c = await rawTcp(origin);
        assert.ok(openResources().length >= 3);
        await cleanup();
        assert.deepEqual(openResources(), []);
        await c.closedPromise;
        await assert.rejects(rawTcp(origin, { timeoutMs: 1000 }), /ECONNREFUSED/);
    });
});

/** A fake Turnpike in Node that speaks the log contract: ready line, hook and close lines, drain. */
const FAKE_TURNPIKE = `
const net = require('net');
const fs = require('fs');
const log = (o) => process.stderr.write(JSON.stringify(o) + '\\n');
const cfg = fs.readFileSync(process.argv[process.argv.indexOf('-c') + 1], 'utf8');
if (cfg.includes('fail')) { process.stderr.write('config.yaml:1:1: boom\\n'); process.exit(2); }
let next = 1;
const server = net.createServer((s) => {
  const conn = next++;
  const peer = s.remoteAddress + ':' + s.remotePort;
  log({ msg: 'hook', conn, hook: 'ingress.handle_connection', peer });
  s.on('data', (d) => {
    if (String(d) === 'crash') {
      process.stderr.write('==1==ERROR: AddressSanitizer: heap-use-after-free on address 0x1\\n    #0 0x1 in tp_conn_free\\n');
      process.exit(1);
    }
    s.write(d);
  });
  s.on('end', () => s.end());
  s.on('close', () => {
    log({ msg: 'close', conn, endpoint: 'echo', peer, reason: 'client_closed' });
    log({ msg: 'hook', conn, hook: 'ingress.handle_connection_close', peer });
  });
});
server.listen(0, '127.0.0.1', () => {
  log({ level: 'info', msg: 'ready', pid: process.pid,
        endpoints: [{ name: 'echo', type: 'tcp', listen: ['127.0.0.1:' + server.address().port] }] });
});
process.on('SIGTERM', () => {
  log({ msg: 'draining' });
  server.close(() => { log({ msg: 'stopped' }); process.exit(cfg.includes('exit3') ? 3 : 0); });
});
`;

function fakeTurnpikeBinary(): string {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fake-turnpike-'));
    fs.writeFileSync(path.join(dir, 'fake.cjs'), FAKE_TURNPIKE);
    const bin = path.join(dir, 'turnpike');
    fs.writeFileSync(bin, `#!/bin/sh\nexec "${process.execPath}" "${dir}/fake.cjs" "$@"\n`, { mode: 0o755 });
    track(`fake turnpike ${dir}`, () => fs.rmSync(dir, { recursive: true, force: true }));
    return bin;
}

describe('process handle (against a fake Turnpike)', () => {
    afterEach(cleanup);

    it('starts, finds endpoints, traces a connection, reads RSS and stops cleanly', async () => {
        const binary = fakeTurnpikeBinary();
        await withTurnpike({ binary, config: { runtime: { trace_hooks: true } } }, async (tp) => {
            const ep = tp.endpoint('echo');
            assert.equal(ep, tp.endpoint());
            assert.equal(ep.host, '127.0.0.1');
            assert.ok(ep.port > 0);
            assert.throws(() => tp.endpoint('nope'), /no endpoint 'nope'.*echo/);
            assert.match(tp.configText, /trace_hooks: true/);

            const c = await rawTcp(ep);
            await c.write('x');
            await c.readBytes(1);
            const port = c.localPort;
            await c.end();
            await c.waitForPeerClose();
            c.destroy();
            assert.deepEqual(await tp.hooksFor(port), ['ingress.handle_connection', 'ingress.handle_connection_close']);
            const trace = await tp.connectionFor({ localPort: port });
            assert.equal(trace.close.reason, 'client_closed');
            assert.ok(tp.rss() > 1 << 20);
            assert.ok(tp.rssPeak() >= tp.rss() / 2);
        });
    });

    it('waitForLog takes predicates and partial objects, and fails with the stderr tail', async () => {
        const tp = await startTurnpike({ binary: fakeTurnpikeBinary(), config: 'exit3: true\n' });
        const ready = await tp.waitForLog((l) => l.msg === 'ready');
        assert.equal(ready.pid, tp.pid);
        await assert.rejects(tp.waitForLog({ msg: 'never' }, 100), /timed out after 100 ms[\s\S]*"msg":"ready"/);
        tp.signal('SIGTERM');
        await tp.waitForLog({ msg: 'draining' });
        assert.deepEqual(await tp.exited, { code: 3, signal: null });
        assert.ok(tp.findLog({ msg: 'stopped' }));
        await assert.rejects(tp.waitForLog({ msg: 'never' }), /exited \(status 3\)/);
        await assert.rejects(tp.assertCleanExit(), /did not exit cleanly \(status 3\)/);
        assert.throws(() => tp.rss(), /exited/);
    });

    it('withTurnpike blames a crash and shows the sanitizer report', async () => {
        const binary = fakeTurnpikeBinary();
        await assert.rejects(
            withTurnpike({ binary, config: {} }, async (tp) => {
                const c = await rawTcp(tp.endpoint());
                await c.write('crash');
                await c.readBytes(1, 2000); // the connection dies with the process
            }),
            (err: Error) => {
                assert.match(err.message, /connection closed/);
                assert.match(err.message, /Turnpike exited during the test \(status 1\)/);
                assert.match(err.message, /sanitizer report:[\s\S]*heap-use-after-free/);
                return true;
            },
        );
    });

    for (const how of ['exit', 'SIGTERM', 'SIGINT'] as const) {
        it(`kills every Turnpike it started when the test process ends (${how})`, async () => {
            const binary = fakeTurnpikeBinary();
            const index = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'src', 'index.js');
            const script = `
                const tk = await import(${JSON.stringify(index)});
                const tp = await tk.startTurnpike({ binary: ${JSON.stringify(binary)}, config: {} });
                process.stdout.write(tp.pid + '\\n');
                if (${JSON.stringify(how)} === 'exit') setTimeout(() => process.exit(0), 500);
                setInterval(() => {}, 1000);
            `;
            const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
            const untrack = track('test child', () => child.kill('SIGKILL'));
            let out = '';
            child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
            await waitFor(() => out.includes('\n'), { timeoutMs: 10_000, message: 'the child did not start Turnpike' });
            const pid = Number(out.trim());
            assert.ok(isAlive(pid), 'the fake Turnpike runs');
            if (how !== 'exit') child.kill(how);
            await new Promise((resolve) => child.once('exit', resolve));
            untrack();
            await waitFor(() => !isAlive(pid), { timeoutMs: 5000, message: `Turnpike pid ${pid} outlived the test process` });
        });
    }

    it('startTurnpike rejects with the stderr tail when the process exits before ready', async () => {
        await assert.rejects(
            startTurnpike({ binary: fakeTurnpikeBinary(), config: { fail: true } }),
            /did not become ready: Turnpike exited \(status 2\)[\s\S]*config.yaml:1:1: boom/,
        );
        await assert.rejects(startTurnpike({ binary: '/nonexistent/turnpike', config: {} }), /binary not found/);
    });
});
