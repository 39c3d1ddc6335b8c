/** Helpers of the TLS integration tests: gnutls-cli and Node's TLS client against Turnpike. */
import { spawn } from 'node:child_process';
import tls from 'node:tls';
import fs from 'node:fs';

import { track, type Endpoint } from '../src/index.js';

export interface CliResult {
    code: number | null;
    /** stdout and stderr together (gnutls-cli prints its session details on stderr). */
    out: string;
}

/**
 * Runs gnutls-cli against 127.0.0.1:`port` with `args`, writes `input` (then keeps stdin open for
 * `holdMs` so the answer can arrive), and resolves with its exit code and output.
 */
export function gnutlsCli(port: number, args: string[], input = '', holdMs = 300, timeoutMs = 15_000): Promise<CliResult> {
    return new Promise((resolve, reject) => {
        const child = spawn('gnutls-cli', ['--port', String(port), ...args, '127.0.0.1'], { stdio: ['pipe', 'pipe', 'pipe'] });
        const untrack = track(`gnutls-cli pid ${child.pid}`, () => child.kill('SIGKILL'));
        let out = '';
        child.stdout.on('data', (c: Buffer) => (out += c.toString()));
        child.stderr.on('data', (c: Buffer) => (out += c.toString()));
        child.stdin.on('error', () => undefined);
        const timer = setTimeout(() => {
            child.kill('SIGKILL');
            reject(new Error(`gnutls-cli ${args.join(' ')} did not finish in ${timeoutMs} ms:\n${out}`));
        }, timeoutMs);
        if (input) child.stdin.write(input);
        setTimeout(() => child.stdin.end(), holdMs);
        child.on('close', (code) => {
            clearTimeout(timer);
            untrack();
            resolve({ code, out });
        });
    });
}

/** A Node TLS client connection (OpenSSL) to an endpoint; resolves once the handshake is over. */
export function tlsConnect(ep: Endpoint, options: tls.ConnectionOptions = {}): Promise<tls.TLSSocket> {
    return new Promise((resolve, reject) => {
        const socket = tls.connect({ host: ep.host, port: ep.port, ...options }, () => resolve(socket));
        socket.once('error', reject);
        track(`tls socket to ${ep.address}`, () => socket.destroy());
    });
}

/** The CA file's PEM, for Node's `ca` option. */
export function pem(file: string): Buffer {
    return fs.readFileSync(file);
}
