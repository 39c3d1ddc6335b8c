/**
 * A real DNS server for tests: Debian's dnsmasq (dnsmasq-base) on a free loopback port, as the
 * test's child, authoritative for the names it is given, logging every query to a file the test
 * reads (so "no query was sent" can be asserted).
 */
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { track } from './cleanup.js';
import { waitFor } from './wait.js';

export interface Dnsmasq {
    /** "127.0.0.1:PORT", for a Turnpike endpoint's `dns.servers`. */
    readonly server: string;
    readonly port: number;
    /** How many queries for `name` (any type) the log shows so far. */
    queries(name: string): number;
    stop(): void;
}

/** A UDP port on 127.0.0.1 that is free now. */
async function freeUdpPort(): Promise<number> {
    const s = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', () => resolve()));
    const port = s.address().port;
    s.close();
    return port;
}

/**
 * Starts dnsmasq authoritative for `domain` (unknown names in it are NXDOMAIN) with
 * `records`: dnsmasq --host-record values, "name,ip[,ip][,ttl]". With `netns`, it runs inside
 * that network namespace (its 127.0.0.1 is the namespace's).
 */
export async function startDnsmasq(domain: string, records: string[], options: { netns?: string } = {}): Promise<Dnsmasq> {
    // dnsmasq binds the port for UDP and TCP: a port free for UDP a moment ago can still be taken
    // (for TCP, or by a test running beside this one), so a start that loses the race is redone.
    for (let attempt = 1; ; attempt++) {
        try {
            return await startOnce(domain, records, options);
        } catch (err) {
            if (attempt >= 5 || !/Address already in use/.test(String(err))) throw err;
        }
    }
}

async function startOnce(domain: string, records: string[], options: { netns?: string }): Promise<Dnsmasq> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tp-dnsmasq-'));
    const log = path.join(dir, 'queries.log');
    const port = await freeUdpPort();
    const user = os.userInfo().username;
    const args = [
        '--keep-in-foreground', '--conf-file=/dev/null', '--no-resolv', '--no-hosts', '--pid-file=',
        `--port=${port}`, '--listen-address=127.0.0.1', '--bind-interfaces', '--log-queries',
        `--log-facility=${log}`, `--user=${user}`, `--group=${os.userInfo().gid === 0 ? 'root' : user}`,
        `--local=/${domain}/`, ...records.map((r) => `--host-record=${r}`),
    ];
    const [cmd, argv] = options.netns ? ['ip', ['netns', 'exec', options.netns, 'dnsmasq', ...args]] : ['dnsmasq', args];
    const child = spawn(cmd, argv, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    let exited = false;
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('exit', () => (exited = true));
    const stop = () => {
        child.kill('SIGKILL');
        fs.rmSync(dir, { recursive: true, force: true });
    };
    const untrack = track(`dnsmasq :${port}`, stop, stop);
    try {
        await waitFor(() => exited || (fs.existsSync(log) && fs.readFileSync(log, 'utf8').includes('started')), {
            timeoutMs: 10_000,
            message: () => `dnsmasq did not start: ${stderr}`,
        });
        if (exited) throw new Error(`dnsmasq did not start: ${stderr}`);
    } catch (err) {
        untrack();
        stop();
        throw err;
    }
    return {
        server: `127.0.0.1:${port}`,
        port,
        queries(name: string) {
            const text = fs.existsSync(log) ? fs.readFileSync(log, 'utf8') : '';
            return text.split('\n').filter((l) => / query\[[A-Z]+\] /.test(l) && l.includes(` ${name} `)).length;
        },
        stop() {
            untrack();
            stop();
        },
    };
}
