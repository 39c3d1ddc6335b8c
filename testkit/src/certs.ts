/**
 * Test certificates made with GnuTLS's certtool (Debian's gnutls-bin): a throw-away CA and a
 * server certificate it signed, for localhost, 127.0.0.1 and ::1, in a temp directory that
 * cleanup() removes.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { track } from './cleanup.js';

export interface TestCerts {
    /** The directory holding every file. */
    dir: string;
    /** PEM of the CA certificate: what a client trusts (`--ca`). */
    caFile: string;
    /** PEM of the server certificate (signed by the CA). */
    certFile: string;
    /** PEM of the server's private key. */
    keyFile: string;
}

export interface CertOptions {
    /** DNS names in the certificate (default ['localhost']). */
    dnsNames?: string[];
    /** IP addresses in the certificate (default ['127.0.0.1', '::1']). */
    ipAddresses?: string[];
}

function certtool(args: string[]): void {
    execFileSync('certtool', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Makes a CA and a server certificate signed by it (ECDSA P-256, valid for one day). */
export function makeTestCerts(options: CertOptions = {}): TestCerts {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tp-certs-'));
    const remove = () => fs.rmSync(dir, { recursive: true, force: true });
    track(`certs ${dir}`, remove, remove);
    const f = (name: string) => path.join(dir, name);
    fs.writeFileSync(f('ca.tmpl'), 'cn = "turnpike test CA"\nca\ncert_signing_key\nexpiration_days = 1\n');
    const names = (options.dnsNames ?? ['localhost']).map((n) => `dns_name = "${n}"\n`).join('');
    const ips = (options.ipAddresses ?? ['127.0.0.1', '::1']).map((ip) => `ip_address = "${ip}"\n`).join('');
    fs.writeFileSync(
        f('server.tmpl'),
        `cn = "${options.dnsNames?.[0] ?? 'localhost'}"\n${names}${ips}expiration_days = 1\ntls_www_server\nsigning_key\nencryption_key\n`,
    );
    certtool(['--generate-privkey', '--key-type', 'ecdsa', '--outfile', f('ca.key')]);
    certtool(['--generate-self-signed', '--load-privkey', f('ca.key'), '--template', f('ca.tmpl'), '--outfile', f('ca.pem')]);
    certtool(['--generate-privkey', '--key-type', 'ecdsa', '--outfile', f('server.key')]);
    certtool([
        '--generate-certificate', '--load-privkey', f('server.key'), '--load-ca-certificate', f('ca.pem'),
        '--load-ca-privkey', f('ca.key'), '--template', f('server.tmpl'), '--outfile', f('server.pem'),
    ]);
    return { dir, caFile: f('ca.pem'), certFile: f('server.pem'), keyFile: f('server.key') };
}
