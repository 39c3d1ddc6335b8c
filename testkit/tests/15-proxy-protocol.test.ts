/**
 * The PROXY protocol on-ramp with real senders (curl --haproxy-protocol, HAProxy send-proxy and
 * send-proxy-v2 with TLVs), malformed headers refused one by one, the header timeout, and the
 * off-ramp sending a header upstream.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, it } from 'node:test';

import {
    buildDir,
    cleanup,
    closedPort,
    rawTcp,
    startHttpOrigin,
    startTcpEcho,
    startTcpServer,
    track,
    waitFor,
    withTurnpike,
} from '../src/index.js';
import { assertStillServes, LOOPBACK } from './common.js';

const run = promisify(execFile);
const lab = () => path.join(buildDir(), 'tests', 'apps', 'hook-lab');

function ppConfig(mode: string, extra: Record<string, unknown> = {}, forLab = false) {
    const config: Record<string, unknown> = {
        runtime: { workers: 1, trace_hooks: true },
        endpoints: [
            { name: 'proxy', type: 'http_proxy', listen: ['127.0.0.1:0'], allow_destinations: LOOPBACK, proxy_protocol: mode, ...extra },
        ],
    };
    if (forLab) config.app = { banner: 'pp' };
    return config;
}

/** Starts HAProxy in TCP mode in front of `port`, sending a PROXY header of `version`. */
async function startHaproxy(port: number, version: 1 | 2): Promise<number> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tp-haproxy-'));
    const front = await closedPort();
    const server =
        version === 1
            ? `server tp 127.0.0.1:${port} send-proxy`
            : `server tp 127.0.0.1:${port} send-proxy-v2 proxy-v2-options unique-id,crc32c,authority`;
    fs.writeFileSync(
        path.join(dir, 'haproxy.cfg'),
        [
            'global',
            '  nbthread 1',
            'defaults',
            '  mode tcp',
            '  timeout connect 5s',
            '  timeout client 30s',
            '  timeout server 30s',
            'listen front',
            `  bind 127.0.0.1:${front}`,
            '  unique-id-format tp-%{+X}o%ci:%cp',
            `  ${server}`,
            '',
        ].join('\n'),
    );
    const child = spawn('haproxy', ['-db', '-f', path.join(dir, 'haproxy.cfg')], { stdio: 'ignore' });
    track('haproxy', () => child.kill('SIGKILL'), () => child.kill('SIGKILL'));
    await waitFor(
        () =>
            new Promise<boolean>((resolve) => {
                const s = net.connect(front, '127.0.0.1', () => {
                    s.destroy();
                    resolve(true);
                });
                s.on('error', () => resolve(false));
            }),
        { timeoutMs: 10_000, message: 'haproxy listening' },
    );
    return front;
}

describe('PROXY protocol on-ramp', () => {
    afterEach(cleanup);

    it('curl --haproxy-protocol (v1): the request is served and hooks see the header', { timeout: 30_000 }, async () => {
        const origin = await startHttpOrigin();
        await withTurnpike({ binary: lab(), config: ppConfig('v1', {}, true) }, async (tp) => {
            const { stdout } = await run('curl', ['-s', '--haproxy-protocol', '-x', `http://${tp.endpoint('proxy').address}`, origin.url('/x')]);
            assert.match(stdout, /"url":"\/x"/);
            const h = await tp.waitForLog({ msg: 'app', event: 'proxy_header' });
            assert.equal(h.version, 1);
            assert.match(String(h.src), /^127\.0\.0\.1:\d+$/);
            const hooks = tp.logs.filter((l) => l.msg === 'hook').map((l) => l.hook);
            assert.deepEqual(hooks.slice(0, 2), ['proxy_protocol.handle_connection', 'ingress.handle_connection']);
        });
    });

    for (const version of [1, 2] as const) {
        it(`HAProxy send-proxy${version === 2 ? '-v2 with TLVs' : ''}: the client's address replaces HAProxy's`, { timeout: 30_000 }, async () => {
            const echo = await startTcpEcho();
            const config = ppConfig(version === 1 ? 'v1' : 'any', {}, true);
            await withTurnpike({ binary: lab(), config }, async (tp) => {
                const front = await startHaproxy(tp.endpoint('proxy').port, version);
                const c = await rawTcp({ host: '127.0.0.1', port: front });
                await c.write(`CONNECT 127.0.0.1:${echo.port} HTTP/1.1\r\nHost: x\r\n\r\n`);
                const res = await c.readUntil('\r\n\r\n', 10_000);
                assert.match(res.toString(), /^HTTP\/1\.1 200 /);
                await c.write('ping');
                assert.equal((await c.readBytes(4, 5000)).toString(), 'ping');
                // (HAProxy's readiness probe made a connection of its own first: find ours.)
                const h = await tp.waitForLog({ msg: 'app', event: 'proxy_header', src: `127.0.0.1:${c.localPort}` });
                assert.equal(h.version, version);
                const hook = await tp.waitForLog({ msg: 'hook', hook: 'ingress.handle_connection', peer: `127.0.0.1:${c.localPort}` });
                assert.ok(hook, 'hooks and logs see the client, not HAProxy');
                if (version === 2) {
                    assert.equal(h.crc32c, true, 'CRC32C present and verified');
                    const uid = Buffer.from(String(h.unique_id), 'hex').toString();
                    assert.match(uid, /^tp-/, `unique id TLV: ${uid}`);
                }
                c.destroy();
            });
        });
    }

    it('refuses malformed headers one by one with a logged reason, and keeps serving', { timeout: 60_000 }, async () => {
        const v2sig = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');
        const v2 = (verCmd: number, famProto: number, body: Buffer, len = body.length) =>
            Buffer.concat([v2sig, Buffer.from([verCmd, famProto, len >> 8, len & 255]), body]);
        const inet = Buffer.from([127, 0, 0, 1, 127, 0, 0, 2, 0x30, 0x39, 0x01, 0xbb]);
        const bad: Array<[string, Buffer]> = [
            ['plain HTTP instead of a header', Buffer.from('GET / HTTP/1.1\r\n\r\n')],
            ['lower-case v1', Buffer.from('proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n')],
            ['v1 unknown protocol', Buffer.from('PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n')],
            ['v1 double space', Buffer.from('PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n')],
            ['v1 bad IPv4', Buffer.from('PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n')],
            ['v1 IPv6 in TCP4', Buffer.from('PROXY TCP4 ::1 ::1 1 2\r\n')],
            ['v1 port out of range', Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n')],
            ['v1 leading zero port', Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n')],
            ['v1 missing port', Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n')],
            ['v1 bare LF', Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n')],
            ['v1 too long', Buffer.from('PROXY UNKNOWN ' + 'x'.repeat(120) + '\r\n')],
            ['v1 trailing garbage', Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1 2 x\r\n')],
            ['v2 bad signature', Buffer.concat([Buffer.from('0d0a0d0a000d0a515549540b', 'hex'), Buffer.from([0x21, 0x11, 0, 12]), inet])],
            ['v2 version 3', v2(0x31, 0x11, inet)],
            ['v2 command 2', v2(0x22, 0x11, inet)],
            ['v2 family 4', v2(0x21, 0x41, inet)],
            ['v2 transport 3', v2(0x21, 0x13, inet)],
            ['v2 too short for AF_INET', v2(0x21, 0x11, inet.subarray(0, 8))],
            ['v2 TLV overruns', v2(0x21, 0x11, Buffer.concat([inet, Buffer.from([0x02, 0x00, 0x10, 0x41])]))],
            ['v2 bad CRC32C', v2(0x21, 0x11, Buffer.concat([inet, Buffer.from([0x03, 0x00, 0x04, 1, 2, 3, 4])]))],
            ['v2 unique id over 128 bytes', v2(0x21, 0x11, Buffer.concat([inet, Buffer.from([0x05, 0x00, 129]), Buffer.alloc(129, 0x41)]))],
            ['v2 over the size limit', Buffer.concat([v2sig, Buffer.from([0x21, 0x11, 0x20, 0x00])])],
        ];
        await withTurnpike({ config: ppConfig('any', { timeouts: { proxy_protocol: '2s' } }) }, async (tp) => {
            for (const [what, bytes] of bad) {
                const c = await rawTcp(tp.endpoint('proxy'));
                await c.write(bytes).catch(() => undefined);
                await c.waitForPeerClose(5000);
                const line = await tp.waitForLog((l) => l.msg === 'proxy protocol refused' && l.peer === `127.0.0.1:${c.localPort}`, 5000);
                assert.ok(String(line.reason).length > 5, `${what}: a reason is logged (${line.reason})`);
                const close = await tp.waitForLog((l) => l.msg === 'close' && l.peer === `127.0.0.1:${c.localPort}`, 5000);
                assert.equal(close.reason, 'protocol_error', what);
                c.destroy();
            }
            assert.ok(bad.length >= 20);
            // A well-formed v1 header still works afterwards.
            const origin = await startHttpOrigin();
            const { stdout } = await run('curl', ['-s', '--haproxy-protocol', '-x', `http://${tp.endpoint('proxy').address}`, origin.url('/ok')]);
            assert.match(stdout, /"url":"\/ok"/);
        });
    });

    it('a client that sends no header is closed after timeouts.proxy_protocol', { timeout: 30_000 }, async () => {
        await withTurnpike({ config: ppConfig('v2', { timeouts: { proxy_protocol: '300ms' } }) }, async (tp) => {
            const c = await rawTcp(tp.endpoint('proxy'));
            const t0 = Date.now();
            await c.waitForPeerClose(5000);
            assert.ok(Date.now() - t0 >= 250, 'not before the timeout');
            const close = await tp.waitForLog((l) => l.msg === 'close' && l.peer === `127.0.0.1:${c.localPort}`, 5000);
            assert.equal(close.reason, 'header_timeout');
        });
    });

    for (const version of ['v1', 'v2'] as const) {
        it(`egress.send_proxy_protocol ${version}: the upstream gets a header with the client's addresses`, { timeout: 30_000 }, async () => {
            const got: Buffer[] = [];
            const upstream = await startTcpServer((s: net.Socket) => {
                s.on('data', (d: Buffer) => got.push(d));
                s.on('end', () => s.end());
            });
            const config = {
                runtime: { workers: 1 },
                endpoints: [{ name: 'l4', type: 'tcp', listen: ['127.0.0.1:0'], upstream: `127.0.0.1:${upstream.port}`, egress: { send_proxy_protocol: version } }],
            };
            await withTurnpike({ config }, async (tp) => {
                const c = await rawTcp(tp.endpoint('l4'));
                await c.write('payload');
                await waitFor(() => Buffer.concat(got).includes('payload'), { timeoutMs: 5000, message: 'payload upstream' });
                const all = Buffer.concat(got);
                if (version === 'v1') {
                    assert.equal(all.toString(), `PROXY TCP4 127.0.0.1 127.0.0.1 ${c.localPort} ${tp.endpoint('l4').port}\r\npayload`);
                } else {
                    assert.ok(all.subarray(0, 12).equals(Buffer.from('0d0a0d0a000d0a515549540a', 'hex')), 'v2 signature');
                    assert.equal(all[12], 0x21, 'v2 PROXY');
                    assert.equal(all.readUInt16BE(16 + 8), c.localPort, 'source port');
                    assert.ok(all.subarray(all.length - 7).equals(Buffer.from('payload')));
                }
                c.destroy();
            });
        });
    }

    it('keeps serving plain endpoints next to a PROXY one', { timeout: 30_000 }, async () => {
        await withTurnpike({ config: { runtime: { workers: 1 }, endpoints: [{ name: 'proxy', type: 'http_proxy', listen: ['127.0.0.1:0'], allow_destinations: LOOPBACK }] } }, async (tp) => {
            await assertStillServes(tp);
        });
    });
});
