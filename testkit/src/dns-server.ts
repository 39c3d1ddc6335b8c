/**
 * A scripted authoritative DNS server for tests that need what dnsmasq cannot do: answer one record
 * type late, or never (RFC 8305's resolution delay, a lost AAAA answer). It is a real UDP DNS server
 * on 127.0.0.1 (queries and answers encoded by the dns-packet library); it logs every question.
 */
import dgram from 'node:dgram';

import dnsPacket from 'dns-packet';

import { track } from './cleanup.js';

/** What one name answers, per type. An absent type answers NODATA; an unknown name NXDOMAIN. */
export interface ScriptedName {
    A?: string[];
    AAAA?: string[];
    /** Milliseconds before the answer to that type leaves; `null`: never answer it. */
    delayA?: number | null;
    delayAAAA?: number | null;
    ttl?: number;
}

export interface ScriptedDns {
    /** "127.0.0.1:PORT", for a Turnpike endpoint's `dns.servers`. */
    readonly server: string;
    readonly port: number;
    /** Every question received, in order, as "TYPE name" (e.g. "AAAA slow.test"). */
    readonly questions: string[];
    stop(): Promise<void>;
}

/** Starts the server with `names` (lower-case, no trailing dot). */
export async function startScriptedDns(names: Record<string, ScriptedName>): Promise<ScriptedDns> {
    const sock = dgram.createSocket('udp4');
    const questions: string[] = [];
    const timers = new Set<NodeJS.Timeout>();
    sock.on('message', (msg, rinfo) => {
        let q: dnsPacket.Packet;
        try {
            q = dnsPacket.decode(msg);
        } catch {
            return; // not DNS: a real server drops it too
        }
        const question = q.questions?.[0];
        if (!question) return;
        const name = question.name.toLowerCase().replace(/\.$/, '');
        const type = question.type;
        questions.push(`${type} ${name}`);
        const entry = names[name];
        const delay = type === 'A' ? entry?.delayA : type === 'AAAA' ? entry?.delayAAAA : 0;
        if (entry && delay === null) return; // this type is never answered
        const data = type === 'A' ? entry?.A : type === 'AAAA' ? entry?.AAAA : undefined;
        const answer = dnsPacket.encode({
            id: q.id,
            type: 'response',
            // The rcode is the low 4 bits of the flags: 3 is NXDOMAIN.
            flags: dnsPacket.AUTHORITATIVE_ANSWER | ((q.flags ?? 0) & dnsPacket.RECURSION_DESIRED) | (entry ? 0 : 3),
            questions: [question],
            answers: (data ?? []).map((ip) => ({ name: question.name, type: type as 'A', class: 'IN' as const, ttl: entry?.ttl ?? 300, data: ip })),
        });
        const send = () => sock.send(answer, rinfo.port, rinfo.address);
        if (!delay) {
            send();
            return;
        }
        const t = setTimeout(() => {
            timers.delete(t);
            send();
        }, delay);
        timers.add(t);
    });
    await new Promise<void>((resolve) => sock.bind(0, '127.0.0.1', () => resolve()));
    const port = sock.address().port;
    let stopped = false;
    const stop = async () => {
        if (stopped) return;
        stopped = true;
        for (const t of timers) clearTimeout(t);
        await new Promise<void>((resolve) => sock.close(() => resolve()));
    };
    const untrack = track(`scripted dns :${port}`, () => void stop(), () => void stop());
    return {
        server: `127.0.0.1:${port}`,
        port,
        questions,
        async stop() {
            untrack();
            await stop();
        },
    };
}
