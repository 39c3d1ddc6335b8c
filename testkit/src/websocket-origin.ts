/**
 * An HTTP/1.1 origin that takes WebSocket upgrades (RFC 6455 4.2.2: 101 with the
 * Sec-WebSocket-Accept of the request's key) and then echoes the raw bytes of the connection (no
 * WebSocket framing: whatever a client tunnels comes back), ending its side after the peer's. It
 * records every upgrade request's head. By path, to test what a proxy does with a broken origin:
 *   /bad-accept...  101 with a wrong Sec-WebSocket-Accept
 *   /no-switch...   200 with a body, no upgrade
 *   /missing...     404
 *   anything else   101, then the echo
 */
import crypto from 'node:crypto';
import http from 'node:http';
import net from 'node:net';

import { extend, listenTracked } from './listen.js';
import type { ServerBase } from './origins.js';
import { waitFor } from './wait.js';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/** One upgrade request as the origin received it. */
export interface UpgradeRecord {
    method: string;
    url: string;
    httpVersion: string;
    headers: http.IncomingHttpHeaders;
    /** Header fields in order, as received: [name, value]. */
    rawHeaders: Array<[string, string]>;
    /** Bytes echoed on the connection after the 101. */
    echoed: number;
    /** True once the peer ended its side and the echo finished. */
    ended: boolean;
}

export interface WebSocketOrigin extends ServerBase {
    readonly upgrades: readonly UpgradeRecord[];
    /** Waits until at least `n` upgrade requests arrived (default 5 s). */
    waitForUpgrades(n: number, timeoutMs?: number): Promise<UpgradeRecord[]>;
}

/** The Sec-WebSocket-Accept value for a key (RFC 6455 4.2.2). */
export function webSocketAccept(key: string): string {
    return crypto.createHash('sha1').update(key + GUID).digest('base64');
}

/** Starts the WebSocket echo origin on 127.0.0.1 (or `host`) with a free port. */
export async function startWebSocketOrigin(options: { host?: string } = {}): Promise<WebSocketOrigin> {
    const host = options.host ?? '127.0.0.1';
    const upgrades: UpgradeRecord[] = [];
    const server = http.createServer((_req, res) => {
        res.writeHead(404, { 'content-type': 'text/plain', 'content-length': 10 });
        res.end('not found\n');
    });
    server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
        const raw: Array<[string, string]> = [];
        for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) raw.push([req.rawHeaders[i]!, req.rawHeaders[i + 1]!]);
        const rec: UpgradeRecord = {
            method: req.method ?? '',
            url: req.url ?? '',
            httpVersion: req.httpVersion,
            headers: req.headers,
            rawHeaders: raw,
            echoed: 0,
            ended: false,
        };
        upgrades.push(rec);
        socket.on('error', () => undefined);
        const url = req.url ?? '/';
        if (url.startsWith('/missing')) {
            socket.end('HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\ncontent-length: 10\r\n\r\nnot found\n');
            return;
        }
        if (url.startsWith('/no-switch')) {
            socket.end('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 12\r\n\r\nno websocket');
            return;
        }
        const key = String(req.headers['sec-websocket-key'] ?? '');
        const accept = url.startsWith('/bad-accept') ? webSocketAccept(key + 'x') : webSocketAccept(key);
        const proto = req.headers['sec-websocket-protocol'];
        const chosen = typeof proto === 'string' ? proto.split(',')[0]!.trim() : '';
        socket.write(
            'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
                `Sec-WebSocket-Accept: ${accept}\r\n` +
                (chosen ? `Sec-WebSocket-Protocol: ${chosen}\r\n` : '') +
                '\r\n',
        );
        if (head.length) {
            rec.echoed += head.length;
            socket.write(head);
        }
        socket.on('data', (d: Buffer) => {
            rec.echoed += d.length;
            if (!socket.write(d)) {
                socket.pause();
                socket.once('drain', () => socket.resume());
            }
        });
        socket.on('end', () => {
            rec.ended = true;
            socket.end();
        });
    });
    const base = await listenTracked(server, host, 'websocket origin');
    const { address } = base;
    return extend(base, {
        upgrades,
        async waitForUpgrades(n: number, timeoutMs = 5000) {
            await waitFor(() => upgrades.length >= n, {
                timeoutMs,
                message: () => `websocket origin ${address} got ${upgrades.length} upgrades, expected ${n}`,
            });
            return upgrades.slice();
        },
    });
}
