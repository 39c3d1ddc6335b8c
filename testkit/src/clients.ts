/**
 * Clients that talk to Turnpike: forward-proxy requests, CONNECT tunnels, and raw TCP / raw HTTP
 * for byte-exact and malformed-input tests.
 */
import http from 'node:http';
import net from 'node:net';

import { track } from './cleanup.js';
import { parseResponse, parseResponseHead, type ParsedResponse } from './http.js';
import { splitHostPort } from './turnpike.js';

/** Where to connect: an Endpoint from tp.endpoint(), any {host, port}, or 'host:port'. */
export type Target = { host: string; port: number } | string;

function resolveTarget(t: Target): { host: string; port: number } {
    return typeof t === 'string' ? splitHostPort(t) : { host: t.host, port: t.port };
}

/** A socket the testkit destroys on cleanup() unless it closed before. */
function trackSocket(socket: net.Socket, label: string): void {
    const untrack = track(label, () => socket.destroy());
    socket.once('close', untrack);
}

function connectSocket(target: Target, timeoutMs: number): Promise<net.Socket> {
    const { host, port } = resolveTarget(target);
    return new Promise<net.Socket>((resolve, reject) => {
        const socket = net.connect({ host, port, allowHalfOpen: true });
        trackSocket(socket, `client socket to ${host}:${port}`);
        const timer = setTimeout(() => {
            socket.destroy();
            reject(new Error(`connect to ${host}:${port} timed out after ${timeoutMs} ms`));
        }, timeoutMs);
        socket.once('connect', () => {
            clearTimeout(timer);
            socket.off('error', onError);
            // A reset later must not crash the test process with an unhandled 'error' event: the
            // socket still emits 'close' (hadError true), and callers may add their own listener.
            socket.on('error', () => undefined);
            resolve(socket);
        });
        const onError = (err: Error) => {
            clearTimeout(timer);
            reject(err);
        };
        socket.once('error', onError);
    });
}

// ---------------------------------------------------------------------------------------------
// Forward-proxy requests

export interface ProxyRequestOptions {
    /** Default GET. */
    method?: string;
    /** Absolute URL: sent as the request target (absolute form), as a proxy client does. */
    url: string;
    /** Request headers. Host defaults to the URL's authority. */
    headers?: http.OutgoingHttpHeaders;
    /** Body: bytes, text, or an (async) iterable of chunks streamed with backpressure. */
    body?: string | Uint8Array | Iterable<Uint8Array | string> | AsyncIterable<Uint8Array | string>;
    /** Send the body with Transfer-Encoding: chunked instead of Content-Length (iterables always are). */
    chunked?: boolean;
    /** An http.Agent to reuse connections (keep-alive); default: a fresh connection per request. */
    agent?: http.Agent;
    /** Fail after this long without a complete response (default 30 s). */
    timeoutMs?: number;
}

export interface HttpResponse {
    status: number;
    statusText: string;
    /** Lower-case names (node:http style). */
    headers: http.IncomingHttpHeaders;
    /** [name, value, name, value, ...] as received. */
    rawHeaders: string[];
    trailers: NodeJS.Dict<string>;
    body: Buffer;
    /** The client socket's local port (match it with tp.hooksFor()). */
    localPort: number;
    text(): string;
    json<T = unknown>(): T;
}

/** Sends one request through an HTTP proxy endpoint, in absolute form, and reads the whole response. */
export function proxyRequest(proxy: Target, options: ProxyRequestOptions): Promise<HttpResponse> {
    const url = new URL(options.url);
    return send(proxy, url.href, { host: url.host, ...options.headers }, options);
}

export interface HttpRequestOptions extends Omit<ProxyRequestOptions, 'url'> {
    /** The origin-form target, e.g. "/api/x?y=1" (default "/"). */
    path?: string;
    /** The Host header (default: the server's host:port); `null` sends none. */
    host?: string | null;
}

/** Sends one request to an HTTP server endpoint (a reverse proxy), in origin form, and reads the whole response. */
export function httpRequest(server: Target, options: HttpRequestOptions = {}): Promise<HttpResponse> {
    const { host, port } = resolveTarget(server);
    const headers: http.OutgoingHttpHeaders = { ...options.headers };
    if (options.host !== null && !Object.keys(headers).some((k) => k.toLowerCase() === 'host'))
        headers.host = options.host ?? `${host.includes(':') ? `[${host}]` : host}:${port}`;
    return send(server, options.path ?? '/', headers, options);
}

function send(target: Target, path: string, headers: http.OutgoingHttpHeaders, options: Omit<ProxyRequestOptions, 'url'>): Promise<HttpResponse> {
    const { host, port } = resolveTarget(target);
    const url = { href: path };
    const method = (options.method ?? 'GET').toUpperCase();
    const body = options.body;
    const isBytes = typeof body === 'string' || body instanceof Uint8Array;
    const hasHeader = (name: string) => Object.keys(headers).some((k) => k.toLowerCase() === name);
    if (body !== undefined && !hasHeader('content-length') && !hasHeader('transfer-encoding')) {
        if (isBytes && !options.chunked) headers['content-length'] = Buffer.byteLength(body);
        else headers['transfer-encoding'] = 'chunked';
    }
    const timeoutMs = options.timeoutMs ?? 30_000;

    return new Promise<HttpResponse>((resolve, reject) => {
        const req = http.request({
            host,
            port,
            method,
            path: url.href,
            headers,
            agent: options.agent ?? false,
        });
        const untrack = track(`${method} ${url.href} via ${host}:${port}`, () => req.destroy());
        let settled = false;
        const fail = (err: Error) => {
            if (settled) return;
            settled = true;
            clearTimeout(timer);
            untrack();
            req.destroy();
            reject(err);
        };
        const timer = setTimeout(
            () => fail(new Error(`${method} ${url.href} via ${host}:${port}: no complete response after ${timeoutMs} ms`)),
            timeoutMs,
        );
        req.once('error', fail);
        req.once('response', (res) => {
            const localPort = res.socket?.localPort ?? 0;
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.once('error', fail);
            res.once('end', () => {
                if (settled) return;
                settled = true;
                clearTimeout(timer);
                untrack();
                const buf = Buffer.concat(chunks);
                resolve({
                    status: res.statusCode ?? 0,
                    statusText: res.statusMessage ?? '',
                    headers: res.headers,
                    rawHeaders: res.rawHeaders,
                    trailers: res.trailers,
                    body: buf,
                    localPort,
                    text: () => buf.toString('utf8'),
                    json: <T>() => JSON.parse(buf.toString('utf8')) as T,
                });
            });
        });
        writeBody(req, body, options.chunked ?? false).catch(fail);
    });
}

async function writeBody(req: http.ClientRequest, body: ProxyRequestOptions['body'], chunked: boolean): Promise<void> {
    if (body === undefined) {
        req.end();
        return;
    }
    if (typeof body === 'string' || body instanceof Uint8Array) {
        if (!chunked) {
            req.end(body);
            return;
        }
        // Several chunks, so the chunked framing is really exercised.
        const buf = typeof body === 'string' ? Buffer.from(body) : body;
        const piece = 64 * 1024 + 17;
        const parts: Uint8Array[] = [];
        for (let i = 0; i < buf.length; i += piece) parts.push(buf.subarray(i, i + piece));
        body = parts;
    }
    for await (const chunk of body as AsyncIterable<Uint8Array | string>) {
        if (req.destroyed) return;
        if (!req.write(chunk)) {
            await new Promise<void>((resolve) => {
                const done = () => {
                    req.off('drain', done);
                    req.off('close', done);
                    resolve();
                };
                req.on('drain', done);
                req.on('close', done);
            });
        }
    }
    req.end();
}

// ---------------------------------------------------------------------------------------------
// CONNECT tunnels

export interface ConnectTunnelOptions {
    /** Extra request headers (e.g. {'Proxy-Authorization': 'Preshared secret'}). */
    headers?: Record<string, string | number | string[]>;
    /** Fail when the response head has not arrived after this long (default 10 s). */
    timeoutMs?: number;
}

export interface TunnelResult {
    status: number;
    statusText: string;
    /** Lower-case names; repeated fields joined with ", ". */
    headers: Record<string, string>;
    rawHeaders: Array<[string, string]>;
    /** The response body of a refusal (empty after a 2xx). */
    body: Buffer;
    /**
     * After a 2xx: the tunnel, with any bytes that came along with the response head already put
     * back to be read first. Not flowing until you attach a 'data' listener, pipe or read it.
     * After a refusal: the destroyed client socket.
     */
    socket: net.Socket;
    /** The client socket's local port (match it with tp.hooksFor()). */
    localPort: number;
}

/** Sends `CONNECT authority HTTP/1.1` (e.g. '127.0.0.1:8080') and reads the response head. */
export async function connectTunnel(proxy: Target, authority: string, options: ConnectTunnelOptions = {}): Promise<TunnelResult> {
    const timeoutMs = options.timeoutMs ?? 10_000;
    const socket = await connectSocket(proxy, timeoutMs);
    const localPort = socket.localPort ?? 0;
    let head = `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n`;
    for (const [name, value] of Object.entries(options.headers ?? {})) {
        for (const v of Array.isArray(value) ? value : [value]) head += `${name}: ${v}\r\n`;
    }
    socket.write(head + '\r\n');

    return new Promise<TunnelResult>((resolve, reject) => {
        let buf = Buffer.alloc(0);
        let eof = false;
        const timer = setTimeout(
            () =>
                finish(
                    new Error(
                        `CONNECT ${authority}: no complete response after ${timeoutMs} ms (got ${JSON.stringify(buf.toString('latin1').slice(0, 300))})`,
                    ),
                ),
            timeoutMs,
        );
        const finish = (err: Error | null, result?: TunnelResult) => {
            clearTimeout(timer);
            socket.off('readable', onReadable);
            socket.off('end', onEnd);
            socket.off('error', onError);
            if (err) {
                socket.destroy();
                reject(err);
            } else resolve(result!);
        };
        const onError = (err: Error) => finish(new Error(`CONNECT ${authority}: ${err.message}`));
        const onEnd = () => {
            eof = true;
            onReadable();
        };
        const onReadable = () => {
            let chunk: Buffer | null;
            while ((chunk = socket.read() as Buffer | null) !== null) buf = Buffer.concat([buf, chunk]);
            let parsed;
            try {
                parsed = parseResponseHead(buf);
            } catch (err) {
                finish(new Error(`CONNECT ${authority}: ${(err as Error).message}`));
                return;
            }
            if (!parsed) {
                if (eof) finish(new Error(`CONNECT ${authority}: connection closed before a complete response head (got ${JSON.stringify(buf.toString('latin1'))})`));
                return;
            }
            const base = {
                status: parsed.status,
                statusText: parsed.statusText,
                headers: parsed.headers,
                rawHeaders: parsed.rawHeaders,
                socket,
                localPort,
            };
            if (parsed.status >= 200 && parsed.status < 300) {
                const early = buf.subarray(parsed.headLength);
                finish(null, { ...base, body: Buffer.alloc(0) });
                if (early.length > 0) socket.unshift(early);
                return;
            }
            // A refusal: read its body (by length, chunks or until close), then drop the connection.
            let full: ParsedResponse | null = null;
            try {
                full = parseResponse(buf, { method: 'GET', eof });
            } catch (err) {
                finish(new Error(`CONNECT ${authority}: ${(err as Error).message}`));
                return;
            }
            if (full) {
                finish(null, { ...base, body: full.body });
                socket.destroy();
            }
        };
        socket.on('readable', onReadable);
        socket.on('end', onEnd);
        socket.on('error', onError);
    });
}

// ---------------------------------------------------------------------------------------------
// Raw TCP

/** Anything a RawConnection can wait for in the received bytes. */
export type Pattern = string | Buffer | RegExp;

/**
 * A TCP client with a receive buffer and awaitable reads, for byte-level tests. Received bytes
 * accumulate until a read*() consumes them. Half-close aware: end() sends FIN and keeps reading.
 */
export class RawConnection {
    readonly socket: net.Socket;
    /** Local port of the client socket (match it with tp.hooksFor()). */
    readonly localPort: number;
    /** True once the peer sent FIN (or the connection closed). */
    peerEnded = false;
    /** True once the socket closed (either way). */
    closed = false;
    /** A socket error, if one happened (ECONNRESET, ...). */
    error: Error | null = null;
    /** Resolves when the socket has closed. */
    readonly closedPromise: Promise<void>;

    private chunks: Buffer[] = [];
    private length = 0;
    private readonly waiters = new Set<() => void>();

    /** Wraps a connected socket (e.g. a CONNECT tunnel's). Use rawTcp() for a new connection. */
    static wrap(socket: net.Socket): RawConnection {
        return new RawConnection(socket);
    }

    private constructor(socket: net.Socket) {
        this.socket = socket;
        this.localPort = socket.localPort ?? 0;
        this.closedPromise = new Promise<void>((resolve) => {
            socket.once('close', () => {
                this.closed = true;
                this.peerEnded = true;
                this.notify();
                resolve();
            });
        });
        socket.on('data', (c: Buffer) => {
            this.chunks.push(c);
            this.length += c.length;
            this.notify();
        });
        socket.on('end', () => {
            this.peerEnded = true;
            this.notify();
        });
        socket.on('error', (err) => {
            this.error = err;
            this.notify();
        });
        if (socket.destroyed) {
            this.closed = true;
            this.peerEnded = true;
        }
    }

    /** Bytes received and not consumed yet. */
    get buffered(): number {
        return this.length;
    }

    /** Returns (without consuming) the bytes received and not consumed yet. */
    peek(): Buffer {
        if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks)];
        return this.chunks[0] ?? Buffer.alloc(0);
    }

    /** Writes bytes; resolves once they are handed to the kernel. */
    write(data: string | Uint8Array): Promise<void> {
        return new Promise<void>((resolve, reject) => {
            this.socket.write(data, (err) => (err ? reject(err) : resolve()));
        });
    }

    /** Sends FIN after `data` (half-close); reading goes on. */
    end(data?: string | Uint8Array): Promise<void> {
        return new Promise<void>((resolve) => {
            if (data !== undefined) this.socket.end(data, () => resolve());
            else this.socket.end(() => resolve());
        });
    }

    /** Consumes and returns exactly `n` bytes; rejects on timeout (default 5 s) or close before. */
    readBytes(n: number, timeoutMs = 5000): Promise<Buffer> {
        return this.waitUntil(
            () => (this.length >= n ? this.take(n) : undefined),
            timeoutMs,
            () => `${n} bytes`,
        );
    }

    /** Consumes and returns everything up to and including the first match of `pattern`. */
    readUntil(pattern: Pattern, timeoutMs = 5000): Promise<Buffer> {
        return this.waitUntil(
            () => {
                const buf = this.peek();
                let end = -1;
                if (pattern instanceof RegExp) {
                    const re = new RegExp(pattern.source, pattern.flags.replace('g', ''));
                    const m = re.exec(buf.toString('latin1'));
                    if (m) end = m.index + m[0].length;
                } else {
                    const i = buf.indexOf(pattern);
                    if (i >= 0) end = i + Buffer.byteLength(pattern);
                }
                return end >= 0 ? this.take(end) : undefined;
            },
            timeoutMs,
            () => `a match of ${String(pattern instanceof Buffer ? pattern.toString('latin1') : pattern)}`,
        );
    }

    /** Consumes and returns everything until the peer closes (FIN or reset). */
    readToEnd(timeoutMs = 5000): Promise<Buffer> {
        return this.waitUntil(
            () => (this.peerEnded ? this.take(this.length) : undefined),
            timeoutMs,
            () => 'the peer to close',
            true,
        );
    }

    /** Consumes and parses one HTTP response (pass the request's method for HEAD and CONNECT). */
    readResponse(options: { method?: string; timeoutMs?: number } = {}): Promise<ParsedResponse> {
        return this.waitUntil(
            () => {
                const r = parseResponse(this.peek(), { method: options.method, eof: this.peerEnded });
                if (!r) return undefined;
                this.take(r.length);
                return r;
            },
            options.timeoutMs ?? 5000,
            () => 'a complete HTTP response',
        );
    }

    /**
     * Resolves (with how long it took) once the peer has closed its side (FIN, reset or full
     * close); rejects after `timeoutMs`. Received bytes stay buffered.
     */
    async waitForPeerClose(timeoutMs = 5000): Promise<number> {
        const start = Date.now();
        await this.waitUntil(() => (this.peerEnded ? true : undefined), timeoutMs, () => 'the peer to close', true);
        return Date.now() - start;
    }

    /**
     * Resolves with the unread bytes (without consuming them) once `predicate` holds for them;
     * rejects on timeout or when the peer closes first.
     */
    waitForData(predicate: (unread: Buffer) => boolean, timeoutMs = 5000): Promise<Buffer> {
        return this.waitUntil(
            () => {
                const buf = this.peek();
                return predicate(buf) ? buf : undefined;
            },
            timeoutMs,
            () => 'data matching the predicate',
        );
    }

    /** Closes the connection at once. */
    destroy(): void {
        this.socket.destroy();
    }

    private take(n: number): Buffer {
        const all = this.peek();
        const out = Buffer.from(all.subarray(0, n));
        const rest = all.subarray(n);
        this.chunks = rest.length ? [rest] : [];
        this.length = rest.length;
        return out;
    }

    private notify(): void {
        for (const w of [...this.waiters]) w();
    }

    private waitUntil<T>(attempt: () => T | undefined, timeoutMs: number, what: () => string, closeIsFine = false): Promise<T> {
        return new Promise<T>((resolve, reject) => {
            const check = () => {
                let v: T | undefined;
                try {
                    v = attempt();
                } catch (err) {
                    done();
                    reject(err);
                    return;
                }
                if (v !== undefined) {
                    done();
                    resolve(v);
                } else if (!closeIsFine && (this.peerEnded || this.closed)) {
                    done();
                    reject(
                        new Error(
                            `connection closed${this.error ? ` (${this.error.message})` : ''} while waiting for ${what()}; ` +
                                `unread: ${JSON.stringify(this.peek().toString('latin1').slice(0, 300))}`,
                        ),
                    );
                }
            };
            const timer = setTimeout(() => {
                done();
                reject(
                    new Error(
                        `timed out after ${timeoutMs} ms waiting for ${what()}; ` +
                            `unread: ${JSON.stringify(this.peek().toString('latin1').slice(0, 300))}`,
                    ),
                );
            }, timeoutMs);
            const done = () => {
                clearTimeout(timer);
                this.waiters.delete(check);
            };
            this.waiters.add(check);
            check();
        });
    }
}

/** Opens a TCP connection (to a tcp endpoint, an http_proxy endpoint, or anything else). */
export async function rawTcp(target: Target, options: { timeoutMs?: number } = {}): Promise<RawConnection> {
    const socket = await connectSocket(target, options.timeoutMs ?? 5000);
    return RawConnection.wrap(socket);
}

export interface RawHttpOptions {
    /**
     * 'close' (default): collect the reply until Turnpike closes the connection (or the timeout).
     * 'response': stop after one complete response.
     */
    until?: 'close' | 'response';
    /** The method of the request sent, so HEAD/CONNECT responses parse right (default: from the bytes). */
    method?: string;
    /** Half-close (send FIN) after the bytes. */
    end?: boolean;
    /** Default 5 s. In 'close' mode, running out of time is not an error: `closed` is then false. */
    timeoutMs?: number;
}

export interface RawHttpResult {
    /** Everything received, as latin1 text. */
    text: string;
    raw: Buffer;
    /** Status code of the first response, or null if none could be parsed. */
    status: number | null;
    /** The first response, parsed, or null. */
    response: ParsedResponse | null;
    /** Whether Turnpike closed the connection within the timeout. */
    closed: boolean;
    /** Milliseconds from sending to the end of reading. */
    elapsedMs: number;
    localPort: number;
}

/** Sends exact bytes to `proxy` and returns the raw reply: for malformed-input tests. */
export async function rawHttp(proxy: Target, bytes: string | Uint8Array, options: RawHttpOptions = {}): Promise<RawHttpResult> {
    const timeoutMs = options.timeoutMs ?? 5000;
    const conn = await rawTcp(proxy, { timeoutMs });
    const method = options.method ?? /^([A-Z]+) /.exec(Buffer.from(bytes).toString('latin1'))?.[1];
    const start = Date.now();
    await conn.write(bytes).catch(() => undefined); // a reset while writing shows up as closed
    if (options.end) await conn.end();
    if (options.until === 'response') {
        const complete = (buf: Buffer) => {
            try {
                return parseResponse(buf, { method, eof: conn.peerEnded }) !== null;
            } catch {
                return true; // unparseable: nothing more to wait for
            }
        };
        await conn.waitForData(complete, timeoutMs).catch(() => undefined);
    } else {
        await conn.waitForPeerClose(timeoutMs).catch(() => undefined);
    }
    const raw = conn.peek();
    let response: ParsedResponse | null = null;
    try {
        response = parseResponse(raw, { method, eof: conn.peerEnded });
    } catch {
        response = null;
    }
    const closed = conn.peerEnded;
    const elapsedMs = Date.now() - start;
    conn.destroy();
    let status: number | null = response?.status ?? null;
    if (status === null) {
        const m = /^HTTP\/\d(?:\.\d)? (\d{3})/.exec(raw.toString('latin1'));
        status = m ? Number(m[1]) : null;
    }
    return { text: raw.toString('latin1'), raw, status, response, closed, elapsedMs, localPort: conn.localPort };
}
