/**
 * Real TLS origins for tests of Turnpike as a TLS client: nginx (with an access log that records
 * what the TLS server saw: SNI, ALPN, resumption, requests per connection, the client
 * certificate) and gnutls-serv (with a stapled OCSP response); and the revocation material they
 * need, made with certtool and `openssl ocsp`: CRLs and OCSP responses.
 */
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

import type { IssuedCert, TestCerts } from './certs.js';
import { track } from './cleanup.js';
import { startProcess, type TestProcess } from './process.js';
import { closedPort, sleep, waitFor } from './wait.js';

/** One request as the nginx origin logged it. */
export interface NginxLogEntry {
    /** SNI the client sent ('' when none). */
    sni: string;
    /** ALPN protocol agreed ('' when none). */
    alpn: string;
    /** 'r' when the TLS session was resumed, '.' otherwise. */
    reused: string;
    /** nginx's connection serial number and the request's number on it (1, 2, ...). */
    connection: number;
    requests: number;
    /** TLS version ('TLSv1.3'). */
    protocol: string;
    /** Client certificate verification: 'NONE', 'SUCCESS', 'FAILED:...'. */
    clientVerify: string;
    /** The client certificate's subject DN ('' when none). */
    clientSubject: string;
    /** Request path. */
    uri: string;
    status: number;
}

export interface NginxTlsOrigin {
    port: number;
    /** 127.0.0.1:port */
    address: string;
    /** The body every request gets (with status 200). */
    body: string;
    /** The access log so far. */
    log(): NginxLogEntry[];
    /** The log entry of the request for `uri`, waiting for nginx to write it (it logs after the
     * response went). */
    entry(uri: string, timeoutMs?: number): Promise<NginxLogEntry>;
    close(): Promise<void>;
}

export interface NginxTlsOptions {
    /** The server certificate (chain) and key. */
    cert: IssuedCert | { certFile: string; keyFile: string };
    /** Client certificates: `ssl_verify_client on` against this CA file. */
    verifyClientCa?: string;
    /** A DER OCSP response to staple (`ssl_stapling_file`); `issuerFile` must then be given. */
    stapleFile?: string;
    /** The issuer of `cert` (for stapling). */
    issuerFile?: string;
    /** TLS versions served (default 'TLSv1.2 TLSv1.3'). */
    protocols?: string;
    /** nginx keepalive_timeout (default 60s): an idle connection is closed after it. */
    keepaliveTimeout?: string;
}

async function listening(port: number, timeoutMs = 10_000): Promise<void> {
    await waitFor(
        () =>
            new Promise<boolean>((resolve) => {
                const s = net.connect(port, '127.0.0.1');
                s.once('connect', () => {
                    s.destroy();
                    resolve(true);
                });
                s.once('error', () => resolve(false));
            }),
        { timeoutMs, message: `nothing listens on 127.0.0.1:${port}` },
    );
}

let nginxCount = 0;

/** Starts an nginx HTTPS origin (one worker) on a free loopback port. */
export async function startNginxTls(options: NginxTlsOptions): Promise<NginxTlsOrigin> {
    const dir = fs.mkdtempSync(path.join('/tmp', `tp-nginx-${++nginxCount}-`));
    fs.chmodSync(dir, 0o755);
    const port = await closedPort();
    const body = `hello from nginx ${port}\n`;
    const logFile = path.join(dir, 'access.log');
    const lines = [
        'worker_processes 1;',
        'daemon off;',
        `pid ${dir}/nginx.pid;`,
        `error_log ${dir}/error.log info;`,
        'events { worker_connections 256; }',
        'http {',
        `    client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy;`,
        `    fastcgi_temp_path ${dir}/fcgi; uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;`,
        "    log_format tls escape=json '{\"sni\":\"$ssl_server_name\",\"alpn\":\"$ssl_alpn_protocol\",'",
        "        '\"reused\":\"$ssl_session_reused\",\"connection\":$connection,'",
        "        '\"requests\":$connection_requests,\"protocol\":\"$ssl_protocol\",'",
        "        '\"clientVerify\":\"$ssl_client_verify\",\"clientSubject\":\"$ssl_client_s_dn\",'",
        "        '\"uri\":\"$uri\",\"status\":$status}';",
        `    access_log ${logFile} tls;`,
        '    keepalive_requests 1000;',
        `    keepalive_timeout ${options.keepaliveTimeout ?? '60s'};`,
        '    server {',
        `        listen 127.0.0.1:${port} ssl;`,
        `        ssl_certificate ${options.cert.certFile};`,
        `        ssl_certificate_key ${options.cert.keyFile};`,
        `        ssl_protocols ${options.protocols ?? 'TLSv1.2 TLSv1.3'};`,
        '        ssl_session_tickets on;',
        '        ssl_session_cache shared:tp:1m;',
    ];
    if (options.verifyClientCa)
        lines.push(`        ssl_client_certificate ${options.verifyClientCa};`, '        ssl_verify_client on;');
    if (options.stapleFile) {
        lines.push('        ssl_stapling on;', `        ssl_stapling_file ${options.stapleFile};`);
        if (options.issuerFile) lines.push(`        ssl_trusted_certificate ${options.issuerFile};`);
    }
    lines.push(
        '        location / {',
        '            default_type text/plain;',
        `            return 200 ${JSON.stringify(body)};`,
        '        }',
        '    }',
        '}',
    );
    const conf = path.join(dir, 'nginx.conf');
    fs.writeFileSync(conf, lines.join('\n') + '\n');
    const proc = startProcess('nginx', ['-p', dir, '-e', path.join(dir, 'error.log'), '-c', conf]);
    try {
        await listening(port);
    } catch (e) {
        const err = fs.existsSync(path.join(dir, 'error.log')) ? fs.readFileSync(path.join(dir, 'error.log'), 'utf8') : '';
        await proc.stop().catch(() => undefined);
        throw new Error(`nginx did not start: ${(e as Error).message}\n${err}\n${proc.tail()}`);
    }
    let closing: Promise<void> | null = null;
    const close = () => {
        if (!closing) {
            closing = (async () => {
                await proc.stop().catch(() => undefined);
                fs.rmSync(dir, { recursive: true, force: true });
            })();
            untrack();
        }
        return closing;
    };
    const untrack = track(`nginx tls origin 127.0.0.1:${port}`, close);
    const log = (): NginxLogEntry[] =>
        fs.existsSync(logFile)
            ? fs
                  .readFileSync(logFile, 'utf8')
                  .split('\n')
                  .filter((l) => l.trim())
                  .map((l) => JSON.parse(l) as NginxLogEntry)
            : [];
    return {
        port,
        address: `127.0.0.1:${port}`,
        body,
        log,
        entry: (uri, timeoutMs = 5000) =>
            waitFor(() => log().find((e) => e.uri === uri), { timeoutMs, message: `nginx logged no request for ${uri}` }),
        close,
    };
}

export interface GnutlsServ {
    port: number;
    address: string;
    process: TestProcess;
    close(): Promise<void>;
}

/**
 * Starts gnutls-serv in HTTP mode (it answers every request with 200 and an HTML page about the
 * session) with a certificate, optionally stapling a DER OCSP response.
 */
export async function startGnutlsServ(options: {
    cert: { certFile: string; keyFile: string };
    ocspResponse?: string;
    priority?: string;
    /** Require a client certificate from this CA (PEM file). */
    requireClientCert?: string;
}): Promise<GnutlsServ> {
    const port = await closedPort();
    const args = ['--http', '--port', String(port), '--x509certfile', options.cert.certFile, '--x509keyfile', options.cert.keyFile];
    if (options.ocspResponse) args.push('--ocsp-response', options.ocspResponse, '--ignore-ocsp-response-errors');
    if (options.priority) args.push('--priority', options.priority);
    if (options.requireClientCert) args.push('--require-client-cert', '--x509cafile', options.requireClientCert);
    const proc = startProcess('gnutls-serv', args);
    try {
        await listening(port);
    } catch (e) {
        await proc.stop().catch(() => undefined);
        throw new Error(`gnutls-serv did not start: ${(e as Error).message}\n${proc.tail()}`);
    }
    await sleep(50);
    return { port, address: `127.0.0.1:${port}`, process: proc, close: () => proc.stop().then(() => undefined) };
}

function run(cmd: string, args: string[]): string {
    return execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
}

/** A CRL (PEM) of the CA of `ca`, revoking `revoked`, valid for a day. */
export function makeCrl(ca: TestCerts, revoked: IssuedCert[], name = 'crl'): string {
    const tmpl = path.join(ca.dir, `${name}.tmpl`);
    const out = path.join(ca.dir, `${name}.pem`);
    fs.writeFileSync(tmpl, 'crl_next_update = 1\ncrl_number = 1\n');
    const args = ['--generate-crl', '--load-ca-privkey', path.join(ca.dir, 'ca.key'), '--load-ca-certificate', ca.caFile, '--template', tmpl, '--outfile', out];
    for (const r of revoked) args.push('--load-certificate', r.certFile);
    run('certtool', args);
    return out;
}

/** The serial number of a certificate, in the hex form `openssl ocsp -index` looks up. */
function serialOf(certFile: string): string {
    return run('openssl', ['x509', '-in', certFile, '-noout', '-serial']).trim().replace(/^serial=/, '');
}

function opensslTime(d: Date): string {
    const p = (n: number) => String(n).padStart(2, '0');
    return `${p(d.getUTCFullYear() % 100)}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}Z`;
}

/**
 * An OCSP response (DER) for `cert`, signed by the CA itself, saying `good` or `revoked`: made
 * with `openssl ocsp` from an index file, as a responder would.
 */
export function makeOcspResponse(ca: TestCerts, cert: IssuedCert, status: 'good' | 'revoked', name = 'ocsp'): string {
    const f = (s: string) => path.join(ca.dir, `${name}-${s}`);
    const serial = serialOf(cert.certFile);
    const expiry = opensslTime(new Date(Date.now() + 86_400_000));
    const line =
        status === 'good'
            ? `V\t${expiry}\t\t${serial}\tunknown\t/CN=turnpike test\n`
            : `R\t${expiry}\t${opensslTime(new Date(Date.now() - 3_600_000))}\t${serial}\tunknown\t/CN=turnpike test\n`;
    fs.writeFileSync(f('index.txt'), line);
    run('openssl', ['ocsp', '-issuer', ca.caFile, '-cert', cert.certFile, '-no_nonce', '-reqout', f('req.der')]);
    run('openssl', [
        'ocsp', '-index', f('index.txt'), '-rsigner', ca.caFile, '-rkey', path.join(ca.dir, 'ca.key'), '-CA', ca.caFile,
        '-reqin', f('req.der'), '-respout', f('resp.der'), '-ndays', '1',
    ]);
    return f('resp.der');
}

export interface OpensslServer {
    port: number;
    address: string;
    /** Everything the clients sent (s_server prints it), in order. */
    received(): string;
    /** Waits until `received()` matches. */
    waitFor(re: RegExp, timeoutMs?: number): Promise<void>;
    /** Sends text to the current connection (s_server's stdin; LF becomes CRLF). */
    send(text: string): void;
    /** TLS 1.3 KeyUpdate to the client (`requested`: the client must answer with its own). */
    keyUpdate(requested: boolean): void;
    close(): Promise<void>;
}

/**
 * `openssl s_server` (one connection at a time, TLS 1.3): the test reads what the client sent and
 * writes the answer itself, and can send TLS 1.3 post-handshake messages (KeyUpdate) at any time,
 * e.g. to a connection that sits idle in Turnpike's pool.
 */
export async function startOpensslServer(options: { cert: { certFile: string; keyFile: string } }): Promise<OpensslServer> {
    const port = await closedPort();
    const child = spawn(
        'openssl',
        ['s_server', '-accept', `127.0.0.1:${port}`, '-cert', options.cert.certFile, '-key', options.cert.keyFile, '-tls1_3', '-crlf', '-ign_eof', '-msg'],
        { stdio: ['pipe', 'pipe', 'pipe'] },
    );
    let out = '';
    child.stdout.setEncoding('latin1').on('data', (s: string) => (out += s));
    child.stderr.setEncoding('latin1').on('data', () => undefined);
    child.stdin.on('error', () => undefined);
    const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
    const close = async () => {
        untrack();
        child.kill('SIGTERM');
        await exited;
    };
    const untrack = track(`openssl s_server 127.0.0.1:${port}`, close, () => child.kill('SIGKILL'));
    try {
        await listening(port);
    } catch (e) {
        await close();
        throw new Error(`openssl s_server did not start: ${(e as Error).message}\n${out}`);
    }
    // The readiness probe was a connection too: let s_server finish with it.
    await sleep(100);
    return {
        port,
        address: `127.0.0.1:${port}`,
        received: () => out,
        waitFor: (re, timeoutMs = 5000) =>
            waitFor(() => re.test(out), { timeoutMs, message: () => `s_server did not receive ${re}:\n${out}` }).then(() => undefined),
        send: (text) => void child.stdin.write(text),
        keyUpdate: (requested) => void child.stdin.write(requested ? 'K\n' : 'k\n'),
        close,
    };
}
