/**
 * The testkit's own tests, part 1: its pure helpers (YAML emitter, parsers, pattern checks) and its
 * origins and raw TCP client, on their own. Nothing here stands in for Turnpike: whatever the
 * testkit does with a Turnpike process (startTurnpike, withTurnpike, logs, hooksFor, the HTTP
 * clients through a proxy) is tested against the real binary in 00-testkit-turnpike.test.ts.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { afterEach, describe, it } from 'node:test';

import {
    cleanup,
    openResources,
    parseProxyStatus,
    parseResponse,
    PatternVerifier,
    patternBytes,
    randomBytes,
    rawTcp,
    sha256,
    startHttpOrigin,
    startTcpEcho,
    startTcpServer,
    startTcpSink,
    startTcpSource,
    StreamHash,
    toYaml,
} from '../src/index.js';

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

describe('origins and the raw TCP client', () => {
    afterEach(cleanup);

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
