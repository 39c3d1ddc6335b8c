/**
 * The listen-and-close part every test origin shares: it counts the accepted connections,
 * listens on `host` (a free port by default), and gives a close() that stops accepting, drops the
 * open connections, and is registered with cleanup() so a failed test leaves nothing behind.
 */
import type net from 'node:net';

import { track } from './cleanup.js';
import type { ServerBase } from './origins.js';
import { waitFor } from './wait.js';

/**
 * `dropConnections` ends the open connections at close; without it, the accepted sockets are
 * kept here and destroyed.
 */
export async function listenTracked(
    server: net.Server,
    host: string,
    label: string,
    dropConnections?: () => void,
    port0 = 0,
): Promise<ServerBase> {
    let connections = 0;
    const sockets = new Set<net.Socket>();
    server.on('connection', (socket: net.Socket) => {
        connections++;
        if (dropConnections) return;
        sockets.add(socket);
        socket.on('close', () => sockets.delete(socket));
        socket.on('error', () => undefined);
    });
    const drop = dropConnections ?? (() => sockets.forEach((s) => s.destroy()));
    await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port0, host, () => {
            server.off('error', reject);
            resolve();
        });
    });
    const port = (server.address() as net.AddressInfo).port;
    const address = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
    let closing: Promise<void> | null = null;
    const close = () => {
        if (!closing) {
            closing = new Promise<void>((resolve) => {
                server.close(() => resolve());
                drop();
            });
            untrack();
        }
        return closing;
    };
    const untrack = track(`${label} ${address}`, close);
    return {
        host,
        port,
        address,
        get connections() {
            return connections;
        },
        async waitForConnections(n: number, timeoutMs = 5000) {
            await waitFor(() => connections >= n, {
                timeoutMs,
                message: () => `${label} ${address} accepted ${connections} connections, expected ${n}`,
            });
        },
        close,
    };
}

/** Adds `props` to `base` keeping getters live (Object.assign would freeze their current values). */
export function extend<B extends object, P extends object>(base: B, props: P): B & P {
    return Object.defineProperties(base, Object.getOwnPropertyDescriptors(props)) as B & P;
}
