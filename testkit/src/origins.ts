/**
 * Origins for Turnpike to reach: an HTTP server that records what arrived, and TCP servers (echo,
 * sink, source, or your own handler). All listen on 127.0.0.1 port 0 and are closed by cleanup().
 */
import crypto from 'node:crypto';
import http from 'node:http';
import net from 'node:net';

import { extend, listenTracked } from './listen.js';
import { PATTERN_PERIOD, patternBytes } from './pattern.js';
import { waitFor } from './wait.js';

/** What an HTTP origin received. */
export interface OriginRequest {
    method: string;
    /** The request target as received (origin form, e.g. '/x?y=1'). */
    url: string;
    httpVersion: string;
    headers: http.IncomingHttpHeaders;
    rawHeaders: string[];
    trailers: NodeJS.Dict<string>;
    body: Buffer;
    remoteAddress: string;
    /** The port of the connection it came on (Turnpike's upstream side). */
    remotePort: number;
}

/** Answers a request; runs after the whole body arrived (req.body). */
export type OriginHandler = (req: OriginRequest, res: http.ServerResponse, raw: http.IncomingMessage) => void | Promise<void>;

export interface ServerBase {
    host: string;
    port: number;
    /** 'host:port', ready for a CONNECT or a tcp endpoint's upstream. */
    address: string;
    /** TCP connections accepted so far. */
    readonly connections: number;
    /** Waits until at least `n` connections were accepted. */
    waitForConnections(n: number, timeoutMs?: number): Promise<void>;
    /** Stops listening and drops open connections. Idempotent. */
    close(): Promise<void>;
}

export interface HttpOrigin extends ServerBase {
    /** 'http://127.0.0.1:PORT' + path. */
    url(path?: string): string;
    /** Requests received so far, in order. */
    readonly requests: OriginRequest[];
    /** Remote ports of the accepted connections, in order. */
    readonly connectionPorts: number[];
    /** Waits until at least `n` requests arrived (default 5 s). */
    waitForRequests(n: number, timeoutMs?: number): Promise<OriginRequest[]>;
}

/**
 * Answers with JSON describing the request: {method, url, httpVersion, headers, body (utf8),
 * bodyLength, bodySha256}. The default handler.
 */
export const echoJson: OriginHandler = (req, res) => {
    const payload = JSON.stringify({
        method: req.method,
        url: req.url,
        httpVersion: req.httpVersion,
        headers: req.headers,
        body: req.body.toString('utf8'),
        bodyLength: req.body.length,
        bodySha256: crypto.createHash('sha256').update(req.body).digest('hex'),
    });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) });
    res.end(payload);
};

/**
 * Answers with the request body as the response body, framed the same way it came: chunked if the
 * request was chunked, with Content-Length otherwise.
 */
export const echoBody: OriginHandler = (req, res) => {
    const chunked = /chunked/i.test(String(req.headers['transfer-encoding'] ?? ''));
    const headers: http.OutgoingHttpHeaders = {
        'content-type': req.headers['content-type'] ?? 'application/octet-stream',
    };
    if (!chunked) headers['content-length'] = req.body.length;
    res.writeHead(200, headers);
    if (chunked) {
        const piece = 48 * 1024 + 5;
        for (let i = 0; i < req.body.length; i += piece) res.write(req.body.subarray(i, i + piece));
        res.end();
    } else {
        res.end(req.body);
    }
};

/** Starts an HTTP/1.1 origin on 127.0.0.1 with a free port. Default handler: echoJson. */
export async function startHttpOrigin(handler: OriginHandler = echoJson, options: { host?: string; port?: number } = {}): Promise<HttpOrigin> {
    const host = options.host ?? '127.0.0.1';
    const requests: OriginRequest[] = [];
    const connectionPorts: number[] = [];
    const server = http.createServer((raw, res) => {
        const chunks: Buffer[] = [];
        raw.on('data', (c: Buffer) => chunks.push(c));
        raw.on('end', () => {
            const req: OriginRequest = {
                method: raw.method ?? '',
                url: raw.url ?? '',
                httpVersion: raw.httpVersion,
                headers: raw.headers,
                rawHeaders: raw.rawHeaders,
                trailers: raw.trailers,
                body: Buffer.concat(chunks),
                remoteAddress: raw.socket.remoteAddress ?? '',
                remotePort: raw.socket.remotePort ?? 0,
            };
            requests.push(req);
            Promise.resolve()
                .then(() => handler(req, res, raw))
                .catch((err: Error) => {
                    if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
                    res.end(`origin handler failed: ${err?.stack ?? err}`);
                });
        });
    });
    server.on('connection', (s: net.Socket) => connectionPorts.push(s.remotePort ?? 0));
    const base = await listenTracked(server, host, 'http origin', () => server.closeAllConnections(), options.port ?? 0);
    return extend(base, {
        url: (p = '/') => `http://${base.address}${p.startsWith('/') ? p : '/' + p}`,
        requests,
        connectionPorts,
        async waitForRequests(n: number, timeoutMs = 5000) {
            await waitFor(() => requests.length >= n, {
                timeoutMs,
                message: () => `origin ${base.address} got ${requests.length} requests, expected ${n}`,
            });
            return requests;
        },
    });
}

export interface TcpServer extends ServerBase {
    /** Every accepted socket, in order. */
    readonly sockets: net.Socket[];
}

/**
 * Starts a TCP server on 127.0.0.1 with a free port; `onConnection` gets each socket (half-open
 * allowed: the socket stays writable after the peer's FIN, until you end() it).
 */
export async function startTcpServer(
    onConnection: (socket: net.Socket) => void,
    options: { host?: string; label?: string } = {},
): Promise<TcpServer> {
    const host = options.host ?? '127.0.0.1';
    const sockets: net.Socket[] = [];
    const server = net.createServer({ allowHalfOpen: true }, (socket) => {
        sockets.push(socket);
        socket.on('error', () => undefined); // resets from the proxy are normal in tests
        onConnection(socket);
    });
    const base = await listenTracked(server, host, options.label ?? 'tcp server', () => {
        for (const s of sockets) s.destroy();
    });
    return extend(base, { sockets });
}

/** A TCP echo server: sends back what it receives; after the peer's FIN it finishes echoing, then ends. */
export function startTcpEcho(): Promise<TcpServer> {
    return startTcpServer((socket) => socket.pipe(socket), { label: 'tcp echo' });
}

export interface TcpSink extends TcpServer {
    /** Bytes received, over all connections. */
    readonly bytes: number;
    /** Connections whose peer sent FIN. */
    readonly ended: number;
    /** SHA-256 (hex) of the bytes received so far, in arrival order. */
    sha256(): string;
    /** Waits until at least `n` bytes arrived (default 10 s). */
    waitForBytes(n: number, timeoutMs?: number): Promise<void>;
}

/** A TCP server that reads and counts everything, hashing it; it never writes, and ends on the peer's FIN. */
export async function startTcpSink(): Promise<TcpSink> {
    let bytes = 0;
    let ended = 0;
    const hash = crypto.createHash('sha256');
    const server = await startTcpServer(
        (socket) => {
            socket.on('data', (c: Buffer) => {
                bytes += c.length;
                hash.update(c);
            });
            socket.on('end', () => {
                ended++;
                socket.end();
            });
        },
        { label: 'tcp sink' },
    );
    return extend(server, {
        get bytes() {
            return bytes;
        },
        get ended() {
            return ended;
        },
        sha256: () => hash.copy().digest('hex'),
        async waitForBytes(n: number, timeoutMs = 10_000) {
            await waitFor(() => bytes >= n, { timeoutMs, message: () => `sink got ${bytes} bytes, expected ${n}` });
        },
    });
}

export interface TcpSource extends TcpServer {
    /** Bytes written to sockets so far (accepted by the kernel or queued), over all connections. */
    readonly sent: number;
    /** Connections that were sent all their bytes and ended. */
    readonly finished: number;
}

/**
 * A TCP server that sends `bytes` bytes of the testkit pattern (see PatternVerifier) to each
 * connection as fast as the socket accepts them (respecting backpressure), then ends.
 */
export async function startTcpSource(options: { bytes: number }): Promise<TcpSource> {
    const total = options.bytes;
    const block = patternBytes(PATTERN_PERIOD * 256); // every block starts at pattern phase 0
    let sent = 0;
    let finished = 0;
    const server = await startTcpServer(
        (socket) => {
            let mine = 0;
            const pump = () => {
                while (mine < total) {
                    if (socket.destroyed) return;
                    const n = Math.min(block.length, total - mine);
                    mine += n;
                    sent += n;
                    if (!socket.write(n === block.length ? block : block.subarray(0, n))) {
                        socket.once('drain', pump);
                        return;
                    }
                }
                socket.end(() => finished++);
            };
            socket.resume(); // discard anything the client sends
            pump();
        },
        { label: 'tcp source' },
    );
    return extend(server, {
        get sent() {
            return sent;
        },
        get finished() {
            return finished;
        },
    });
}

