/**
 * Response framing: a raw TCP origin answers with crafted responses (both framings, bad chunk
 * sizes, duplicate lengths, bytes after the body, control characters). Whatever Turnpike makes of
 * them, neither the client connection nor a kept upstream connection may fall out of step: the
 * client gets a clean answer (or a 502, or a cut-off response it can tell is incomplete), and the
 * next request is answered by the origin's answer to it, never by bytes from the crafted one.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';

import {
    cleanup,
    parseResponse,
    proxyStatusParams,
    rawTcp,
    sleep,
    startTcpServer,
    startTurnpike,
    type RawConnection,
    type TcpServer,
    type Turnpike,
} from '../src/index.js';
import { LOOPBACK, proxyConfig } from './common.js';

/** What a smuggled response looks like: if a client ever sees SMUGGLED, framing went wrong. */
const SMUGGLED = 'HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nSMUGGLED';

type Outcome =
    /** 502 with Proxy-Status error=http_protocol_error, then close. */
    | { badGateway: true }
    /** The client gets a response head but never a complete response: the connection is cut. */
    | { cut: true }
    /** A complete 200 with exactly this body (and, with `headers`, these header values). */
    | { body: string; headers?: Record<string, string | undefined> };

interface ResponseCase {
    name: string;
    /** The origin's whole answer to GET /crafted. */
    response: string;
    /** Whether the origin closes after it (read-until-close bodies). */
    closeAfter?: boolean;
    expect: Outcome;
    /** A known failure, reported but not failing the suite: what has to change. */
    todo?: string;
}

const CASES: ResponseCase[] = [
    {
        name: 'Content-Length and Transfer-Encoding: chunked',
        response: `HTTP/1.1 200 OK\r\nContent-Length: 60\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n${SMUGGLED}`,
        expect: { badGateway: true },
    },
    {
        name: 'two differing Content-Length lines',
        response: `HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 50\r\n\r\nhello${SMUGGLED}`,
        expect: { badGateway: true },
    },
    {
        name: 'Content-Length: +5',
        response: `HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello${SMUGGLED}`,
        expect: { badGateway: true },
    },
    {
        name: 'Content-Length overflowing 64 bits',
        response: `HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551621\r\n\r\nhello${SMUGGLED}`,
        expect: { badGateway: true },
    },
    {
        name: 'bytes after a Content-Length body (a second response)',
        response: `HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello${SMUGGLED}`,
        expect: { body: 'hello' },
    },
    {
        name: '204 with a body',
        response: `HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello${SMUGGLED}`,
        // 204 has no body whatever its headers say (RFC 9112 6.3 (1)): "hello" must not follow
        // it to the client, and Content-Length is not sent on a 204 (RFC 9110 8.6).
        expect: { body: '', headers: { 'content-length': undefined } },
    },
    {
        name: 'chunk size 0x5',
        response: `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n${SMUGGLED}`,
        expect: { cut: true },
    },
    {
        name: 'chunk size with a trailing space',
        response: `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n${SMUGGLED}`,
        expect: { cut: true },
    },
    {
        name: 'chunk size 2^64 + 5',
        response: `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000005\r\nhello\r\n0\r\n\r\n${SMUGGLED}`,
        expect: { cut: true },
    },
    {
        name: 'chunk data not followed by CRLF',
        response: `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n${SMUGGLED}`,
        expect: { cut: true },
        // llhttp 8.1 skips the two bytes after chunk data unchecked; the strict scanner in front
        // of the response parser (src/h1/scan.h) refuses them.
    },
    {
        name: 'chunk data followed by a bare LF',
        response: `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n${SMUGGLED}`,
        expect: { cut: true },
    },
    {
        name: 'Transfer-Encoding: xchunked (read until close, RFC 9112 6.3 (4))',
        response: `HTTP/1.1 200 OK\r\nTransfer-Encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n`,
        closeAfter: true,
        expect: { body: '5\r\nhello\r\n0\r\n\r\n' },
    },
    {
        name: 'NUL in a header value',
        response: `HTTP/1.1 200 OK\r\nX-Bad: a\0b\r\nContent-Length: 5\r\n\r\nhello`,
        expect: { badGateway: true },
    },
    {
        name: 'obs-fold in a header',
        response: `HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 5\r\n\r\nhello`,
        // RFC 9112 5.2: a proxy answers 502 or replaces the fold with SP before forwarding; the
        // strict scanner in front of the response parser takes the first way.
        expect: { badGateway: true },
    },
    {
        name: 'bare LF line ends in the head',
        response: `HTTP/1.1 200 OK\nContent-Length: 5\n\nhello`,
        // A recipient MAY accept bare LF (RFC 9112 2.2); llhttp refuses it in field lines.
        expect: { badGateway: true },
    },
];

/** A raw origin: GET /crafted gets the case's bytes, GET /second gets 'second'. */
async function startCraftedOrigin(pick: () => ResponseCase): Promise<TcpServer & { seen: string[] }> {
    const seen: string[] = [];
    const server = await startTcpServer((socket: net.Socket) => {
        let buf = Buffer.alloc(0);
        socket.on('data', (c: Buffer) => {
            buf = Buffer.concat([buf, c]);
            for (;;) {
                const end = buf.indexOf('\r\n\r\n');
                if (end < 0) return;
                const line = buf.subarray(0, buf.indexOf('\r\n')).toString('latin1');
                buf = buf.subarray(end + 4);
                const path = line.split(' ')[1] ?? '';
                seen.push(path);
                if (path === '/crafted') {
                    const c = pick();
                    if (c.closeAfter) socket.end(Buffer.from(c.response, 'latin1'));
                    else socket.write(Buffer.from(c.response, 'latin1'));
                } else {
                    socket.write('HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond');
                }
            }
        });
        socket.on('end', () => socket.end());
    });
    return Object.assign(server, { seen });
}

const get = (origin: TcpServer, path: string) => `GET http://${origin.address}${path} HTTP/1.1\r\nHost: ${origin.address}\r\n\r\n`;

/** Reads until a complete response or the peer closes; null when it closed first. */
async function readResponseOrClose(conn: RawConnection, timeoutMs = 5000) {
    await conn.waitForData((b) => {
        try {
            return parseResponse(b, { eof: conn.peerEnded }) !== null;
        } catch {
            return true;
        }
    }, timeoutMs).catch(() => undefined);
    await sleep(20);
    let r = null;
    try {
        r = parseResponse(conn.peek(), { eof: conn.peerEnded });
    } catch {
        r = null;
    }
    return r;
}

describe('response framing from origins', () => {
    let tp: Turnpike;
    let origin: TcpServer & { seen: string[] };
    let current: ResponseCase = CASES[0]!;

    before(async () => {
        origin = await startCraftedOrigin(() => current);
        tp = await startTurnpike({ config: proxyConfig({ allow_destinations: LOOPBACK }) });
    });
    after(async () => {
        try {
            await tp.stop();
            await tp.assertCleanExit();
        } finally {
            await cleanup();
        }
    });

    for (const c of CASES) {
        it(c.name, { timeout: 30_000, todo: c.todo }, async () => {
            current = c;
            const ep = tp.endpoint('proxy');
            const conn = await rawTcp(ep);
            try {
                await conn.write(get(origin, '/crafted'));
                let reuse = true;
                if ('badGateway' in c.expect) {
                    const r = await readResponseOrClose(conn);
                    assert.ok(r, `no complete response: ${JSON.stringify(conn.peek().toString('latin1'))}`);
                    assert.equal(r.status, 502, `got ${r.status}: ${r.body.toString('latin1')}`);
                    assert.equal(proxyStatusParams(r.headers['proxy-status']).error, 'http_protocol_error');
                    await conn.waitForPeerClose(5000);
                    reuse = false;
                } else if ('cut' in c.expect) {
                    await conn.waitForPeerClose(5000);
                    let complete = null;
                    try {
                        complete = parseResponse(conn.peek(), { eof: true });
                    } catch {
                        complete = null;
                    }
                    assert.ok(
                        complete === null || complete.status === 502,
                        `the client got a complete response from a broken one: ${JSON.stringify(conn.peek().toString('latin1'))}`,
                    );
                    reuse = false;
                } else {
                    const r = await readResponseOrClose(conn);
                    assert.ok(r, `no complete response: ${JSON.stringify(conn.peek().toString('latin1'))}`);
                    assert.equal(r.status, c.name.startsWith('204') ? 204 : 200, r.body.toString('latin1'));
                    assert.equal(r.body.toString('latin1'), c.expect.body);
                    for (const [k, v] of Object.entries(c.expect.headers ?? {})) assert.equal(r.headers[k], v, k);
                    // Consume it; what follows must be the next answer, nothing else.
                    await conn.readBytes(r.length);
                    reuse = !conn.peerEnded;
                }
                assert.ok(!conn.peek().toString('latin1').includes('SMUGGLED'), 'smuggled bytes reached the client');
                // The next request, on the same client connection when it is still open: the
                // origin's answer to it, not the rest of the crafted response.
                const next = reuse ? conn : await rawTcp(ep);
                await next.write(get(origin, '/second'));
                const r2 = await next.readResponse({ timeoutMs: 5000 });
                assert.equal(r2.status, 200);
                assert.equal(r2.body.toString('latin1'), 'second', 'the next request got the answer meant for it');
                if (next !== conn) next.destroy();
            } finally {
                conn.destroy();
            }
        });
    }
});
