/**
 * An HTTP/1.1 origin that records, per TCP connection, the raw bytes it received and the requests
 * its (strict) parser read from them: for request-smuggling and framing tests that must prove no
 * input reached the origin as two requests, or with a body boundary moved.
 */
import http from 'node:http';
import net from 'node:net';

import { listenTracked } from './listen.js';
import type { ServerBase } from './origins.js';
import { waitFor } from './wait.js';

/** One request as the origin's parser read it. */
export interface RecordedRequest {
    method: string;
    /** The request target as received (origin form, e.g. '/x?y=1'). */
    target: string;
    httpVersion: string;
    /** Header fields in order, as received: [name, value]. */
    headers: Array<[string, string]>;
    /** Body bytes (de-chunked) received so far. */
    body: Buffer;
    /** True once the whole body arrived (the parser saw the message end). */
    complete: boolean;
    /** The connection it came on (an index into RecordingOrigin.connectionLog). */
    connection: number;
}

/** One TCP connection to the origin. */
export interface RecordedConnection {
    /** Its index in RecordingOrigin.connectionLog. */
    readonly index: number;
    /** The peer's port (Turnpike's upstream side). */
    readonly remotePort: number;
    /** Every byte received on it, in order. */
    readonly raw: Buffer;
    /** The requests parsed from those bytes, in order (the last one may be incomplete). */
    readonly requests: RecordedRequest[];
    /** Set when the origin's parser refused the bytes (e.g. 'HPE_INVALID_METHOD: ...'). */
    readonly parseError: string | null;
    /** True once the connection closed. */
    readonly closed: boolean;
}

export interface RecordingOrigin extends ServerBase {
    /** 'http://127.0.0.1:PORT' + path. */
    url(path?: string): string;
    /** Every connection accepted so far, in order. */
    readonly connectionLog: readonly RecordedConnection[];
    /** Every request parsed so far (complete or not), over all connections, in order. */
    readonly requests: readonly RecordedRequest[];
    /** Bytes received so far, over all connections. */
    readonly bytesReceived: number;
    /** Waits until at least `n` requests are complete (default 5 s). */
    waitForRequests(n: number, timeoutMs?: number): Promise<RecordedRequest[]>;
}

export interface RecordingOriginOptions {
    /** Listen address (default 127.0.0.1). */
    host?: string;
    /** The body of every 200 answer (default 'ok\n'); its length is sent as Content-Length. */
    body?: string;
}

interface ConnState {
    index: number;
    remotePort: number;
    chunks: Buffer[];
    requests: RecordedRequest[];
    parseError: string | null;
    closed: boolean;
}

/**
 * Starts the recording origin on a free port. Its parser is Node's own (llhttp in strict mode:
 * no lenient flags), so bytes a strict HTTP/1.1 server would refuse show up as `parseError`. Each
 * request is answered, once its body is complete, with 200 and a small body; connections are kept
 * alive, so requests that reach it on one connection are recorded there in order.
 */
export async function startRecordingOrigin(options: RecordingOriginOptions = {}): Promise<RecordingOrigin> {
    const host = options.host ?? '127.0.0.1';
    const answer = Buffer.from(options.body ?? 'ok\n');
    const conns: ConnState[] = [];
    const requests: RecordedRequest[] = [];
    const bySocket = new WeakMap<net.Socket, ConnState>();
    let bytes = 0;

    const server = http.createServer({ insecureHTTPParser: false, keepAliveTimeout: 30_000 }, (req, res) => {
        const conn = bySocket.get(req.socket);
        const rec: RecordedRequest = {
            method: req.method ?? '',
            target: req.url ?? '',
            httpVersion: req.httpVersion,
            headers: pairs(req.rawHeaders),
            body: Buffer.alloc(0),
            complete: false,
            connection: conn?.index ?? -1,
        };
        conn?.requests.push(rec);
        requests.push(rec);
        req.on('data', (c: Buffer) => {
            rec.body = Buffer.concat([rec.body, c]);
        });
        req.on('end', () => {
            rec.complete = true;
            res.writeHead(200, { 'content-type': 'text/plain', 'content-length': answer.length });
            res.end(answer);
        });
    });
    server.on('connection', (socket: net.Socket) => {
        const conn: ConnState = {
            index: conns.length,
            remotePort: socket.remotePort ?? 0,
            chunks: [],
            requests: [],
            parseError: null,
            closed: false,
        };
        conns.push(conn);
        bySocket.set(socket, conn);
        // A 'data' listener makes node:http parse in JS (it stops consuming the handle natively),
        // so this tap sees exactly the bytes its parser sees.
        socket.on('data', (c: Buffer) => {
            conn.chunks.push(Buffer.from(c));
            bytes += c.length;
        });
        socket.on('close', () => {
            conn.closed = true;
        });
    });
    server.on('clientError', (err: NodeJS.ErrnoException, socket: net.Socket) => {
        const conn = bySocket.get(socket);
        if (conn && !conn.parseError) conn.parseError = `${err.code ?? 'error'}: ${err.message}`;
        if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
        socket.destroy();
    });

    const { port, address, close } = await listenTracked(server, host, 'recording origin');

    const views: RecordedConnection[] = [];
    const view = (c: ConnState): RecordedConnection => ({
        index: c.index,
        remotePort: c.remotePort,
        get raw() {
            return Buffer.concat(c.chunks);
        },
        requests: c.requests,
        get parseError() {
            return c.parseError;
        },
        get closed() {
            return c.closed;
        },
    });
    return {
        host,
        port,
        address,
        get connections() {
            return conns.length;
        },
        async waitForConnections(n: number, timeoutMs = 5000) {
            await waitFor(() => conns.length >= n, {
                timeoutMs,
                message: () => `recording origin ${address} accepted ${conns.length} connections, expected ${n}`,
            });
        },
        close,
        url: (p = '/') => `http://${address}${p.startsWith('/') ? p : '/' + p}`,
        get connectionLog() {
            while (views.length < conns.length) views.push(view(conns[views.length]!));
            return views;
        },
        requests,
        get bytesReceived() {
            return bytes;
        },
        async waitForRequests(n: number, timeoutMs = 5000) {
            await waitFor(() => requests.filter((r) => r.complete).length >= n, {
                timeoutMs,
                message: () =>
                    `recording origin ${address} has ${requests.filter((r) => r.complete).length} complete requests, expected ${n}`,
            });
            return requests.filter((r) => r.complete);
        },
    };
}

function pairs(raw: string[]): Array<[string, string]> {
    const out: Array<[string, string]> = [];
    for (let i = 0; i + 1 < raw.length; i += 2) out.push([raw[i]!, raw[i + 1]!]);
    return out;
}
