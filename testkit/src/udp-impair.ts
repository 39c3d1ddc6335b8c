/**
 * A lossy, slow path and a NAT for UDP tests: a relay between clients and one UDP server that
 * delays every datagram, drops a share of them at random (each direction on its own), and maps
 * each client to a source socket of its own, like a NAT, whose address and port `rebind()`
 * changes mid-flow (the server sees a new client address; the client notices nothing). For
 * kernels without sch_netem, and for NAT rebinding without conntrack tools.
 */
import dgram from 'node:dgram';
import net from 'node:net';

import { track } from './cleanup.js';

export interface UdpImpairOptions {
    /** The server every client's datagrams go to. */
    target: { host: string; port: number };
    /** Where clients send (port 0: any free one). Default 127.0.0.1:0. */
    listen?: { host?: string; port?: number };
    /** The address the NAT's outside sockets bind (default: the listen address). */
    outsideHost?: string;
    /** One-way delay added to every datagram, each direction, in ms (default 0). */
    delayMs?: number;
    /** Share of datagrams dropped, each direction on its own, 0..1 (default 0). */
    loss?: number;
    /**
     * After rebind(), what the server still sends to the old outside address reaches the client
     * for as long as the old socket stays open (2 s), as behind a NAT that sends from a new port
     * but has not expired the old mapping yet. Default false: it is lost. Losing it can stall a
     * connection whose client has nothing to send at that moment (all it sent is acknowledged,
     * and it waits for the server): the server cannot learn the new address until the client
     * speaks, which an idle client never does.
     */
    keepOldMapping?: boolean;
    /**
     * Datagrams longer than this many bytes of UDP payload are dropped silently, each direction,
     * as on a path whose MTU is smaller than the ends' own interfaces and that sends no ICMP (a
     * PMTUD black hole). Default: none dropped.
     */
    maxDatagram?: number;
}

export interface UdpImpairStats {
    toServer: number;
    toClient: number;
    droppedToServer: number;
    droppedToClient: number;
    bytesToClient: number;
    /**
     * Datagrams from the server to an outside socket the NAT no longer uses (after rebind()):
     * lost, or delivered with `keepOldMapping`.
     */
    strayFromServer: number;
    rebinds: number;
    /** Datagrams dropped for being longer than `maxDatagram`, both directions. */
    droppedTooBig: number;
    /** The longest datagram passed on to a client, and to the server (bytes of UDP payload). */
    longestToClient: number;
    longestToServer: number;
}

export interface UdpImpair {
    /** The port clients send to. */
    readonly port: number;
    readonly stats: UdpImpairStats;
    /**
     * Gives every client a new outside socket (on `host`, default the current outside address) and
     * forgets the old one: what the server sends to the old address is lost, as behind a NAT whose
     * mapping expired. Resolves with the new outside address.
     */
    rebind(host?: string): Promise<{ address: string; port: number }>;
    /** Server datagrams received on the current outside socket of the first client. */
    receivedOnCurrent(): number;
    close(): Promise<void>;
}

interface Mapping {
    client: { address: string; port: number };
    outside: dgram.Socket;
    received: number;
}

function bindSocket(family: 'udp4' | 'udp6', host: string, port = 0): Promise<dgram.Socket> {
    return new Promise((resolve, reject) => {
        const s = dgram.createSocket({ type: family, recvBufferSize: 4 << 20, sendBufferSize: 4 << 20 });
        s.once('error', reject);
        s.bind(port, host, () => {
            s.off('error', reject);
            resolve(s);
        });
    });
}

/** Starts the relay (tracked: cleanup() closes it). */
export async function startUdpImpair(options: UdpImpairOptions): Promise<UdpImpair> {
    const listenHost = options.listen?.host ?? '127.0.0.1';
    const family = net.isIPv6(listenHost) ? 'udp6' : 'udp4';
    let outsideHost = options.outsideHost ?? listenHost;
    const delay = options.delayMs ?? 0;
    const loss = options.loss ?? 0;
    const stats: UdpImpairStats = {
        toServer: 0,
        toClient: 0,
        droppedToServer: 0,
        droppedToClient: 0,
        bytesToClient: 0,
        strayFromServer: 0,
        rebinds: 0,
        droppedTooBig: 0,
        longestToClient: 0,
        longestToServer: 0,
    };
    const maxDatagram = options.maxDatagram ?? Infinity;
    const inside = await bindSocket(family, listenHost, options.listen?.port ?? 0);
    const mappings = new Map<string, Mapping>();
    let closed = false;
    const later = (fn: () => void) => (delay > 0 ? setTimeout(fn, delay) : setImmediate(fn));
    const send = (sock: dgram.Socket, msg: Buffer, port: number, host: string) => {
        if (closed) return;
        try {
            sock.send(msg, port, host, () => undefined);
        } catch {
            /* the socket was closed meanwhile (rebind): lost, like on a real network */
        }
    };

    const attachOutside = (m: Mapping, sock: dgram.Socket) => {
        sock.on('message', (msg) => {
            if (m.outside !== sock) {
                stats.strayFromServer++;
                if (!options.keepOldMapping) return;
            } else {
                m.received++;
            }
            if (msg.length > maxDatagram) {
                stats.droppedTooBig++;
                return;
            }
            if (Math.random() < loss) {
                stats.droppedToClient++;
                return;
            }
            stats.toClient++;
            stats.longestToClient = Math.max(stats.longestToClient, msg.length);
            stats.bytesToClient += msg.length;
            later(() => send(inside, msg, m.client.port, m.client.address));
        });
        sock.on('error', () => undefined);
    };

    inside.on('message', async (msg, rinfo) => {
        const key = `${rinfo.address}:${rinfo.port}`;
        let m = mappings.get(key);
        if (!m) {
            const outside = await bindSocket(family, outsideHost);
            m = mappings.get(key);
            if (m) {
                outside.close();
            } else {
                m = { client: { address: rinfo.address, port: rinfo.port }, outside, received: 0 };
                attachOutside(m, outside);
                mappings.set(key, m);
            }
        }
        if (msg.length > maxDatagram) {
            stats.droppedTooBig++;
            return;
        }
        if (Math.random() < loss) {
            stats.droppedToServer++;
            return;
        }
        stats.toServer++;
        stats.longestToServer = Math.max(stats.longestToServer, msg.length);
        const out = m.outside;
        later(() => send(out, msg, options.target.port, options.target.host));
    });
    inside.on('error', () => undefined);

    const close = async () => {
        if (closed) return;
        closed = true;
        for (const m of mappings.values()) m.outside.close();
        await new Promise<void>((resolve) => inside.close(() => resolve()));
    };
    const untrack = track(`udp impair ${listenHost}:${inside.address().port}`, close);

    return {
        port: inside.address().port,
        stats,
        async rebind(host?: string) {
            if (host) outsideHost = host;
            let addr = { address: outsideHost, port: 0 };
            for (const m of mappings.values()) {
                const old = m.outside;
                const fresh = await bindSocket(family, outsideHost);
                m.outside = fresh;
                m.received = 0;
                attachOutside(m, fresh);
                // Keep the old socket open a moment so its late datagrams count as strays
                // rather than ICMP errors, then close it.
                setTimeout(() => old.close(), 2000);
                addr = { address: fresh.address().address, port: fresh.address().port };
            }
            stats.rebinds++;
            return addr;
        },
        receivedOnCurrent() {
            const first = mappings.values().next();
            return first.done ? 0 : first.value.received;
        },
        async close() {
            untrack();
            await close();
        },
    };
}
